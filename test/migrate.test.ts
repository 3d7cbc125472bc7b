import pg from "pg";
import { describe, expect, test } from "vitest";
import { checksumOf, loadMigrations, type Migration, migrate } from "../src/db/migrate.ts";
import { installSchema } from "../src/install/schema.ts";
import { emptyDatabase } from "./support/db.ts";

function migration(version: number, name: string, sql: string): Migration {
  return { version, name, sql, checksum: checksumOf(sql) };
}

async function client(url: string) {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  return c;
}

describe("the migration runner", () => {
  test("installs as a non-superuser, records versions, and does nothing on a rerun", async () => {
    const db = await emptyDatabase();
    const c = await client(db.url);
    const {
      rows: [me],
    } = await c.query("select rolsuper from pg_roles where rolname = current_user");
    expect(me.rolsuper).toBe(false);
    const first = await installSchema(c, { functionsUrl: "https://abc.supabase.co/functions/v1" });
    expect(first.applied).toEqual(loadMigrations().map((m) => m.name));
    expect(first.secretCreated).toBe(true);
    expect(first.secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const again = await installSchema(c, { functionsUrl: "https://abc.supabase.co/functions/v1" });
    expect(again).toMatchObject({
      applied: [],
      version: first.version,
      secret: first.secret,
      secretCreated: false,
    });
    const { rows } = await c.query("select functions_url from supaqueue.config");
    expect(rows[0].functions_url).toBe("https://abc.supabase.co/functions/v1");
    const { rows: secrets } = await c.query(
      "select count(*)::int as n from vault.decrypted_secrets where name = 'supaqueue_secret'",
    );
    expect(secrets[0].n).toBe(1);
    await c.end();
  });

  test("two installers started at once both succeed and leave one correct schema", async () => {
    const db = await emptyDatabase();
    const [a, b] = [await client(db.url), await client(db.url)];
    const results = await Promise.all([
      installSchema(a, { functionsUrl: "https://abc.supabase.co/functions/v1", secret: "s1" }),
      installSchema(b, { functionsUrl: "https://abc.supabase.co/functions/v1", secret: "s1" }),
    ]);
    expect(results.map((r) => r.applied.length).sort()).toEqual([0, loadMigrations().length]);
    const { rows } = await a.query("select count(*)::int as n from supaqueue.migration");
    expect(rows[0].n).toBe(loadMigrations().length);
    await Promise.all([a.end(), b.end()]);
  });

  test("a failing migration is rolled back whole and named in the error", async () => {
    const db = await emptyDatabase();
    const c = await client(db.url);
    const good = loadMigrations();
    const bad = migration(9999, "9999_broken", "create table supaqueue.half (id int); select 1/0;");
    await expect(migrate(c, [...good, bad])).rejects.toThrow(
      /migration 9999_broken failed and was rolled back: division by zero/,
    );
    const { rows } = await c.query(
      "select to_regclass('supaqueue.half') as half, max(version) as v from supaqueue.migration",
    );
    expect(rows[0]).toEqual({ half: null, v: good.at(-1)!.version });
    await c.end();
  });

  test("a first migration that fails leaves no trace", async () => {
    const db = await emptyDatabase();
    const c = await client(db.url);
    await expect(migrate(c, [migration(1, "0001_broken", "select 1/0")])).rejects.toThrow(/0001_broken/);
    const { rows } = await c.query("select to_regnamespace('supaqueue') as ns");
    expect(rows[0].ns).toBeNull();
    await c.end();
  });
});
