import type pg from "pg";
import type { QueueSpec } from "../config/types.ts";
import { MANAGED_BY, type SigningChange } from "./plan.ts";

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

/** What `signed:` asks of a queue: a first key when it has none, or no key when the file says unsigned. */
export function signingChange(
  spec: QueueSpec,
  existing: { signing_key_secret: string | null } | undefined,
): SigningChange | null {
  const hasKey = (existing?.signing_key_secret ?? null) !== null;
  if (spec.signed === hasKey) return null;
  return {
    queue: spec.name,
    action: spec.signed ? "create" : "clear",
    vaultSecret: signingSecretName(spec.name),
  };
}

/** Makes the queue's first key with supaqueue.rotate_signing_key; the key stays in the database, unread. */
export async function createSigningKey(client: pg.ClientBase, queue: string): Promise<void> {
  await client.query("select supaqueue.rotate_signing_key($1) is not null", [queue]);
}

/**
 * Stops signing a queue's calls: clears its signing columns and deletes its current and previous keys from Vault.
 * Deleting is deliberate: a key nobody uses should not linger, and signing again later makes a fresh key.
 */
export async function clearSigningKey(client: pg.ClientBase, queue: string): Promise<void> {
  await client.query(
    `update supaqueue.queue set signing_key_secret = null, previous_signing_key_secret = null,
            previous_signing_key_until = null
     where name = $1 and managed_by = $2`,
    [queue, MANAGED_BY],
  );
  await client.query("delete from vault.secrets where name in ($1, $2)", [
    signingSecretName(queue),
    signingSecretName(queue, true),
  ]);
}
