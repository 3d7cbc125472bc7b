import type pg from "pg";

/** Everything that makes up the installed schema, as comparable data (no row contents, no sequence positions). */
export async function schemaOf(pool: pg.Pool): Promise<unknown> {
  const q = async (sql: string) => (await pool.query(sql)).rows;
  return {
    functions: await q(`
      select p.oid::regprocedure::text as fn, pg_get_functiondef(p.oid) as def, p.proacl::text as acl
      from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname = 'supaqueue' or (n.nspname = 'public' and p.proname like 'supaqueue%') order by 1`),
    columns: await q(`
      select table_name, column_name, data_type, column_default, is_nullable, is_identity
      from information_schema.columns where table_schema = 'supaqueue' order by 1, 2`),
    constraints: await q(`
      select conrelid::regclass::text as tbl, conname, pg_get_constraintdef(oid) as def from pg_constraint
      where connamespace = 'supaqueue'::regnamespace order by 1, 2`),
    indexes: await q(
      "select tablename, indexname, indexdef from pg_indexes where schemaname = 'supaqueue' order by 1, 2",
    ),
    triggers: await q(`
      select tgrelid::regclass::text as tbl, tgname, pg_get_triggerdef(oid) as def from pg_trigger
      where not tgisinternal and tgrelid in (select oid from pg_class where relnamespace = 'supaqueue'::regnamespace)
      order by 1, 2`),
    relations: await q(`
      select relname, relkind, relacl::text as acl, reloptions::text as options, relrowsecurity
      from pg_class where relnamespace = 'supaqueue'::regnamespace and relkind in ('r', 'v') order by 1`),
    policies: await q(
      "select tablename, policyname, roles::text, cmd, qual from pg_policies where schemaname = 'supaqueue' order by 1, 2",
    ),
    types: await q("select typname from pg_type where typnamespace = 'supaqueue'::regnamespace order by 1"),
    config: await q("select * from supaqueue.config"),
  };
}
