import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { describe, expect, inject, test } from "vitest";
import { BIN, cli, cliEnv, ROOT } from "./support/cli.ts";
import { databaseExists } from "./support/db.ts";
import { tempDir } from "./support/temp-dir.ts";

/** `supaqueue dev --config`: the local stack serving a user's own queues (the demo is in demo.test.ts). */

const tmp = tempDir("cli-dev");

describe("dev with a queue file", () => {
  test("serves the real handler, calls the queue's target, and on Ctrl-C stops and drops its database", async () => {
    const received: { path: string; body: string; jobId: string | undefined }[] = [];
    const target = createServer((req, res) => {
      let body = "";
      req.on("data", (chunk) => {
        body += chunk;
      });
      req.on("end", () => {
        received.push({
          path: req.url ?? "",
          body,
          jobId: req.headers["supaqueue-job-id"] as string | undefined,
        });
        res.writeHead(200, { "Content-Type": "application/json" }).end('{"ok":true}');
      });
    });
    await new Promise<void>((resolve) => target.listen(0, "127.0.0.1", resolve));
    const port = (target.address() as AddressInfo).port;
    const config = join(tmp, "dev.yml");
    writeFileSync(
      config,
      `queues:\n  hooks:\n    url: http://127.0.0.1:${port}/hook\n    workers: 2\nschedules:\n  nightly: {cron: "0 3 * * *", queue: hooks}\n`,
    );

    const child: ChildProcess = spawn("node", [BIN, "dev", "--config", config], {
      cwd: ROOT,
      env: cliEnv({ DATABASE_URL: inject("adminUrl") }),
    });
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (chunk) => {
      stdout += chunk;
    });
    child.stderr?.on("data", (chunk) => {
      stderr += chunk;
    });
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    try {
      await waitFor(
        () => stdout.includes("Ctrl-C stops everything"),
        30_000,
        () => stdout + stderr,
      );
      const dbUrl = /^ {2}database {3}(\S+)/m.exec(stdout)?.[1] as string;
      const database = new URL(dbUrl).pathname.slice(1);
      expect(stdout).toMatch(/queues\s+hooks \(2 workers\)/);
      // No pg_cron locally: the file's schedules are left for the deployed project, and dev says so.
      expect(stdout).toContain("Schedules (nightly) are not run locally");

      const enqueued = await cli(["enqueue", "hooks", '{"order": 7}', "--db-url", dbUrl]);
      expect(enqueued.stderr).toBe("");
      const jobId = enqueued.stdout.trim();
      expect(jobId).toMatch(/^[0-9a-f-]{36}$/);
      await waitFor(
        () => received.length === 1,
        15_000,
        () => stdout + stderr,
      );
      expect(received[0]).toEqual({ path: "/hook", body: '{"order":7}', jobId });

      await waitFor(
        () => stdout.includes(`→ 200`),
        10_000,
        () => stdout,
      );
      const status = await cli(["status", "--json", "--db-url", dbUrl]);
      expect(JSON.parse(status.stdout).queues[0]).toMatchObject({
        queue: "hooks",
        successful: 1,
        workers: 2,
      });

      // The dashboard is served alongside, its URL printed with its token; it shows the job that finished.
      const dashboardUrl = new URL(/^Dashboard: (\S+)$/m.exec(stdout)?.[1] as string);
      expect(dashboardUrl.origin).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const token = dashboardUrl.searchParams.get("token") as string;
      expect(token).toMatch(/^[0-9a-f]{64}$/);
      const overview = await fetch(`${dashboardUrl.origin}/api/overview`, {
        headers: { Authorization: `Bearer ${token}` },
      }).then((r) => r.json());
      expect(overview.queues).toHaveLength(1);
      expect(overview.queues[0]).toMatchObject({ name: "hooks", workers: 2, due: 0 });
      expect(overview.queues[0].minutes.reduce((n: number, m: number[]) => n + (m[1] ?? 0), 0)).toBe(1);

      child.kill("SIGINT");
      expect(await exited).toBe(0);
      await expect(fetch(`${dashboardUrl.origin}/api/meta`)).rejects.toThrow();
      expect(stdout).toContain(`Removed database ${database}.`);
      expect(await databaseExists(database)).toBe(false);
    } finally {
      child.kill("SIGKILL");
      target.close();
    }
  }, 120_000);
});

async function waitFor(condition: () => boolean, timeoutMs: number, describe: () => string): Promise<void> {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting; output so far:\n${describe()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
