import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { loadMigrations, migrationScript } from "../db/migrate.ts";
import type { CommandSpec, Parsed } from "./args.ts";

export const MIGRATIONS: CommandSpec = {
  name: "migrations",
  brief: "write Supaqueue's schema into supabase/migrations/ for supabase db push",
  summary:
    "write each migration of Supaqueue's schema as a timestamped file of supabase/migrations/, for projects whose database is managed with `supabase db push` (and `supabase start`, `db reset`, preview branches). Each file records itself in supaqueue.migration, so `supaqueue deploy` and the action find the schema installed and do not apply it twice; a file already there is left as it is.",
  flags: {
    workdir: {
      type: "string",
      value: "DIR",
      description: "The folder holding supabase/ (default: the current folder).",
    },
  },
  notes: [
    "Then `supabase db push`, and `supaqueue deploy` (or the action) for the function, its secret and your queues.",
  ],
};

/** Supabase CLI's migration version: the UTC time as YYYYMMDDHHMMSS. */
function timestamp(at: Date): string {
  return at.toISOString().replace(/\D/g, "").slice(0, 14);
}

export function runMigrations(parsed: Parsed, now: Date = new Date()): number {
  const workdir = (parsed.values.workdir as string | undefined) ?? ".";
  const dir = join(isAbsolute(workdir) ? workdir : resolve(process.cwd(), workdir), "supabase", "migrations");
  mkdirSync(dir, { recursive: true });
  const existing = readdirSync(dir);
  let written = 0;
  for (const [i, migration] of loadMigrations().entries()) {
    const suffix = `_supaqueue_${migration.name}.sql`;
    const script = migrationScript(migration);
    const there = existing.find((f) => f.endsWith(suffix));
    if (there !== undefined) {
      if (readFileSync(join(dir, there), "utf8") !== script) {
        throw new Error(
          `supaqueue: supabase/migrations/${there} differs from this version's ${migration.name}; a migration already applied is never rewritten. Keep it, or delete it only if no database has applied it, and run supaqueue migrations again.`,
        );
      }
      process.stdout.write(`supabase/migrations/${there}: already there\n`);
      continue;
    }
    // One second apart, so the files sort in the order they apply.
    const name = `${timestamp(new Date(now.getTime() + i * 1000))}${suffix}`;
    writeFileSync(join(dir, name), script);
    process.stdout.write(`supabase/migrations/${name}: written\n`);
    written++;
  }
  process.stdout.write(
    written > 0
      ? "Apply with `supabase db push` (or `supabase db reset` locally), then `supaqueue deploy` for the function, its secret and your queues.\n"
      : "Nothing to write.\n",
  );
  return 0;
}
