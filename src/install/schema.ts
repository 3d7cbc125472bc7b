import { randomBytes } from "node:crypto";
import type pg from "pg";
import { type MigrateResult, migrate } from "../db/migrate.ts";
import { transaction } from "../db/transaction.ts";
import { scheduleTick, type TickMode, type TickState } from "./tick.ts";

const VAULT_SECRET_NAME = "supaqueue_secret";

export interface SchemaSettings {
  /** The functions base URL, e.g. https://<ref>.supabase.co/functions/v1. */
  functionsUrl: string;
  /** The shared secret; when absent the one in Vault is kept, or a new one is generated on the first install. */
  secret?: string;
  /** Who runs tick(): pg_cron (scheduled here; the deploy enables it first) or the caller (default). */
  tick?: TickMode;
  /** Whether this run created the pg_cron extension (reported in the tick's state). */
  enabledPgCron?: boolean;
}

export interface SchemaInstall extends MigrateResult {
  /** The shared secret now in Vault (to be set as the function's SUPAQUEUE_SECRET). */
  secret: string;
  secretCreated: boolean;
  /** How tick() runs. */
  tick: TickState;
}

/** The functions base URL of a hosted Supabase project. */
export function functionsUrlForProject(projectRef: string): string {
  return `https://${projectRef}.supabase.co/functions/v1`;
}

/** A new shared secret: 32 random bytes, URL-safe. */
function generateSecret(): string {
  return randomBytes(32).toString("base64url");
}

/**
 * Installs or upgrades the schema and sets the project's values: migrations, the functions URL, the Vault secret
 * `supaqueue_secret` (created or updated through Vault's functions, never written to a plain table) and the
 * pg_cron schedule of tick(). Everything after the migrations happens in one transaction.
 */
export async function installSchema(client: pg.ClientBase, settings: SchemaSettings): Promise<SchemaInstall> {
  const migrated = await migrate(client);
  return transaction(client, async () => {
    await client.query("select supaqueue.configure(functions_url => $1)", [settings.functionsUrl]);
    const existing = await client.query<{ id: string; secret: string }>(
      "select id, decrypted_secret as secret from vault.decrypted_secrets where name = $1",
      [VAULT_SECRET_NAME],
    );
    const current = existing.rows[0];
    let secret = settings.secret ?? current?.secret;
    const secretCreated = !current;
    if (!secret) secret = generateSecret();
    if (!current) {
      await client.query(
        "select vault.create_secret($1, $2, 'Supaqueue: key of the HMAC on the wakeups the database sends execute_current_job')",
        [secret, VAULT_SECRET_NAME],
      );
    } else if (current.secret !== secret) {
      await client.query("select vault.update_secret($1, $2)", [current.id, secret]);
    }
    const tick = await scheduleTick(client, settings.tick ?? "external", settings.enabledPgCron ?? false);
    return { ...migrated, secret, secretCreated, tick };
  });
}
