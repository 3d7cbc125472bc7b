import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { deploy } from "../src/install/deploy.ts";
import type { Logger } from "../src/install/logger.ts";
import { installSchema } from "../src/install/schema.ts";
import { checkTick, describeTick, enablePgCron, TickError } from "../src/install/tick.ts";
import { createProjectDatabase, databaseUrl, INSTALLER_ROLE, withClient } from "../src/standins/supabase.ts";
import { hasPgCron, startCronCluster } from "./support/cron-cluster.ts";
import { emptyDatabase } from "./support/db.ts";
import { snapshot } from "./support/db-snapshot.ts";

/**
 * Tick always runs (src/install/tick.ts): the installer enables pg_cron when it is missing and schedules tick, or
 * stops before any change saying what to do, unless the user chose to run tick themselves (tick: external).
 */

const quiet: Logger = {
  info: () => {},
  warning: () => {},
  error: () => {},
  group: (_title, fn) => fn(),
  secret: () => {},
};

describe("on a server where pg_cron cannot run tick", () => {
  test("a deploy stops before any change, saying why and what to do; tick: external installs and says who ticks", async () => {
    const db = await emptyDatabase();
    const dir = mkdtempSync(join(tmpdir(), "supaqueue-tick-"));
    const configPath = join(dir, "supaqueue.yml");
    writeFileSync(configPath, "queues:\n  emails:\n    url: https://mail.example.com/send\n");
    const options = {
      projectRef: "abcdefghijklmnopqrst",
      accessToken: undefined,
      dbUrl: db.url,
      configPath,
      configFile: "supaqueue.yml",
      functionsUrl: "http://127.0.0.1:9/functions/v1",
      dryRun: true,
      env: {},
      tick: "pg_cron" as const,
      probe: false,
    };
    try {
      const before = await snapshot(db.pool);
      const available = (
        await db.pool.query("select count(*)::int as n from pg_available_extensions where name = 'pg_cron'")
      ).rows[0].n;
      await expect(deploy(options, quiet)).rejects.toThrow(
        available
          ? /pg_cron is not loaded on this server \(it must be in shared_preload_libraries.*or choose tick: external/
          : /this Postgres server has no pg_cron to run it.*or choose tick: external/,
      );
      expect(await snapshot(db.pool)).toEqual(before);

      const plan = await deploy({ ...options, tick: "external" }, quiet);
      expect(plan.dryRun).toBe(true);
      const c = await db.pool.connect();
      try {
        const installed = await installSchema(c, { functionsUrl: options.functionsUrl, tick: "external" });
        expect(installed.tick).toEqual({ mode: "external", schedule: null, enabledPgCron: false });
        expect(describeTick(installed.tick)).toMatch(
          /call select supaqueue\.tick\(\) every second from your own scheduler/,
        );
      } finally {
        c.release();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(!hasPgCron)("on a server with pg_cron", () => {
  let cluster: Awaited<ReturnType<typeof startCronCluster>>;
  beforeAll(async () => {
    cluster = await startCronCluster("project");
    await withClient(cluster.adminUrl, async (admin) => {
      const { installStandinExtensions, ensureSupabaseRoles } = await import("../src/standins/supabase.ts");
      await installStandinExtensions(admin);
      await ensureSupabaseRoles(admin);
    });
    await createProjectDatabase(cluster.adminUrl, "project");
    await createProjectDatabase(cluster.adminUrl, "elsewhere");
  }, 60_000);
  afterAll(() => cluster?.stop());

  async function connectTo(database: string, user?: string): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: databaseUrl(cluster.adminUrl, database, user) });
    client.on("error", () => {});
    await client.connect();
    return client;
  }

  test("it must be the database pg_cron runs its jobs in (cron.database_name)", async () => {
    // A role that may read cron.database_name (pg_cron hides it from others, who learn it from create extension).
    const c = await connectTo("elsewhere");
    try {
      await expect(checkTick(c, "pg_cron")).rejects.toThrow(
        /pg_cron runs its jobs only in the database "project" \(cron.database_name\), and Supaqueue is being installed into "elsewhere"/,
      );
    } finally {
      await c.end();
    }
  });

  test("a role that may not create pg_cron gets what to do, and nothing changes", async () => {
    const c = await connectTo("project", INSTALLER_ROLE);
    try {
      await checkTick(c, "pg_cron");
      const error = await enablePgCron(c, "pg_cron").catch((e) => e);
      expect(error).toBeInstanceOf(TickError);
      expect(error.message).toMatch(
        /could not enable pg_cron \(create extension pg_cron with schema pg_catalog\): permission denied.*Database → Extensions/,
      );
      const { rows } = await c.query("select count(*)::int as n from pg_extension where extname = 'pg_cron'");
      expect(rows[0].n).toBe(0);
    } finally {
      await c.end();
    }
  });

  test("where it may (Supabase's postgres may), the installer enables pg_cron, schedules tick, and tick cleans its runs", async () => {
    // A superuser plays Supabase's postgres here, which supautils lets create pg_cron.
    const c = await connectTo("project");
    try {
      expect(await enablePgCron(c, "pg_cron")).toBe(true);
      expect(await enablePgCron(c, "pg_cron")).toBe(false);
      const installed = await installSchema(c, {
        functionsUrl: "http://127.0.0.1:9/functions/v1",
        tick: "pg_cron",
        enabledPgCron: true,
      });
      expect(installed.tick).toEqual({ mode: "pg_cron", schedule: "* * * * *", enabledPgCron: true });
      expect(describeTick(installed.tick)).toBe(
        "tick: pg_cron runs supaqueue.tick() on the schedule '* * * * *' (pg_cron enabled by this run)",
      );
      const { rows: jobs } = await c.query("select jobid, jobname, command from cron.job order by jobid");
      expect(jobs.map((j) => [j.jobname, j.command])).toEqual([
        ["supaqueue-tick", "select supaqueue.tick()"],
      ]);

      // pg_cron keeps every run: Supaqueue's own go after retention, once a minute; other jobs' runs are not touched.
      const other = await c.query("select cron.schedule('someone-else', '0 0 * * *', 'select 1') as jobid");
      await c.query(
        `insert into cron.job_run_details (jobid, runid, job_pid, database, username, command, status, start_time, end_time)
         select j, r, 1, 'project', 'postgres', 'select 1', 'succeeded', now() - interval '8 days', now() - interval '8 days'
         from (values ($1::bigint, 1), ($1, 2), ($2::bigint, 3)) v(j, r)`,
        [jobs[0].jobid, other.rows[0].jobid],
      );
      await c.query(
        "select supaqueue.tick(date_trunc('minute', now()) + interval '2 minutes' + interval '0.5 seconds')",
      );
      const { rows: left } = await c.query("select runid from cron.job_run_details order by runid");
      expect(left.map((r) => Number(r.runid))).toEqual([3]);
      const { rows: ticker } = await c.query("select last_run_at is not null as ran from supaqueue.ticker");
      expect(ticker[0].ran).toBe(true);
    } finally {
      await c.end();
    }
  });
});
