import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, inject } from "vitest";
import { asRole } from "../../src/db/transaction.ts";
import {
  createProjectDatabase,
  databaseUrl,
  dropDatabase,
  INSTALLER_ROLE,
  withClient,
} from "../../src/standins/supabase.ts";

export const TEST_SECRET = "test-secret";

export interface TestDatabase {
  name: string;
  /** Superuser connection string (for the stand-ins, never for installing Supaqueue). */
  adminUrl: string;
  /** Connection string of the non-superuser installer role, like Supabase's `postgres`. */
  url: string;
  /** A pool connected as the installer role. */
  pool: pg.Pool;
  /** Runs `sql` as `role` (service_role, anon, authenticated) inside a transaction, like PostgREST does. */
  // biome-ignore lint/suspicious/noExplicitAny: rows are as loose as pool.query's
  as<T extends pg.QueryResultRow = any>(
    role: string,
    sql: string,
    params?: unknown[],
  ): Promise<pg.QueryResult<T>>;
  drop(): Promise<void>;
}

// Databases this test file opened. One hook at the file's top level drops them: a hook registered from inside a
// beforeAll or a test body (where installedDatabase() is called) would never run.
const opened: TestDatabase[] = [];
afterAll(async () => {
  for (const db of opened.splice(0)) await db.drop().catch(() => {});
});

async function open(name: string): Promise<TestDatabase> {
  const serverAdmin = inject("adminUrl");
  const url = databaseUrl(serverAdmin, name, INSTALLER_ROLE);
  const pool = new pg.Pool({ connectionString: url, max: 20 });
  pool.on("error", () => {});
  const db: TestDatabase = {
    name,
    adminUrl: databaseUrl(serverAdmin, name),
    url,
    pool,
    as: (role, sql, params) => asRole(pool, role, sql, params),
    async drop() {
      await pool.end();
      await dropDatabase(serverAdmin, name);
    },
  };
  opened.push(db);
  return db;
}

/** Named after this run's template, so that global teardown can drop whatever a crashed file left behind. */
function uniqueName(kind: string): string {
  return `${inject("template")}_${kind}_${randomBytes(5).toString("hex")}`;
}

/** A database with Supaqueue installed (cloned from the template that global setup built). Dropped after the file. */
export async function installedDatabase(): Promise<TestDatabase> {
  const name = uniqueName("test");
  await createProjectDatabase(inject("adminUrl"), name, inject("template"));
  return open(name);
}

/** An empty database laid out like a Supabase project, to test installation itself. Dropped after the file. */
export async function emptyDatabase(): Promise<TestDatabase> {
  const name = uniqueName("empty");
  await createProjectDatabase(inject("adminUrl"), name);
  return open(name);
}

/** Whether the test server has a database of this name (to check that a command dropped the one it made). */
export async function databaseExists(name: string): Promise<boolean> {
  return withClient(inject("adminUrl"), async (admin) => {
    const { rowCount } = await admin.query("select 1 from pg_database where datname = $1", [name]);
    return rowCount === 1;
  });
}
