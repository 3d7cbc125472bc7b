import { copyFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { connectionConfig } from "../db/connect.ts";
import { projectRoot } from "../paths.ts";

/**
 * Stand-ins for what a Supabase project has and these machines do not: its roles and their grants, and the
 * pg_net and Vault extensions (as real, trusted extensions with the same interface). Used by the tests, the
 * benchmark and the local stack, always against a Postgres we control as a superuser.
 */

/** A non-superuser with the powers of Supabase's `postgres` role: it installs Supaqueue in tests and local mode. */
export const INSTALLER_ROLE = "supabase_postgres";

// Found from the project root so that bundled code (dist/) finds them too.
const EXTENSION_FILES = join(projectRoot(), "src", "standins", "extensions");

/** Runs `fn` with a client connected to `url`, always closing it. */
export async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client(connectionConfig(url));
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Replaces the database name of a connection string (and optionally its user). */
export function databaseUrl(url: string, database: string, user?: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  if (user) {
    u.username = user;
    u.password = "";
  }
  return u.toString();
}

/**
 * Copies the pg_net and supabase_vault stand-ins into the server's extension folder so that
 * `create extension pg_net` works as on Supabase. Returns false when the folder is not writable from here
 * (a remote server), in which case the server must have the real extensions.
 */
export async function installStandinExtensions(admin: pg.ClientBase): Promise<boolean> {
  const { rows } = await admin.query<{ setting: string }>(
    "select setting from pg_config where name = 'SHAREDIR'",
  );
  const sharedir = rows[0]?.setting;
  if (!sharedir) return false;
  try {
    for (const file of readdirSync(EXTENSION_FILES)) {
      copyFileSync(join(EXTENSION_FILES, file), join(sharedir, "extension", file));
    }
    return true;
  } catch {
    return false;
  }
}

/**
 * Makes a server ready for project databases laid out like Supabase's: the pg_net and supabase_vault stand-ins in
 * its extension folder and Supabase's roles. Throws when the stand-ins cannot be installed (a remote server).
 */
export async function prepareStandinServer(admin: pg.ClientBase): Promise<void> {
  if (!(await installStandinExtensions(admin))) {
    throw new Error("the pg_net and supabase_vault stand-ins cannot be installed on this server");
  }
  await ensureSupabaseRoles(admin);
}

/**
 * Creates Supabase's roles once per server: `anon`, `authenticated`, `service_role` (bypasses RLS),
 * `authenticator` (what PostgREST logs in as) and the installer role. Safe to run concurrently.
 */
export async function ensureSupabaseRoles(admin: pg.ClientBase): Promise<void> {
  await admin.query("select pg_advisory_lock(727274002)");
  try {
    await admin.query(`
      do $$
      begin
        if not exists (select from pg_roles where rolname = 'anon') then create role anon nologin noinherit; end if;
        if not exists (select from pg_roles where rolname = 'authenticated') then create role authenticated nologin noinherit; end if;
        if not exists (select from pg_roles where rolname = 'service_role') then create role service_role nologin noinherit bypassrls; end if;
        if not exists (select from pg_roles where rolname = 'authenticator') then create role authenticator login noinherit; end if;
        if not exists (select from pg_roles where rolname = '${INSTALLER_ROLE}') then
          create role ${INSTALLER_ROLE} login createrole createdb bypassrls nosuperuser;
        end if;
        grant anon, authenticated, service_role to authenticator;
        grant anon, authenticated, service_role to ${INSTALLER_ROLE};
      end $$`);
  } finally {
    await admin.query("select pg_advisory_unlock(727274002)");
  }
}

/**
 * Creates a database laid out like a Supabase project's: owned by the installer role, with Supabase's grants on
 * `public` (its default privileges give anon, authenticated and service_role everything new there, which is why
 * Supaqueue revokes what it puts in public). With `template` the database is cloned from it.
 */
export async function createProjectDatabase(
  adminUrl: string,
  name: string,
  template?: string,
): Promise<void> {
  await withClient(adminUrl, async (admin) => {
    const from = template ? ` template ${pg.escapeIdentifier(template)}` : "";
    for (let attempt = 1; ; attempt++) {
      try {
        await admin.query(`create database ${pg.escapeIdentifier(name)} owner ${INSTALLER_ROLE}${from}`);
        break;
      } catch (error) {
        // Cloning fails while another session is briefly connected to the template: try again.
        if (!template || attempt >= 20 || (error as { code?: string }).code !== "55006") throw error;
        await new Promise((r) => setTimeout(r, 100 * attempt));
      }
    }
  });
  if (template) return;
  await withClient(databaseUrl(adminUrl, name), async (admin) => {
    await admin.query(`
      grant usage on schema public to anon, authenticated, service_role;
      alter default privileges for role ${INSTALLER_ROLE} in schema public
        grant all on tables to anon, authenticated, service_role;
      alter default privileges for role ${INSTALLER_ROLE} in schema public
        grant all on functions to anon, authenticated, service_role;
      alter default privileges for role ${INSTALLER_ROLE} in schema public
        grant all on sequences to anon, authenticated, service_role;`);
  });
}

/** Drops a database, ending any session still connected to it. */
export async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  await withClient(adminUrl, (admin) =>
    admin.query(`drop database if exists ${pg.escapeIdentifier(name)} with (force)`),
  );
}
