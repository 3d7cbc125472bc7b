import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const PG_BIN = "/usr/lib/postgresql/15/bin";

/** Whether this machine has the Postgres 15 server binaries a test can start its own cluster with. */
export const hasPgBinaries = existsSync(join(PG_BIN, "initdb")) && existsSync(join(PG_BIN, "pg_ctl"));

export interface PgCluster {
  /** Superuser (trust) connection string to the `postgres` database over 127.0.0.1. */
  adminUrl: string;
  port: number;
  /** The cluster's own folder (0755, so the OS user postgres can read what a test puts there). */
  dir: string;
  stop(): void;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Runs a Postgres binary, as the OS user postgres when this process is root (Postgres refuses to run as root). */
function asPostgres(cmd: string, args: string[]): Buffer {
  return process.getuid?.() === 0
    ? execFileSync("runuser", ["-u", "postgres", "--", join(PG_BIN, cmd), ...args], { stdio: "pipe" })
    : execFileSync(join(PG_BIN, cmd), args, { stdio: "pipe" });
}

/**
 * A throwaway Postgres 15 cluster of a test's own, for settings the shared test server does not have: trust auth,
 * listening on 127.0.0.1, `settings` added as `-c` options. `prepare(dir)` runs after initdb and before start: it
 * puts files into the cluster's folder and returns the settings that name them.
 */
export async function startPgCluster(
  name: string,
  settings: string[],
  prepare: (dir: string) => string[] = () => [],
): Promise<PgCluster> {
  const dir = mkdtempSync(join(tmpdir(), `supaqueue-${name}-`));
  chmodSync(dir, 0o777);
  const data = join(dir, "data");
  const port = await freePort();
  try {
    asPostgres("initdb", ["-D", data, "--auth=trust", "-U", "postgres", "--no-sync"]);
    const prepared = prepare(dir);
    const options = [
      `-c port=${port}`,
      "-c listen_addresses=127.0.0.1",
      `-c unix_socket_directories=${dir}`,
      "-c fsync=off",
      ...[...settings, ...prepared].map((setting) => `-c ${setting}`),
    ].join(" ");
    asPostgres("pg_ctl", ["-D", data, "-o", options, "-w", "-l", join(dir, "log"), "start"]);
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    adminUrl: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    dir,
    stop() {
      try {
        asPostgres("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
