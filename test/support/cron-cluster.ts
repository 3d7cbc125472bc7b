import { existsSync } from "node:fs";
import pg from "pg";
import {
  createProjectDatabase,
  databaseUrl,
  ensureSupabaseRoles,
  INSTALLER_ROLE,
  installStandinExtensions,
  withClient,
} from "../../src/standins/supabase.ts";
import { hasPgBinaries, startPgCluster } from "./pg-cluster.ts";

/** Whether this machine has pg_cron for Postgres 15 (Debian's postgresql-15-cron, which .ci/run installs). */
export const hasPgCron = existsSync("/usr/lib/postgresql/15/lib/pg_cron.so") && hasPgBinaries;

/**
 * A throwaway Postgres 15 cluster with pg_cron preloaded, as on Supabase (pg_cron needs shared_preload_libraries,
 * which the shared test server does not have). Runs as the OS user postgres when started by root.
 */
export async function startCronCluster(database: string): Promise<{ adminUrl: string; stop(): void }> {
  return startPgCluster("cron", [
    "shared_preload_libraries=pg_cron",
    `cron.database_name=${database}`,
    "cron.use_background_workers=on",
    "max_worker_processes=16",
  ]);
}

/**
 * A project database laid out like Supabase's on a throwaway pg_cron cluster, with pg_cron enabled and usable by the
 * installer role (as Supabase's postgres may use it once the extension is on), and a small pool as that role.
 */
export async function startCronProject(): Promise<{ pool: pg.Pool; stop(): Promise<void> }> {
  const cluster = await startCronCluster("project");
  try {
    await withClient(cluster.adminUrl, async (admin) => {
      await installStandinExtensions(admin);
      await ensureSupabaseRoles(admin);
    });
    await createProjectDatabase(cluster.adminUrl, "project");
    await withClient(databaseUrl(cluster.adminUrl, "project"), (admin) =>
      admin.query(`create extension pg_cron;
        grant usage on schema cron to ${INSTALLER_ROLE};
        grant select, delete on all tables in schema cron to ${INSTALLER_ROLE};`),
    );
  } catch (error) {
    cluster.stop();
    throw error;
  }
  const pool = new pg.Pool({
    connectionString: databaseUrl(cluster.adminUrl, "project", INSTALLER_ROLE),
    max: 2,
  });
  return {
    pool,
    async stop() {
      await pool.end();
      cluster.stop();
    },
  };
}
