import { execFile } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, test } from "vitest";
import { withClient } from "../src/standins/supabase.ts";
import { ROOT } from "./support/cli.ts";
import { installedDatabase, type TestDatabase } from "./support/db.ts";

/**
 * The pgTAP files the template ships for `supabase test db` (supabase/tests/*.sql), run as that command runs them:
 * pg_prove, as the project's installing role, on a database with Supaqueue installed. CI installs pgTAP and pg_prove
 * from Debian's packages (postgresql-15-pgtap, libtap-parser-sourcehandler-pgtap-perl: .ci/run).
 */
const TESTS = join(ROOT, "supabase", "tests");
const PG_PROVE = ["/usr/bin/pg_prove", "/usr/local/bin/pg_prove"].find((p) => existsSync(p));
const PGTAP = existsSync("/usr/share/postgresql/15/extension/pgtap.control");
const missing = !PG_PROVE
  ? "pg_prove is not installed (apt-get install libtap-parser-sourcehandler-pgtap-perl)"
  : !PGTAP
    ? "pgTAP is not installed (apt-get install postgresql-15-pgtap)"
    : null;
if (missing) console.warn(`test/pgtap.test.ts skipped: ${missing}`);

describe.skipIf(missing !== null)("supabase/tests with pg_prove", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await installedDatabase();
    // pgTAP is not a trusted extension: on Supabase it is already available; here the server's superuser adds it.
    await withClient(db.adminUrl, (admin) => admin.query("create extension pgtap with schema extensions"));
  });

  test("every file passes, each in its own rolled-back transaction", async () => {
    const files = readdirSync(TESTS)
      .filter((f) => f.endsWith(".sql"))
      .sort();
    expect(files).toEqual([
      "supaqueue_job_life.test.sql",
      "supaqueue_schema.test.sql",
      "supaqueue_security.test.sql",
    ]);
    const result = await new Promise<{ code: number; out: string }>((resolve) => {
      execFile(
        PG_PROVE ?? "pg_prove",
        ["--dbname", db.url, "--verbose", ...files.map((f) => join(TESTS, f))],
        { timeout: 60_000 },
        (error, stdout, stderr) =>
          resolve({ code: error ? Number(error.code ?? 1) : 0, out: stdout + stderr }),
      );
    });
    expect(result.out).toMatch(/All tests successful/);
    expect(result.code, result.out).toBe(0);
    // Nothing of the tests' queues is left behind.
    const { rows } = await db.pool.query(
      "select count(*)::int as n from supaqueue.queue where name like 'pgtap-%'",
    );
    expect(rows[0].n).toBe(0);
  });
});
