import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type pg from "pg";
import { projectRoot } from "../paths.ts";

/** One versioned file of `sql/`, e.g. `0001_supaqueue.sql` → version 1. */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export interface MigrateResult {
  /** Names of the migrations this run applied, in order (empty on a rerun). */
  applied: string[];
  /** The schema version after the run. */
  version: number;
}

/** The migrations shipped in `sql/`, in version order. */
export function loadMigrations(dir: string = join(projectRoot(), "sql")): Migration[] {
  return readdirSync(dir)
    .filter((file) => /^\d+_[a-z0-9_]+\.sql$/.test(file))
    .sort()
    .map((file) => ({
      version: Number.parseInt(file, 10),
      name: file.replace(/\.sql$/, ""),
      sql: readFileSync(join(dir, file), "utf8"),
    }));
}

// Any fixed number works; it only has to be the same for every installer.
const MIGRATION_LOCK = 727_274_001;

/**
 * Applies the migrations not yet recorded in `supaqueue.migration`, each in its own transaction, under a session
 * advisory lock so that two installers started at once serialize: the second finds everything applied and does
 * nothing. A migration that fails is rolled back whole and stops the run with its file named.
 */
export async function migrate(
  client: pg.ClientBase,
  migrations: Migration[] = loadMigrations(),
): Promise<MigrateResult> {
  const applied: string[] = [];
  await client.query("select pg_advisory_lock($1)", [MIGRATION_LOCK]);
  try {
    for (const migration of migrations) {
      await client.query("begin");
      try {
        await client.query(`
          set local client_min_messages = warning;
          create schema if not exists supaqueue;
          create table if not exists supaqueue.migration (
            version integer primary key,
            name text not null,
            applied_at timestamptz not null default now())`);
        const done = await client.query("select 1 from supaqueue.migration where version = $1", [
          migration.version,
        ]);
        if (done.rowCount === 0) {
          await client.query("insert into supaqueue.migration (version, name) values ($1, $2)", [
            migration.version,
            migration.name,
          ]);
          await client.query(migration.sql);
          applied.push(migration.name);
        }
        await client.query("commit");
      } catch (error) {
        await client.query("rollback");
        throw new MigrationError(migration, error);
      }
    }
  } finally {
    await client.query("select pg_advisory_unlock($1)", [MIGRATION_LOCK]);
  }
  const version = await client.query<{ version: number }>(
    "select max(version) as version from supaqueue.migration",
  );
  return { applied, version: version.rows[0]?.version ?? 0 };
}

/** A migration that failed; the database is as it was before that migration. */
export class MigrationError extends Error {
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
