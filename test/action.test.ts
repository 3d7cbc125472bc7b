// biome-ignore-all lint/suspicious/noTemplateCurlyInString: supaqueue.yml writes ${VAR} literally.
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { loadMigrations } from "../src/db/migrate.ts";
import { projectRoot } from "../src/paths.ts";
import { type ActionRun, runAction } from "./support/action-runner.ts";
import { emptyDatabase, type TestDatabase } from "./support/db.ts";
import { snapshot } from "./support/db-snapshot.ts";
import { FakeManagementApi } from "./support/management-api.ts";

const REF = "abcdefghijklmnopqrst";
const TOKEN = `sbp_${"0123456789abcdef".repeat(3).slice(0, 40)}`;
const EMAIL_KEY = "email-key-0n3-SECRET";
const EMAIL_KEY_2 = "email-key-tw0-SECRET";
const REPORTS_TOKEN = "reports-t0ken-SECRET";
const FUNCTION_URL = `https://${REF}.supabase.co/functions/v1/execute_current_job`;
// Every shipped migration, in order: a first install applies them all.
const MIGRATIONS = loadMigrations().map((m) => m.name);
const SCHEMA_VERSION = loadMigrations().at(-1)!.version;

const FIRST = `# yaml-language-server: $schema=../schema/supaqueue.schema.json
queues:
  send-email:
    function: send-email
    headers:
      X-Api-Key: \${EMAIL_API_KEY}
    workers: 2
    timeout: 20s
    backoff: { base: 5s, max: 10m }
    dead_letter_queue: webhook
  webhook:
    url: https://hooks.example.com/in
    method: PUT
    headers:
      Content-Type: application/json
    workers: 3
    rate_limit: 5/s
    signed: true
  old-reports:
    url: https://reports.example.com/run
    headers:
      Authorization: Bearer \${REPORTS_TOKEN}
`;

const EDITED = `queues:
  send-email:
    function: send-email
    headers:
      X-Api-Key: \${EMAIL_API_KEY}
      X-Source: ci
    workers: 5
    timeout: 20s
    backoff: { base: 5s, max: 10m }
    dead_letter_queue: webhook
  webhook:
    url: https://hooks.example.com/in
    method: PUT
    headers:
      Content-Type: application/json
    workers: 0
    rate_limit: 5/s
    signed: true
`;

let db: TestDatabase;
let api: FakeManagementApi;

beforeAll(async () => {
  db = await emptyDatabase();
  api = await new FakeManagementApi(REF, TOKEN).start();
});
afterAll(() => api.stop());

function run(
  file: string,
  options: { inputs?: Record<string, string>; env?: Record<string, string> } = {},
): Promise<ActionRun> {
  return runAction({
    // No pg_cron and no function to probe on these machines (test/probe.test.ts and test/tick.test.ts cover both).
    inputs: {
      "project-ref": REF,
      "access-token": TOKEN,
      "db-url": db.url,
      tick: "external",
      probe: "false",
      ...options.inputs,
    },
    files: { "supaqueue.yml": file },
    env: { EMAIL_API_KEY: EMAIL_KEY, REPORTS_TOKEN, ...options.env },
    api,
  });
}

function succeeded(result: ActionRun): void {
  expect(result.exitCode, `stdout:\n${result.stdout}\nstderr:\n${result.stderr}`).toBe(0);
}

function summaryOf(result: ActionRun) {
  return JSON.parse(result.outputs.summary ?? "null");
}

async function queues() {
  const { rows } = await db.pool.query(`
    select q.name, q.managed_by, q.paused, q.url, q.function_name, q.method, q.headers, q.secret_headers, q.timeout_ms,
           q.backoff_base_ms, q.backoff_max_ms, q.dead_letter_queue, q.rate_limit_per_second, q.signing_key_secret,
           (select count(*)::int from supaqueue.worker w where w.queue_id = q.id and not w.retiring) as workers
    from supaqueue.queue q order by q.name`);
  return Object.fromEntries(rows.map((r) => [r.name, r]));
}

async function vault(name: string): Promise<string | undefined> {
  const { rows } = await db.pool.query(
    "select decrypted_secret from vault.decrypted_secrets where name = $1",
    [name],
  );
  return rows[0]?.decrypted_secret;
}

function expectNoSecretIn(result: ActionRun, ...secrets: string[]): void {
  // ::add-mask:: lines are how a step hands a secret to the runner, which hides it everywhere; they never show.
  const stdout = result.stdout
    .split("\n")
    .filter((line) => !line.startsWith("::add-mask::"))
    .join("\n");
  const everything = [stdout, result.stderr, result.summary, JSON.stringify(result.outputs)].join("\n");
  for (const secret of secrets) expect(everything).not.toContain(secret);
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

describe("the action, run as GitHub runs it", () => {
  test("a dry run on an empty project prints the plan and changes nothing", async () => {
    const before = await snapshot(db.pool);
    // A dry run needs no access token (pull requests from forks have none).
    const result = await run(FIRST, { inputs: { "dry-run": "true", "access-token": "" } });
    succeeded(result);
    expect(await snapshot(db.pool)).toEqual(before);
    expect(api.requests).toEqual([]);
    expect(result.stdout).toContain(`migrations to apply: ${MIGRATIONS.join(", ")}`);
    expect(result.stdout).toContain("create queue send-email (POST function send-email, 2 workers)");
    expect(summaryOf(result)).toMatchObject({
      dryRun: true,
      changed: true,
      schemaVersion: null,
      queues: { created: ["send-email", "webhook", "old-reports"] },
    });
    expect(result.summary).toContain("dry run: nothing was changed");
    expect(result.outputs["schema-version"]).toBe("");
  });

  test("the first install applies the migrations, sets the secret, deploys the function and creates the queues", async () => {
    const result = await run(FIRST);
    succeeded(result);
    expect(result.outputs["schema-version"]).toBe(String(SCHEMA_VERSION));
    expect(result.outputs["function-url"]).toBe(FUNCTION_URL);
    expect(summaryOf(result)).toMatchObject({
      dryRun: false,
      changed: true,
      migrations: MIGRATIONS,
      queues: { created: ["send-email", "webhook", "old-reports"], changed: [], paused: [], removed: [] },
      workers: { "send-email": 2, webhook: 3, "old-reports": 1 },
      secrets: [
        { name: "supaqueue:header:send-email:x-api-key", action: "create" },
        { name: "supaqueue:header:old-reports:authorization", action: "create" },
      ],
    });

    const q = await queues();
    expect(q["send-email"]).toMatchObject({
      managed_by: "supaqueue.yml",
      function_name: "send-email",
      method: "POST",
      headers: {},
      secret_headers: { "X-Api-Key": "supaqueue:header:send-email:x-api-key" },
      timeout_ms: 20_000,
      backoff_base_ms: 5000,
      backoff_max_ms: 600_000,
      dead_letter_queue: "webhook",
      workers: 2,
    });
    expect(q.webhook).toMatchObject({
      url: "https://hooks.example.com/in",
      method: "PUT",
      workers: 3,
      rate_limit_per_second: 5,
    });
    expect(q.webhook.headers).toEqual({ "Content-Type": "application/json" });
    // signed: true made the queue's first key in Vault; the run says how to read it and never prints it.
    expect(q.webhook.signing_key_secret).toBe("supaqueue:signing:webhook");
    const signingKey = await vault("supaqueue:signing:webhook");
    expect(signingKey).toMatch(/^[A-Za-z0-9+/=]{44}$/);
    expectNoSecretIn(result, signingKey as string);
    expect(summaryOf(result).signingKeys).toEqual([
      { queue: "webhook", action: "create", vaultSecret: "supaqueue:signing:webhook" },
    ]);
    const readIt =
      "select decrypted_secret from vault.decrypted_secrets where name = 'supaqueue:signing:webhook'";
    expect(result.stdout).toContain(`queue webhook: signing key created: read it with ${readIt}`);
    expect(result.summary).toContain(`| \`webhook\` | signing key created | \`${readIt}\` |`);
    expect(q["old-reports"]).toMatchObject({ workers: 1, paused: false });
    expect(await vault("supaqueue:header:send-email:x-api-key")).toBe(EMAIL_KEY);
    expect(await vault("supaqueue:header:old-reports:authorization")).toBe(`Bearer ${REPORTS_TOKEN}`);
    const { rows: config } = await db.pool.query("select functions_url from supaqueue.config");
    expect(config[0].functions_url).toBe(`https://${REF}.supabase.co/functions/v1`);

    // The secret header values are in Vault only: not in a table, not in the log, the summary or the outputs.
    const tables = await db.pool.query("select (select json_agg(q) from supaqueue.queue q)::text as t");
    expect(tables.rows[0].t).not.toContain(EMAIL_KEY);
    expectNoSecretIn(result, EMAIL_KEY, REPORTS_TOKEN, TOKEN);

    // The function got the shared secret that pg_net sends, and the code of execute_current_job, file by file.
    const shared = await vault("supaqueue_secret");
    expect(shared).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expectNoSecretIn(result, shared as string);
    expect(api.secretBodies).toEqual([
      [
        { name: "SUPAQUEUE_SECRET", value: shared },
        { name: "SUPAQUEUE_FUNCTIONS_URL", value: `https://${REF}.supabase.co/functions/v1` },
      ],
    ]);
    const deployed = api.functions.get("execute_current_job");
    expect(deployed?.metadata).toMatchObject({
      name: "execute_current_job",
      verify_jwt: false,
      entrypoint_path: "supabase/functions/execute_current_job/index.ts",
    });
    const functions = join(projectRoot(), "functions");
    // The function's own files, and the shared ones it imports (the CLI bundles what the entrypoint reaches; a
    // shared file for targets, such as report_callback.ts, is not part of it).
    const own = filesUnder(functions).filter((f) => /[/\\]execute_current_job[/\\]/.test(f));
    const imported = new Set(
      own.flatMap((f) =>
        [...readFileSync(f, "utf8").matchAll(/from "\.\.\/_shared\/([\w.]+)"/g)].map((m) => m[1]),
      ),
    );
    const expected = [...own, ...[...imported].map((name) => join(functions, "_shared", name as string))];
    expect(imported.size).toBeGreaterThan(0);
    expect([...(deployed?.files.keys() ?? [])].sort()).toEqual(
      expected.map((f) => `supabase/functions/${relative(functions, f).split("\\").join("/")}`).sort(),
    );
    for (const f of expected) {
      expect(deployed?.files.get(`supabase/functions/${relative(functions, f)}`)).toBe(
        readFileSync(f, "utf8"),
      );
    }
    expect(api.requests.every((r) => r.status < 300)).toBe(true);

    expect(result.summary).toContain(
      `| Migrations applied | ${MIGRATIONS.map((m) => `\`${m}\``).join(", ")} |`,
    );
    expect(result.summary).toMatch(/\| `send-email` \| created \| 2 \|/);
  });

  test("a second run with the same file changes nothing and says so", async () => {
    const before = await snapshot(db.pool);
    const result = await run(FIRST);
    succeeded(result);
    expect(await snapshot(db.pool)).toEqual(before);
    expect(summaryOf(result)).toMatchObject({
      changed: false,
      migrations: [],
      queues: { created: [], changed: [], unchanged: ["send-email", "webhook", "old-reports"] },
    });
    expect(result.stdout).toContain("queues: no changes (3 queues up to date)");
    expect(result.summary).toContain("**No changes**");
  });

  test("a dry run of an edit prints the plan and changes nothing", async () => {
    const before = await snapshot(db.pool);
    const calls = api.requests.length;
    const result = await run(EDITED, { inputs: { "dry-run": "true" }, env: { EMAIL_API_KEY: EMAIL_KEY_2 } });
    succeeded(result);
    expect(await snapshot(db.pool)).toEqual(before);
    expect(api.requests.length).toBe(calls);
    expect(result.stdout).toContain("change queue webhook: workers: 3 → 0");
    expect(result.stdout).toContain("remove queue old-reports (not in the file, empty)");
    expect(result.summary).toContain("would be changed");
    expectNoSecretIn(result, EMAIL_KEY, EMAIL_KEY_2);
  });

  test("an edit scales workers up and down without interrupting a call, updates headers, and pauses a removed queue that has jobs", async () => {
    // A call in flight on webhook, and an unfinished job on old-reports.
    await db.pool.query("select supaqueue.enqueue('webhook', '{\"n\": 1}')");
    await db.pool.query("select supaqueue.enqueue('old-reports', '{}')");
    const { rows: inFlight } = await db.pool.query(
      "select c.id, w.queue_id from supaqueue.current_job c join supaqueue.worker w on w.id = c.worker_id",
    );
    expect(inFlight).toHaveLength(2);

    const result = await run(EDITED, { env: { EMAIL_API_KEY: EMAIL_KEY_2 } });
    succeeded(result);
    const summary = summaryOf(result);
    expect(summary.queues.changed).toEqual([
      {
        name: "send-email",
        changes: ["header X-Api-Key: secret value changed", "header X-Source: added", "workers: 2 → 5"],
      },
      { name: "webhook", changes: ["workers: 3 → 0"] },
    ]);
    expect(summary.queues.paused).toEqual([{ name: "old-reports", unfinishedJobs: 1 }]);
    expect(summary.queues.removed).toEqual([]);
    expect(summary.secrets).toEqual([
      {
        name: "supaqueue:header:send-email:x-api-key",
        queue: "send-email",
        header: "X-Api-Key",
        action: "update",
      },
    ]);
    expect(result.stdout).toContain("paused queue old-reports (not in the file, 1 unfinished job)");
    expect(result.summary).toMatch(/\| `old-reports` \| paused \|/);
    expect(result.summary).toMatch(/\| `webhook` \| changed \| 3 → 0 \|/);

    const q = await queues();
    expect(q["send-email"].workers).toBe(5);
    expect(q["send-email"].headers).toEqual({ "X-Source": "ci" });
    expect(await vault("supaqueue:header:send-email:x-api-key")).toBe(EMAIL_KEY_2);
    expect(q.webhook.workers).toBe(0);
    expect(q["old-reports"].paused).toBe(true);
    // The busy worker of webhook retires after its call; the call itself is still there.
    const { rows: still } = await db.pool.query(
      "select w.locked, w.retiring from supaqueue.current_job c join supaqueue.worker w on w.id = c.worker_id order by c.id",
    );
    expect(still).toEqual([
      { locked: true, retiring: true },
      { locked: true, retiring: false },
    ]);
    expectNoSecretIn(result, EMAIL_KEY, EMAIL_KEY_2);

    // The same file again: nothing to do, and the paused queue is still waiting for its job.
    const again = await run(EDITED, { env: { EMAIL_API_KEY: EMAIL_KEY_2 } });
    succeeded(again);
    expect(summaryOf(again)).toMatchObject({ changed: false, queues: { paused: [{ name: "old-reports" }] } });
    expect(again.stdout).toContain("queue old-reports stays paused (not in the file, 1 unfinished job)");
  });

  test("a removed queue is removed, with its header secret, once its last job is done", async () => {
    const { rows } = await db.pool.query(
      "select c.id from supaqueue.current_job c join supaqueue.job j on j.id = c.job_id join supaqueue.queue q on q.id = j.queue_id where q.name = 'old-reports'",
    );
    await db.pool.query("select supaqueue.complete_current_jobs($1::jsonb)", [
      JSON.stringify([{ current_job_id: rows[0].id, succeeded: true, status_code: 200 }]),
    ]);
    const result = await run(EDITED, { env: { EMAIL_API_KEY: EMAIL_KEY_2 } });
    succeeded(result);
    expect(summaryOf(result).queues).toMatchObject({ removed: ["old-reports"], paused: [] });
    expect(result.stdout).toContain("removed queue old-reports");
    expect(Object.keys(await queues())).toEqual(["send-email", "webhook"]);
    expect(await vault("supaqueue:header:old-reports:authorization")).toBeUndefined();
  });

  test("a file queue named like a queue made by hand stops the run before any change", async () => {
    await db.pool.query(
      "insert into supaqueue.queue (name, url) values ('legacy', 'https://legacy.example.com')",
    );
    const before = await snapshot(db.pool);
    const calls = api.requests.length;
    const result = await run(`${EDITED}  legacy:\n    url: https://other.example.com\n    workers: 9\n`);
    expect(result.exitCode).toBe(1);
    expect(result.annotations).toContainEqual(
      expect.objectContaining({ level: "error", file: "supaqueue.yml", line: 19, col: 3 }),
    );
    expect(result.annotations[0]?.message).toMatch(
      /"legacy" already exists and was not created from supaqueue\.yml/,
    );
    expect(await snapshot(db.pool)).toEqual(before);
    expect(api.requests.length).toBe(calls);

    // Without it in the file, the run succeeds and leaves the hand-made queue exactly as it was.
    const { rows: legacyBefore } = await db.pool.query("select * from supaqueue.queue where name = 'legacy'");
    const ok = await run(EDITED, { env: { EMAIL_API_KEY: EMAIL_KEY_2 } });
    succeeded(ok);
    expect(summaryOf(ok).changed).toBe(false);
    const { rows: legacyAfter } = await db.pool.query("select * from supaqueue.queue where name = 'legacy'");
    expect(legacyAfter).toEqual(legacyBefore);
  });
});

describe("bad input fails before any change, with annotations at file:line:column", () => {
  const cases: [string, string, { line: number; col: number; message: RegExp }[]][] = [
    [
      "malformed YAML",
      "queues:\n  a: {url: https://x.example\n",
      [{ line: 3, col: 1, message: /not valid YAML/ }],
    ],
    [
      "an unknown key",
      "queues:\n  a:\n    url: https://x.example\n    retries: 3\n",
      [{ line: 4, col: 5, message: /unknown key "retries"; allowed keys: function, url, method/ }],
    ],
    [
      "wrong types",
      "queues:\n  a:\n    url: https://x.example\n    workers: many\n    max_attempts: 0\n",
      [
        { line: 4, col: 14, message: /workers: "many" is not allowed; allowed: an integer from 0 to 1,000/ },
        { line: 5, col: 19, message: /max_attempts: 0 is not allowed; allowed: an integer from 1 to 1,000/ },
      ],
    ],
    [
      "a bad name",
      "queues:\n  Send Email:\n    url: https://x.example\n",
      [{ line: 2, col: 3, message: /invalid queue name "Send Email"; allowed: 1 to 63 lowercase letters/ }],
    ],
    [
      "a duplicate name",
      "queues:\n  a:\n    url: https://x.example\n  a:\n    url: https://y.example\n",
      [{ line: 4, col: 3, message: /appears twice/ }],
    ],
    [
      "both function and url",
      "queues:\n  a:\n    url: https://x.example\n    function: f\n",
      [{ line: 4, col: 15, message: /has both "function" and "url"; set exactly one/ }],
    ],
    [
      "neither function nor url",
      "queues:\n  a:\n    workers: 2\n",
      [{ line: 2, col: 3, message: /needs exactly one of "function"/ }],
    ],
    [
      "an invalid URL",
      "queues:\n  a:\n    url: example.com/hook\n",
      [{ line: 3, col: 10, message: /invalid URL "example\.com\/hook"; allowed: an absolute http/ }],
    ],
    [
      "an unset ${VAR}",
      "queues:\n  a:\n    url: https://x.example\n    headers:\n      Authorization: Bearer ${NOT_SET_ANYWHERE}\n",
      [{ line: 5, col: 22, message: /\$\{NOT_SET_ANYWHERE\} is not set/ }],
    ],
    [
      "a timeout beyond the edge wall clock",
      "queues:\n  a:\n    url: https://x.example\n    timeout: 5m\n",
      [{ line: 4, col: 14, message: /timeout: 5m is beyond .* allowed: from 1ms to 140s/ }],
    ],
    [
      "a bad method",
      "queues:\n  a:\n    url: https://x.example\n    method: FETCH\n",
      [{ line: 4, col: 13, message: /allowed values: GET, POST, PUT, PATCH, DELETE/ }],
    ],
  ];

  test.each(cases)("%s", async (_, file, expected) => {
    const before = await snapshot(db.pool);
    const result = await run(file);
    expect(result.exitCode).toBe(1);
    const fileAnnotations = result.annotations.filter((a) => a.file);
    expect(fileAnnotations).toEqual(
      expected.map((e) =>
        expect.objectContaining({
          level: "error",
          file: "supaqueue.yml",
          line: e.line,
          col: e.col,
          message: expect.stringMatching(e.message),
        }),
      ),
    );
    expect(result.stdout).toMatch(
      /::error::supaqueue: \d+ problem\(s\) in the queue file; nothing was changed/,
    );
    expect(result.summary).toContain("## Supaqueue install failed");
    expect(result.summary).toContain(`| supaqueue.yml:${expected[0]?.line}:${expected[0]?.col} |`);
    expect(await snapshot(db.pool)).toEqual(before);
  });

  test("a missing queue file names the input to set", async () => {
    const result = await runAction({
      inputs: {
        "project-ref": REF,
        "access-token": TOKEN,
        "db-url": db.url,
        config: "deploy/queues.yml",
        tick: "external",
        probe: "false",
      },
      api,
    });
    expect(result.exitCode).toBe(1);
    expect(result.annotations[0]).toMatchObject({ file: "deploy/queues.yml", line: 1, col: 1 });
    expect(result.annotations[0]?.message).toMatch(/the queue file does not exist .* set the "config" input/);
  });
});

describe("connection and token failures give one message naming the cause", () => {
  const errors = (result: ActionRun) =>
    result.annotations.filter((a) => a.level === "error").map((a) => a.message);

  test("an unreachable database", async () => {
    const result = await run(EDITED, {
      inputs: { "db-url": "postgresql://postgres:hunter2-SECRET@127.0.0.1:1/postgres" },
      env: { EMAIL_API_KEY: EMAIL_KEY_2 },
    });
    expect(result.exitCode).toBe(1);
    expect(errors(result)).toEqual([
      "supaqueue: cannot connect to 127.0.0.1:1 as postgres: nothing is listening there (is the host and port right, and is the database running?)",
    ]);
    expectNoSecretIn(result, "hunter2-SECRET");
  });

  test("a database that does not exist", async () => {
    const url = new URL(db.url);
    url.pathname = "/no_such_database";
    const result = await run(EDITED, {
      inputs: { "db-url": url.toString() },
      env: { EMAIL_API_KEY: EMAIL_KEY_2 },
    });
    expect(result.exitCode).toBe(1);
    expect(errors(result)).toEqual([
      expect.stringMatching(/^supaqueue: cannot connect to .*: the database does not exist$/),
    ]);
  });

  test("an access token the Management API rejects, before any change", async () => {
    const before = await snapshot(db.pool);
    const other = `sbp_${"f".repeat(40)}`;
    const result = await run(FIRST, { inputs: { "access-token": other } });
    expect(result.exitCode).toBe(1);
    expect(errors(result)).toEqual([
      expect.stringMatching(
        /^supaqueue: Supabase rejected the access token \(.*401.*\)\. Create a personal access token/,
      ),
    ]);
    expect(await snapshot(db.pool)).toEqual(before);
    expectNoSecretIn(result, other);
  });

  test("a project the token cannot reach, before any change", async () => {
    const before = await snapshot(db.pool);
    const result = await run(FIRST, { inputs: { "project-ref": "zyxwvutsrqponmlkjihg" } });
    expect(result.exitCode).toBe(1);
    expect(errors(result)).toEqual([
      expect.stringMatching(
        /^supaqueue: Supabase has no project "zyxwvutsrqponmlkjihg" that this access token can reach: check project-ref/,
      ),
    ]);
    expect(await snapshot(db.pool)).toEqual(before);
  });

  test("an access token in the wrong format names the input", async () => {
    const result = await run(FIRST, { inputs: { "access-token": "not-a-token" } });
    expect(result.exitCode).toBe(1);
    expect(errors(result)).toEqual([
      expect.stringMatching(/^supaqueue: input "access-token" is not a Supabase personal access token/),
    ]);
  });
});

describe("Supabase CLI 3.x", () => {
  test("is detected by its version and given --remote= and --yes; the token goes through the environment only", async () => {
    const dir = mkdtempSync(join(tmpdir(), "supaqueue-cli3-"));
    const log = join(dir, "calls.log");
    // A stand-in for a 3.x CLI on PATH: records its arguments and whether it got the token in its environment.
    writeFileSync(
      join(dir, "supabase"),
      '#!/usr/bin/env bash\nif [ "$1" = "--version" ]; then echo "3.1.0"; exit 0; fi\n' +
        'echo "$* | token in env: $([ -n "$SUPABASE_ACCESS_TOKEN" ] && echo yes || echo no)" >> "$CALLS_LOG"\n',
      { mode: 0o755 },
    );
    const result = await run(EDITED, {
      inputs: { "functions-url": "http://127.0.0.1:54321/functions/v1/" },
      env: { EMAIL_API_KEY: EMAIL_KEY_2, CALLS_LOG: log, PATH: `${dir}:${process.env.PATH ?? ""}` },
    });
    succeeded(result);
    // functions-url overrides the hosted URL (self-hosted or local stacks), trailing slash dropped.
    expect(result.outputs["function-url"]).toBe("http://127.0.0.1:54321/functions/v1/execute_current_job");
    const { rows } = await db.pool.query("select functions_url from supaqueue.config");
    expect(rows[0].functions_url).toBe("http://127.0.0.1:54321/functions/v1");
    expect(summaryOf(result)).toMatchObject({ changed: true, functionsUrlChanged: true });
    expect(result.summary).toContain("/execute_current_job (changed) |");
    expect(result.stdout).toContain("Supabase CLI 3.1.0");
    const calls = readFileSync(log, "utf8").trim().split("\n");
    expect(calls).toEqual([
      expect.stringMatching(
        new RegExp(`^functions list --remote=${REF} --yes --workdir \\S+ \\| token in env: yes$`),
      ),
      expect.stringMatching(
        new RegExp(
          `^secrets set --env-file \\S+ --remote=${REF} --yes --workdir \\S+ \\| token in env: yes$`,
        ),
      ),
      expect.stringMatching(
        new RegExp(
          `^functions deploy execute_current_job --use-api --no-verify-jwt --remote=${REF} --yes --workdir \\S+ \\| token in env: yes$`,
        ),
      ),
    ]);
    expect(calls.join("\n")).not.toContain(TOKEN);
  });

  test("without a supabase on PATH, the pinned release is run through npx", async () => {
    const dir = mkdtempSync(join(tmpdir(), "supaqueue-npx-"));
    const log = join(dir, "calls.log");
    const real = join(projectRoot(), "node_modules", ".bin", "supabase");
    // A stand-in for npx that records how it was called and runs the real CLI (what npx would fetch).
    writeFileSync(
      join(dir, "npx"),
      `#!/usr/bin/env bash\necho "$*" >> "$CALLS_LOG"\n[ "$1" = "--yes" ] && [ "$2" = "supabase@2.117.0" ] || exit 9\nshift 2\nexec "${real}" "$@"\n`,
      { mode: 0o755 },
    );
    const result = await run(EDITED, {
      env: { EMAIL_API_KEY: EMAIL_KEY_2, CALLS_LOG: log, PATH: `${dir}:/usr/bin:/bin` },
    });
    succeeded(result);
    expect(result.stdout).toContain("Supabase CLI 2.117.0 (npx supabase@2.117.0)");
    const calls = readFileSync(log, "utf8").trim().split("\n");
    expect(calls.map((c) => c.split(" ").slice(0, 4).join(" "))).toEqual([
      "--yes supabase@2.117.0 --version",
      "--yes supabase@2.117.0 functions list",
      "--yes supabase@2.117.0 secrets set",
      "--yes supabase@2.117.0 functions deploy",
    ]);
  });
});
