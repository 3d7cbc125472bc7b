import pg from "pg";

/**
 * The installer's advisory-lock ids, one per job that two runs must not do at once. Any fixed numbers work as long as
 * every installer uses the same ones.
 */
export const LOCKS = {
  /** Session lock around applying migrations (db/migrate.ts). */
  migration: 727_274_001,
  /** Transaction lock around reconciling queues with the file (install/apply.ts). */
  reconcile: 727_274_003,
} as const;

export interface TransactionOptions {
  /** Run as this role (`set local role`), as PostgREST runs a request: service_role, anon, authenticated. */
  role?: string;
  /** Take this transaction-level advisory lock first (one of LOCKS). */
  lock?: number;
}

/**
 * Runs `fn` between begin and commit on `client`; any error rolls back and is thrown again. A transaction that only
 * read (or decided to change nothing) is simply committed.
 */
export async function transaction<T>(
  client: pg.ClientBase,
  fn: () => Promise<T>,
  options: TransactionOptions = {},
): Promise<T> {
  await client.query("begin");
  try {
    if (options.role) await client.query(`set local role ${pg.escapeIdentifier(options.role)}`);
    if (options.lock !== undefined) await client.query("select pg_advisory_xact_lock($1)", [options.lock]);
    const result = await fn();
    await client.query("commit");
    return result;
  } catch (error) {
    await client.query("rollback").catch(() => {});
    throw error;
  }
}

/** Runs one statement in its own transaction as `role` (service_role, anon, authenticated), as PostgREST does. */
// biome-ignore lint/suspicious/noExplicitAny: rows are as loose as pool.query's
export async function asRole<T extends pg.QueryResultRow = any>(
  pool: pg.Pool,
  role: string,
  sql: string,
  params: unknown[] = [],
): Promise<pg.QueryResult<T>> {
  const client = await pool.connect();
  try {
    return await transaction(client, () => client.query<T>(sql, params), { role });
  } finally {
    client.release();
  }
}
