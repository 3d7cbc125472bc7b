import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, expect, test } from "vitest";
import { complete, createQueue, takeCalls } from "./support/calls.ts";
import { ROOT } from "./support/cli.ts";
import { installedDatabase, type TestDatabase } from "./support/db.ts";
import { DENO_BIN, denoEnv } from "./support/deno.ts";
import { SERVICE_ROLE_KEY } from "./support/edge-stack.ts";
import { type PostgrestStandin, startPostgrest } from "./support/postgrest.ts";

// The client in real Deno (test/deno/client.ts): the built package's JavaScript and supabase-js, through the
// PostgREST stand-in, on a real database. `npm:` specifiers cannot be downloaded on these machines, so the script
// imports lib/ by a relative path and supabase-js from node_modules (--node-modules-dir=manual).
let db: TestDatabase;
let postgrest: PostgrestStandin;
beforeAll(async () => {
  db = await installedDatabase();
  postgrest = await startPostgrest({ pool: db.pool, serviceRoleKey: SERVICE_ROLE_KEY });
  await createQueue(db.pool, "mail", 1);
});
afterAll(async () => {
  await postgrest?.stop();
});

test("enqueue, enqueueMany, wait, typed errors and stats from Deno", async () => {
  const child = spawn(
    DENO_BIN,
    [
      "run",
      "--node-modules-dir=manual",
      "--allow-env",
      "--allow-net",
      "--allow-read",
      "--no-prompt",
      "test/deno/client.ts",
    ],
    {
      cwd: ROOT,
      env: denoEnv({ SUPABASE_URL: postgrest.url, SUPABASE_SERVICE_ROLE_KEY: SERVICE_ROLE_KEY }),
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let stderr = "";
  child.stderr.on("data", (chunk) => {
    stderr += chunk;
  });
  const steps: Record<string, unknown> = {};
  for await (const line of createInterface({ input: child.stdout })) {
    const { step, value } = JSON.parse(line) as { step: string; value: unknown };
    steps[step] = value;
    if (step === "many") {
      // The script now waits: play execute_current_job for the first job's call.
      const [call] = (await takeCalls(db.pool)).filter((c) => c.body.job.id === steps.enqueued);
      expect(call).toBeDefined();
      await complete(db.pool, call!, { succeeded: true, statusCode: 201 });
    }
  }
  const code = await new Promise((resolve) => child.once("close", resolve));
  expect(stderr).toBe("");
  expect(code).toBe(0);
  expect(steps.enqueued).toMatch(/^[0-9a-f-]{36}$/);
  expect(steps.many).toHaveLength(2);
  expect(steps.finished).toEqual({ status: "successful", history: [201] });
  expect(steps.error).toEqual({
    message: 'queue "nope" does not exist',
    code: "P0001",
    hint: expect.stringContaining("supaqueue.yml"),
  });
  expect(steps.stats).toBe(1);
}, 120_000);
