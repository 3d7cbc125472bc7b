import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import {
  createProjectDatabase,
  databaseUrl,
  ensureSupabaseRoles,
  INSTALLER_ROLE,
  installStandinExtensions,
  withClient,
} from "../../src/standins/supabase.ts";

const BIN = "/usr/lib/postgresql/15/bin";

/** Whether this machine has pg_cron for Postgres 15 (Debian's postgresql-15-cron, which .ci/run installs). */
export const hasPgCron =
  existsSync("/usr/lib/postgresql/15/lib/pg_cron.so") && existsSync(join(BIN, "initdb"));

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * A throwaway Postgres 15 cluster with pg_cron preloaded, as on Supabase (pg_cron needs shared_preload_libraries,
 * which the shared test server does not have). Runs as the OS user postgres when started by root.
 */
export async function startCronCluster(database: string): Promise<{ adminUrl: string; stop(): void }> {
  const dir = mkdtempSync(join(tmpdir(), "supaqueue-cron-"));
  chmodSync(dir, 0o777);
  const data = join(dir, "data");
  const port = await freePort();
  const asPostgres = (cmd: string, args: string[]) =>
    process.getuid?.() === 0
      ? execFileSync("runuser", ["-u", "postgres", "--", join(BIN, cmd), ...args], { stdio: "pipe" })
      : execFileSync(join(BIN, cmd), args, { stdio: "pipe" });
  asPostgres("initdb", ["-D", data, "--auth=trust", "-U", "postgres", "--no-sync"]);
  const options = [
    `-c port=${port}`,
    "-c listen_addresses=127.0.0.1",
    `-c unix_socket_directories=${dir}`,
    "-c shared_preload_libraries=pg_cron",
    `-c cron.database_name=${database}`,
    "-c cron.use_background_workers=on",
    "-c max_worker_processes=16",
    "-c fsync=off",
  ].join(" ");
  asPostgres("pg_ctl", ["-D", data, "-o", options, "-w", "-l", join(dir, "log"), "start"]);
  return {
    adminUrl: `postgres://postgres@127.0.0.1:${port}/postgres`,
    stop() {
      try {
        asPostgres("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
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
