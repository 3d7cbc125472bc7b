import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { beforeAll, describe, expect, test } from "vitest";
import { cli, ROOT } from "./support/cli.ts";
import { emptyDatabase, installedDatabase, type TestDatabase } from "./support/db.ts";
import { FakeManagementApi, profileYaml } from "./support/management-api.ts";
import { tempDir } from "./support/temp-dir.ts";

/** plan and deploy from a laptop, and uninstall with a project: the real Supabase CLI against a local Management API. */

const tmp = tempDir("cli-deploy");
const PROJECT_REF = "abcdefghijklmnopqrst";

/** The real Supabase CLI from node_modules, pointed at the Management API at `apiUrl`, with `token`. */
function supabaseCliEnv(apiUrl: string, token: string): Record<string, string> {
  const home = mkdtempSync(join(tmp, "home-"));
  const profile = join(home, "profile.yaml");
  writeFileSync(profile, profileYaml(apiUrl));
  return {
    PATH: `${join(ROOT, "node_modules", ".bin")}:${process.env.PATH ?? ""}`,
    HOME: home,
    SUPABASE_PROFILE: profile,
    SUPABASE_NO_KEYRING: "true",
    SUPABASE_TELEMETRY_DISABLED: "1",
    SUPABASE_ACCESS_TOKEN: token,
  };
}

describe("plan against an installed database", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await installedDatabase();
  });
  const plan = (config: string) =>
    cli(["plan", "--config", config, "--project-ref", PROJECT_REF, "--db-url", db.url, "--tick", "external"]);

  test("plan reads the database and prints what deploy would do, needing no access token", async () => {
    const config = join(tmp, "plan.yml");
    writeFileSync(config, "queues:\n  thumbnails:\n    function: make-thumbnail\n    workers: 3\n");
    const run = await plan(config);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("create queue thumbnails (POST function make-thumbnail, 3 workers)");
    expect(run.stdout).toContain("Dry run: nothing was changed.");
    expect(run.stdout).not.toContain(db.url);
    const { rowCount } = await db.pool.query("select 1 from supaqueue.queue where name = 'thumbnails'");
    expect(rowCount).toBe(0);
  });

  test("plan with schedules on a database without pg_cron fails before any change, naming the schedule", async () => {
    const config = join(tmp, "schedules.yml");
    writeFileSync(
      config,
      'queues:\n  reports:\n    function: report\n    rate_limit: 1/h\n    signed: true\nschedules:\n  nightly:\n    cron: "0 3 * * *"\n    queue: reports\n',
    );
    const run = await plan(config);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(
      `${config}:7:3: schedules.nightly: recurring calls need the pg_cron extension, which is not installed in this database`,
    );
  });
});

describe("deploy from a laptop", () => {
  const FUNCTIONS_URL = "http://127.0.0.1:9/functions/v1";
  test("installs Supaqueue, sets the function secret, deploys the function and creates the queues; a rerun plans no change", async () => {
    const token = `sbp_${"0123456789abcdef".repeat(3).slice(0, 40)}`;
    const api = await new FakeManagementApi(PROJECT_REF, token).start();
    const db = await emptyDatabase();
    const config = join(tmp, "deploy.yml");
    writeFileSync(
      config,
      // biome-ignore lint/suspicious/noTemplateCurlyInString: supaqueue.yml's own ${VAR} syntax
      "queues:\n  webhooks:\n    url: https://example.com/hook\n    headers:\n      X-Key: ${HOOK_KEY}\n    workers: 2\n",
    );
    const env = { ...supabaseCliEnv(api.url, token), HOOK_KEY: "hook-key-value-1234" };
    // deploy and the rerun's plan name the same file, project, database and functions URL.
    const project = [
      "--config",
      config,
      "--project-ref",
      PROJECT_REF,
      "--db-url",
      db.url,
      "--functions-url",
      FUNCTIONS_URL,
      "--tick",
      "external",
    ];
    try {
      const run = await cli(["deploy", ...project, "--skip-probe"], env, 120_000);
      expect(run.stderr).toBe("");
      expect(run.code).toBe(0);
      expect(run.stdout).toContain("created queue webhooks (POST https://example.com/hook, 2 workers)");
      for (const secret of [token, "hook-key-value-1234", db.url]) expect(run.stdout).not.toContain(secret);
      expect([...api.functions.keys()]).toEqual(["execute_current_job"]);
      const vault = await db.pool.query(
        "select decrypted_secret from vault.decrypted_secrets where name = 'supaqueue_secret'",
      );
      expect(api.secrets.get("SUPAQUEUE_SECRET")).toBe(vault.rows[0].decrypted_secret);
      const queue = await db.pool.query("select name, url, managed_by from supaqueue.queue");
      expect(queue.rows).toEqual([
        { name: "webhooks", url: "https://example.com/hook", managed_by: "supaqueue.yml" },
      ]);

      const plan = await cli(["plan", ...project], env);
      expect(plan.code).toBe(0);
      expect(plan.stdout).toContain("queues: no changes (1 queue up to date)");
      expect(plan.stdout).toContain("Dry run: nothing was changed.");
    } finally {
      await api.stop();
    }
  }, 150_000);
});

describe("uninstall with a project", () => {
  test("also unsets SUPAQUEUE_SECRET and deletes execute_current_job through the Supabase CLI", async () => {
    const token = `sbp_${"fedcba9876543210".repeat(3).slice(0, 40)}`;
    // What the CLI sends for `secrets unset` and `functions delete`, recorded by a minimal Management API.
    const seen: string[] = [];
    const api = createServer((req, res) => {
      let body = "";
      req.on("data", (chunk) => {
        body += chunk;
      });
      req.on("end", () => {
        const authorized = req.headers.authorization === `Bearer ${token}`;
        seen.push(`${authorized ? "" : "UNAUTHORIZED "}${req.method} ${req.url} ${body}`.trim());
        res.writeHead(authorized ? 200 : 401, { "Content-Type": "application/json" });
        res.end(req.method === "GET" ? JSON.stringify({ id: PROJECT_REF, ref: PROJECT_REF }) : "{}");
      });
    });
    await new Promise<void>((resolve) => api.listen(0, "127.0.0.1", resolve));
    const apiUrl = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;
    const db = await installedDatabase();
    try {
      const run = await cli(
        ["uninstall", "--db-url", db.url, "--project-ref", PROJECT_REF],
        supabaseCliEnv(apiUrl, token),
        120_000,
      );
      expect(run.stderr).toBe("");
      expect(run.code).toBe(0);
      expect(run.stdout).not.toContain(token);
      expect(seen).toEqual(
        expect.arrayContaining([
          `DELETE /v1/projects/${PROJECT_REF}/secrets ["SUPAQUEUE_SECRET","SUPAQUEUE_FUNCTIONS_URL"]`,
          `DELETE /v1/projects/${PROJECT_REF}/functions/execute_current_job`,
        ]),
      );
      expect(seen.filter((line) => line.startsWith("UNAUTHORIZED"))).toEqual([]);
      const { rows } = await db.pool.query("select to_regnamespace('supaqueue') is null as gone");
      expect(rows[0].gone).toBe(true);
    } finally {
      api.close();
    }
  }, 150_000);
});
