import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type pg from "pg";
import { projectRoot } from "../paths.ts";
import { LOCKS, transaction } from "./transaction.ts";

/** One versioned file of `sql/`, e.g. `0001_supaqueue.sql` → version 1. */
export interface Migration {
  version: number;
  name: string;
  sql: string;
  /** SHA-256 of the file, hex: recorded with the version, and compared on every later run. */
  checksum: string;
}

export interface MigrateResult {
  /** Names of the migrations this run applied, in order (empty on a rerun). */
  applied: string[];
  /** The schema version after the run. */
  version: number;
  /** Whether this run replaced a pre-release install (see PRERELEASE), keeping its data. */
  upgradedPrerelease: boolean;
}

/** A migration as a database records it. */
export interface RecordedMigration {
  version: number;
  name: string;
  /** Null for the installs made before checksums were recorded (the pre-release ones). */
  checksum: string | null;
}

/**
 * The migration files of the installs made before the first release, which recorded no checksums. Their schema is
 * replaced by today's 0001 in one transaction that keeps every queue, job, worker, call in flight, attempt, schedule
 * and Vault secret (sql/prerelease/).
 */
const PRERELEASE = ["0001_supaqueue", "0002_batched_completion", "0003_time_ordered_job_ids"] as const;

/** Hex SHA-256 of a migration's text. */
export function checksumOf(sql: string): string {
  return createHash("sha256").update(sql, "utf8").digest("hex");
}

/** The migrations shipped in `sql/`, in version order. */
export function loadMigrations(dir: string = join(projectRoot(), "sql")): Migration[] {
  return readdirSync(dir)
    .filter((file) => /^\d+_[a-z0-9_]+\.sql$/.test(file))
    .sort()
    .map((file) => {
      const sql = readFileSync(join(dir, file), "utf8");
      return {
        version: Number.parseInt(file, 10),
        name: file.replace(/\.sql$/, ""),
        sql,
        checksum: checksumOf(sql),
      };
    });
}

/** What a database records, or an empty list when Supaqueue is not installed. */
export async function readRecordedMigrations(client: pg.ClientBase): Promise<RecordedMigration[]> {
  const { rows } = await client.query<{ present: boolean; checksums: boolean }>(
    `select to_regclass('supaqueue.migration') is not null as present,
            exists (select from pg_attribute where attrelid = to_regclass('supaqueue.migration')
                    and attname = 'checksum' and not attisdropped) as checksums`,
  );
  if (!rows[0]?.present) return [];
  const recorded = await client.query<RecordedMigration>(
    `select version, name, ${rows[0].checksums ? "checksum" : "null::text as checksum"}
     from supaqueue.migration order by version`,
  );
  return recorded.rows;
}

/** How a database's recorded migrations stand against the shipped ones. */
export interface MigrationStatus {
  /** Names of the shipped migrations a run would apply. */
  pending: string[];
  /** The database holds a pre-release install, which a run replaces (data kept). */
  prerelease: boolean;
}

/**
 * Compares what a database records with what ships, and refuses, with the reason and what to do, a database whose
 * history this version cannot continue: a recorded migration whose file differs (another build of Supaqueue), or one
 * this version does not ship (a newer Supaqueue).
 */
export function migrationStatus(recorded: RecordedMigration[], shipped: Migration[]): MigrationStatus {
  if (recorded.length > 0 && recorded.every((r) => r.checksum === null)) {
    const names = new Set<string>(PRERELEASE);
    const unknown = recorded.filter((r) => !names.has(r.name));
    if (unknown.length > 0) {
      throw new MigrationHistoryError(
        `supaqueue: the database records migrations without checksums that are not Supaqueue's pre-release ones (${unknown.map((r) => r.name).join(", ")}); this version cannot tell what they installed. Install the Supaqueue version that made them, or uninstall first (npx supaqueue uninstall).`,
      );
    }
    return { pending: shipped.map((m) => m.name), prerelease: true };
  }
  const byVersion = new Map(shipped.map((m) => [m.version, m]));
  for (const r of recorded) {
    const file = byVersion.get(r.version);
    if (!file) {
      throw new MigrationHistoryError(
        `supaqueue: the database records migration ${r.name}, which this version of Supaqueue does not ship: it was installed by a newer Supaqueue. Use that version (or a later one) to install.`,
      );
    }
    if (r.checksum !== file.checksum || r.name !== file.name) {
      throw new MigrationHistoryError(
        `supaqueue: the database records migration ${r.name} with checksum ${r.checksum?.slice(0, 12) ?? "none"}, but this version ships ${file.name}.sql with checksum ${file.checksum.slice(0, 12)}: the two differ, so the schema in the database is not the one this version expects. Install with the Supaqueue version that applied it; a shipped migration is never edited, a change is a new file.`,
      );
    }
  }
  const done = new Set(recorded.map((r) => r.version));
  return { pending: shipped.filter((m) => !done.has(m.version)).map((m) => m.name), prerelease: false };
}

const MIGRATION_TABLE = `
  create table if not exists supaqueue.migration (
    version integer primary key,
    name text not null,
    checksum text,
    applied_at timestamptz not null default now())`;

const SCRIPT_TAG = "$supaqueue_migration$";
const SQL_TAG = "$supaqueue_sql$";

/**
 * A shipped migration as a file of Supabase's own migrations (supabase/migrations/, applied by `supabase db push`,
 * `supabase start` and `db reset`): one DO block that applies it and records it in supaqueue.migration with its
 * checksum, as migrate() does, so an installer finds it applied and does not apply it twice. On a database where it is
 * recorded already (installed by the action or the CLI) the block does nothing; where a different build of it is
 * recorded it fails, saying so, before any change.
 */
export function migrationScript(migration: Migration): string {
  for (const tag of [SCRIPT_TAG, SQL_TAG])
    if (migration.sql.includes(tag))
      throw new Error(`${migration.name} contains ${tag}, which quotes it here`);
  const literal = (text: string) => `'${text.replaceAll("'", "''")}'`;
  return `-- Supaqueue migration ${migration.name} (sha256 ${migration.checksum}), written by \`supaqueue migrations\`:
-- do not edit. It is recorded in supaqueue.migration, so \`supaqueue deploy\` and the GitHub Action find it applied.
do ${SCRIPT_TAG}
declare
  recorded text;
begin
  set local client_min_messages = warning;
  create schema if not exists supaqueue;
  execute ${literal(MIGRATION_TABLE)};
  select m.checksum into recorded from supaqueue.migration m where m.version = ${migration.version};
  if found and recorded is not distinct from ${literal(migration.checksum)} then
    return;
  elsif found then
    raise exception 'supaqueue: the database records migration ${migration.name} with another checksum (%)', recorded
      using hint = 'Write the migrations with the Supaqueue version that installed it; a shipped migration is never edited.';
  end if;
  insert into supaqueue.migration (version, name, checksum)
  values (${migration.version}, ${literal(migration.name)}, ${literal(migration.checksum)});
  execute ${SQL_TAG}
${migration.sql}
${SQL_TAG};
end ${SCRIPT_TAG};
`;
}

/**
 * Applies the migrations not yet recorded in `supaqueue.migration`, each in its own transaction with its checksum
 * recorded first, under a session advisory lock so that two installers started at once serialize: the second finds
 * everything applied and does nothing. A recorded migration whose file differs stops the run before any change
 * (migrationStatus). A pre-release install is replaced in one transaction with its data kept. A migration that
 * fails is rolled back whole and stops the run with its file named.
 */
export async function migrate(
  client: pg.ClientBase,
  migrations: Migration[] = loadMigrations(),
): Promise<MigrateResult> {
  const applied: string[] = [];
  let upgradedPrerelease = false;
  await client.query("select pg_advisory_lock($1)", [LOCKS.migration]);
  try {
    const status = migrationStatus(await readRecordedMigrations(client), migrations);
    if (status.prerelease) {
      await replacePrerelease(client, migrations);
      applied.push(...migrations.map((m) => m.name));
      upgradedPrerelease = true;
    } else {
      for (const migration of migrations) {
        if (!status.pending.includes(migration.name)) continue;
        await inTransaction(client, migration, async () => {
          await client.query(`set local client_min_messages = warning;
            create schema if not exists supaqueue; ${MIGRATION_TABLE}`);
          await record(client, migration);
          await client.query(migration.sql);
        });
        applied.push(migration.name);
      }
    }
  } finally {
    await client.query("select pg_advisory_unlock($1)", [LOCKS.migration]);
  }
  const version = await client.query<{ version: number }>(
    "select max(version) as version from supaqueue.migration",
  );
  return { applied, version: version.rows[0]?.version ?? 0, upgradedPrerelease };
}

async function record(client: pg.ClientBase, migration: Migration): Promise<void> {
  await client.query("insert into supaqueue.migration (version, name, checksum) values ($1, $2, $3)", [
    migration.version,
    migration.name,
    migration.checksum,
  ]);
}

async function inTransaction(
  client: pg.ClientBase,
  migration: Migration,
  fn: () => Promise<void>,
): Promise<void> {
  await transaction(client, fn).catch((error) => {
    throw new MigrationError(migration, error);
  });
}

/**
 * Replaces a pre-release install in one transaction: sql/prerelease/save.sql keeps its rows aside and drops the old
 * schema, every shipped migration is applied and recorded, and sql/prerelease/restore.sql puts the rows back (calls in
 * flight included) and moves its Vault secrets to today's names. Either all of it happens or none.
 */
async function replacePrerelease(client: pg.ClientBase, migrations: Migration[]): Promise<void> {
  const dir = join(projectRoot(), "sql", "prerelease");
  const step = (file: string): Migration => {
    const sql = readFileSync(join(dir, file), "utf8");
    return { version: 0, name: `prerelease/${file.replace(/\.sql$/, "")}`, sql, checksum: checksumOf(sql) };
  };
  const save = step("save.sql");
  const restore = step("restore.sql");
  let current = save;
  await transaction(client, async () => {
    await client.query("set local client_min_messages = warning");
    await client.query(save.sql);
    await client.query(`create schema supaqueue; ${MIGRATION_TABLE}`);
    for (const migration of migrations) {
      current = migration;
      await record(client, migration);
      await client.query(migration.sql);
    }
    current = restore;
    await client.query(restore.sql);
  }).catch((error) => {
    throw new MigrationError(current, error);
  });
}

/** A database whose recorded migrations this version cannot continue; nothing was changed. */
class MigrationHistoryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MigrationHistoryError";
  }
}

/** A migration that failed; the database is as it was before that migration. */
class MigrationError extends Error {
  constructor(
    readonly migration: Migration,
    readonly cause: unknown,
  ) {
    const detail = cause instanceof Error ? cause.message : String(cause);
    const hint = (cause as { hint?: string }).hint;
    super(
      `supaqueue: migration ${migration.name} failed and was rolled back: ${detail}${hint ? ` (hint: ${hint})` : ""}`,
    );
    this.name = "MigrationError";
  }
}
