import type pg from "pg";

/**
 * Everything an install can touch, as plain data: compare two snapshots to prove a run changed nothing
 * (updated_at columns are included, so even a rewrite with the same values shows).
 */
export async function snapshot(pool: pg.Pool): Promise<unknown> {
  const q = async (sql: string) => (await pool.query(sql)).rows;
  const [{ installed, vault }] = (await q(
    "select to_regclass('supaqueue.queue') is not null as installed, to_regclass('vault.decrypted_secrets') is not null as vault",
  )) as [{ installed: boolean; vault: boolean }];
  return {
    installed,
    vault: vault
      ? await q("select name, decrypted_secret, updated_at from vault.decrypted_secrets order by name")
      : null,
    ...(installed
      ? {
          migrations: await q("select version, name, applied_at from supaqueue.migration order by version"),
          config: await q("select * from supaqueue.config"),
          queues: await q("select * from supaqueue.queue order by name"),
          workers: await q("select id, queue_id, locked, retiring from supaqueue.worker order by id"),
          jobs: await q("select id, queue_id, status, attempts from supaqueue.job order by seq"),
        }
      : {}),
  };
}
