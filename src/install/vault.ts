import type pg from "pg";

// Where Supaqueue keeps the secrets of queues in Vault: their names, and reading and writing them.

/**
 * Vault secrets of queue headers are named after their queue and header, so each belongs to one header. The parts are
 * joined with ':', which neither a queue name nor an HTTP header name can contain, so no two (queue, header) pairs
 * share a name (supaqueue._header_secret_name in sql/0001_supaqueue.sql is the same rule).
 */
const HEADER_SECRET_PREFIX = "supaqueue:header:";

/** The Vault name of a queue's secret header, e.g. supaqueue:header:send-email:x-api-key. */
export function headerSecretName(queue: string, header: string): string {
  return `${HEADER_SECRET_PREFIX}${queue}:${header.toLowerCase()}`;
}

/** A queue's URL held in Vault (it holds ${VAR}): supaqueue:url:<queue> (supaqueue._url_secret_name). */
const URL_SECRET_PREFIX = "supaqueue:url:";
export function urlSecretName(queue: string): string {
  return `${URL_SECRET_PREFIX}${queue}`;
}

/**
 * What a secret of the plan belongs to, in its `header` field: a header's name, or this for the queue's URL ("(url)"
 * is no HTTP header name: tokens have no parentheses).
 */
export const URL_SECRET_HEADER = "(url)";

/** How a secret of the plan is named in words: "url", or "header X-Api-Key". */
export function secretLabel(header: string): string {
  return header === URL_SECRET_HEADER ? "url" : `header ${header}`;
}

// supaqueue.rotate_signing_key names a queue's keys in Vault this way (supaqueue._signing_key_name); the installer
// only reads the names. No queue name contains ':', so the current and previous keys of two queues never meet.
const SIGNING_PREFIX = "supaqueue:signing:";

/** The Vault secret holding a queue's current signing key (with `previous`, the one still honoured after a rotation). */
export function signingSecretName(queue: string, previous = false): string {
  return `${SIGNING_PREFIX}${queue}${previous ? ":previous" : ""}`;
}

/** The SQL that shows a queue's key to someone allowed to read Vault (the key itself is never printed). */
export function readKeyHint(queue: string): string {
  return `select decrypted_secret from vault.decrypted_secrets where name = '${signingSecretName(queue)}'`;
}

export interface StoredSecret {
  id: string;
  value: string;
}

/** The header secrets in Vault by name, decrypted; empty when Vault is not installed yet. */
export async function readHeaderSecrets(client: pg.ClientBase): Promise<Map<string, StoredSecret>> {
  const vault = await client.query<{ ok: boolean }>(
    "select to_regclass('vault.decrypted_secrets') is not null as ok",
  );
  if (!vault.rows[0]?.ok) return new Map();
  const { rows } = await client.query<{ name: string; id: string; value: string }>(
    `select name, id::text, decrypted_secret as value from vault.decrypted_secrets
     where starts_with(name, $1) or starts_with(name, $2)`,
    [HEADER_SECRET_PREFIX, URL_SECRET_PREFIX],
  );
  return new Map(rows.map((row) => [row.name, { id: row.id, value: row.value }]));
}

/** Creates or updates a header secret through Vault's functions (the only way Supabase allows). */
export async function writeHeaderSecret(
  client: pg.ClientBase,
  name: string,
  value: string,
  existing: StoredSecret | undefined,
): Promise<void> {
  if (existing) {
    await client.query("select vault.update_secret($1::uuid, $2)", [existing.id, value]);
  } else {
    await client.query(
      "select vault.create_secret($1, $2, 'Supaqueue: a queue header or URL (from supaqueue.yml)')",
      [value, name],
    );
  }
}

export async function deleteHeaderSecret(client: pg.ClientBase, name: string): Promise<void> {
  await client.query(
    "delete from vault.secrets where name = $1 and (starts_with(name, $2) or starts_with(name, $3))",
    [name, HEADER_SECRET_PREFIX, URL_SECRET_PREFIX],
  );
}
