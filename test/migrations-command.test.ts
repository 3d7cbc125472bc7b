import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { migrate } from "../src/db/migrate.ts";
import { cli } from "./support/cli.ts";
import { emptyDatabase, installedDatabase } from "./support/db.ts";
import { snapshot } from "./support/db-snapshot.ts";
import { schemaOf } from "./support/schema-of.ts";
import { tempDir } from "./support/temp-dir.ts";

// `supaqueue migrations`: the schema as files of supabase/migrations/, for projects that run `supabase db push`.
// The file is applied here as the Supabase CLI applies it (its text, as the project's installing role).

async function writeMigrations(dir: string) {
  const run = await cli(["migrations", "--workdir", dir]);
  expect(run.stderr).toBe("");
  expect(run.code).toBe(0);
  return run.stdout;
}

describe("supaqueue migrations", () => {
  test("writes one timestamped file per migration, once", async () => {
    const dir = tempDir("migrations");
    expect(await writeMigrations(dir)).toMatch(
      /^supabase\/migrations\/\d{14}_supaqueue_0001_supaqueue\.sql: written\nApply with `supabase db push`/,
    );
    const files = readdirSync(join(dir, "supabase", "migrations"));
    expect(files).toHaveLength(1);
    expect(await writeMigrations(dir)).toContain(
      `supabase/migrations/${files[0]}: already there\nNothing to write.`,
    );
    expect(readdirSync(join(dir, "supabase", "migrations"))).toEqual(files);
  });

  test("applied by supabase db push, it installs the same schema as the installer, which then applies nothing", async () => {
    const dir = tempDir("push");
    await writeMigrations(dir);
    const [file] = readdirSync(join(dir, "supabase", "migrations"));
    const script = readFileSync(join(dir, "supabase", "migrations", file ?? ""), "utf8");
    const pushed = await emptyDatabase();
    await pushed.pool.query(script);
    const installed = await emptyDatabase();
    const client = await installed.pool.connect();
    try {
      await migrate(client);
    } finally {
      client.release();
    }
    expect(await schemaOf(pushed.pool)).toEqual(await schemaOf(installed.pool));
    const again = await pushed.pool.connect();
    try {
      expect(await migrate(again)).toEqual({ applied: [], version: 1, upgradedPrerelease: false });
    } finally {
      again.release();
    }
    // Pushed again (a preview branch, db reset after the action installed it): nothing changes.
    const before = await snapshot(pushed.pool);
    await pushed.pool.query(script);
    expect(await snapshot(pushed.pool)).toEqual(before);
  });

  test("on a database the action installed, the file does nothing; with another build recorded it refuses", async () => {
    const dir = tempDir("installed");
    await writeMigrations(dir);
    const [file] = readdirSync(join(dir, "supabase", "migrations"));
    const script = readFileSync(join(dir, "supabase", "migrations", file ?? ""), "utf8");
    const db = await installedDatabase();
    const before = await snapshot(db.pool);
    await db.pool.query(script);
    expect(await snapshot(db.pool)).toEqual(before);
    await db.pool.query("update supaqueue.migration set checksum = 'other' where version = 1");
    await expect(db.pool.query(script)).rejects.toThrow(
      "supaqueue: the database records migration 0001_supaqueue with another checksum (other)",
    );
  });
});
