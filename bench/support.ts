import { randomBytes } from "node:crypto";
import pg from "pg";
import { installSchema } from "../src/install/schema.ts";
import { findOrStartPostgres, type PostgresServer } from "../src/local/embedded.ts";
import {
  createProjectDatabase,
  databaseUrl,
  dropDatabase,
  INSTALLER_ROLE,
  prepareStandinServer,
  withClient,
} from "../src/standins/supabase.ts";

/**
 * What every section of the benchmark shares: the server, a template database with Supaqueue installed by the
 * installer role (cloned per measurement, as the tests do), and small statistics helpers.
 */

/** The functions URL the template is configured with. Nothing listens there: the bench plays pg_net itself. */
const BENCH_FUNCTIONS_URL = "http://127.0.0.1:9/functions/v1";
export const BENCH_SECRET = "bench-secret";

export interface BenchServer {
  server: PostgresServer;
  adminUrl: string;
  /** A database with Supaqueue installed, cloned by `installedDatabase`. */
  template: string;
  /** Every database made in this run, dropped by `close` even when a section fails. */
  made: Set<string>;
  close(): Promise<void>;
}

export interface BenchDatabase {
  name: string;
  /** Superuser connection string (for stand-ins, bench helpers and diagnosis; never to install Supaqueue). */
  adminUrl: string;
  /** The installer role (like Supabase's `postgres`): what an application's server code would use. */
  url: string;
  drop(): Promise<void>;
}

function uniqueName(prefix: string): string {
  return `${prefix}_${randomBytes(4).toString("hex")}`;
}

export async function openServer(): Promise<BenchServer> {
  const server = await findOrStartPostgres(process.env.DATABASE_URL);
  await withClient(server.adminUrl, prepareStandinServer);
  const template = uniqueName("sq_bench_template");
  await createProjectDatabase(server.adminUrl, template);
  await withClient(databaseUrl(server.adminUrl, template, INSTALLER_ROLE), (client) =>
    installSchema(client, { functionsUrl: BENCH_FUNCTIONS_URL, secret: BENCH_SECRET }),
  );
  const made = new Set<string>([template]);
  return {
    server,
    adminUrl: server.adminUrl,
    template,
    made,
    async close() {
      for (const name of made) await dropDatabase(server.adminUrl, name).catch(() => {});
      await server.stop();
    },
  };
}

function database(bench: BenchServer, name: string): BenchDatabase {
  bench.made.add(name);
  return {
    name,
    adminUrl: databaseUrl(bench.adminUrl, name),
    url: databaseUrl(bench.adminUrl, name, INSTALLER_ROLE),
    async drop() {
      await dropDatabase(bench.adminUrl, name);
      bench.made.delete(name);
    },
  };
}

/** A fresh database with Supaqueue installed (a clone of the template). */
export async function installedDatabase(bench: BenchServer, prefix = "sq_bench"): Promise<BenchDatabase> {
  const name = uniqueName(prefix);
  await createProjectDatabase(bench.adminUrl, name, bench.template);
  return database(bench, name);
}

/** A fresh, empty database laid out like a Supabase project (for the limit and the peers). */
export async function emptyDatabase(bench: BenchServer, prefix = "sq_bench_empty"): Promise<BenchDatabase> {
  const name = uniqueName(prefix);
  await createProjectDatabase(bench.adminUrl, name);
  return database(bench, name);
}

/** Runs `fn` on a fresh installed database and always drops it. */
export async function withInstalledDatabase<T>(
  bench: BenchServer,
  fn: (db: BenchDatabase) => Promise<T>,
): Promise<T> {
  const db = await installedDatabase(bench);
  try {
    return await fn(db);
  } finally {
    await db.drop();
  }
}

export { withClient };

/** A small pool (the server allows 100 connections in all). Errors of idle clients are ignored. */
export function smallPool(url: string, max: number): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max });
  pool.on("error", () => {});
  return pool;
}

export function median(values: number[]): number {
  return quantile(values, 0.5);
}

/** The q-quantile by linear interpolation between the closest ranks. */
export function quantile(values: number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  const a = sorted[lo] as number;
  const b = sorted[hi] as number;
  return a + (b - a) * (pos - lo);
}

export function log(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A timeout in seconds from the environment variable `name`, else `fallback`. */
export function timeoutSeconds(name: string, fallback: number): number {
  const value = Number(process.env[name]);
  return value > 0 ? value : fallback;
}

/**
 * Waits for `work`, or fails after `seconds` with what `explain` finds about where the run stuck. A run that hangs
 * would say nothing and hold up the whole benchmark; one that fails loudly says what to look at.
 */
export async function withinTimeout<T>(
  work: Promise<T>,
  seconds: number,
  what: string,
  explain: () => Promise<string>,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      void explain()
        .catch((error) => `(looking failed too: ${error})`)
        .then((where) => reject(new Error(`${what} did not finish within ${seconds} s: ${where}`)));
    }, seconds * 1000);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A connected client; the caller ends it. */
export async function openClient(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  return client;
}
