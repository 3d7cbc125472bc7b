-- Supaqueue: replacing a pre-release install, step 1 of 2 (src/db/migrate.ts runs it, then every migration of sql/,
-- then restore.sql, in one transaction: all of it happens or none).
--
-- The installs made before the first release recorded no checksums, and their schema is not the one sql/ now builds.
-- Rather than a diff that must end exactly where a fresh install does, the old schema is dropped and built anew, with
-- its rows kept aside here and put back by restore.sql. Nothing of the project's may depend on Supaqueue's objects
-- (it would be dropped with them): that is refused first, naming what depends.

do $$
declare depending text;
begin
  select string_agg(distinct pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid), ', ') into depending
  from pg_catalog.pg_depend d
  where d.deptype in ('n', 'a')
    and ((d.refclassid = 'pg_catalog.pg_class'::regclass
          and d.refobjid in (select c.oid from pg_catalog.pg_class c where c.relnamespace = 'supaqueue'::regnamespace))
      or (d.refclassid = 'pg_catalog.pg_type'::regclass
          and d.refobjid in (select t.oid from pg_catalog.pg_type t where t.typnamespace = 'supaqueue'::regnamespace))
      or (d.refclassid = 'pg_catalog.pg_proc'::regclass
          and d.refobjid in (select p.oid from pg_catalog.pg_proc p where p.pronamespace = 'supaqueue'::regnamespace)))
    -- Supaqueue's own objects: anything in its schema, or attached to one of its tables under a name it gave.
    and not case d.classid
      when 'pg_catalog.pg_class'::regclass then
        (select c.relnamespace = 'supaqueue'::regnamespace from pg_catalog.pg_class c where c.oid = d.objid)
      when 'pg_catalog.pg_type'::regclass then
        (select t.typnamespace = 'supaqueue'::regnamespace from pg_catalog.pg_type t where t.oid = d.objid)
      when 'pg_catalog.pg_proc'::regclass then
        (select p.pronamespace = 'supaqueue'::regnamespace or p.proname like 'supaqueue\_%'
         from pg_catalog.pg_proc p where p.oid = d.objid)
      when 'pg_catalog.pg_rewrite'::regclass then
        (select c.relnamespace = 'supaqueue'::regnamespace
         from pg_catalog.pg_rewrite r join pg_catalog.pg_class c on c.oid = r.ev_class where r.oid = d.objid)
      when 'pg_catalog.pg_constraint'::regclass then
        (select coalesce(c.relnamespace = 'supaqueue'::regnamespace, true)
         from pg_catalog.pg_constraint k left join pg_catalog.pg_class c on c.oid = k.conrelid where k.oid = d.objid)
      when 'pg_catalog.pg_attrdef'::regclass then
        (select c.relnamespace = 'supaqueue'::regnamespace
         from pg_catalog.pg_attrdef a join pg_catalog.pg_class c on c.oid = a.adrelid where a.oid = d.objid)
      when 'pg_catalog.pg_trigger'::regclass then
        (select t.tgname in ('queue_is_valid', 'job_inserted_dispatches', 'worker_inserted_dispatches',
                             'queue_resumed_dispatches', 'current_job_inserted_calls')
                or t.tgisinternal
         from pg_catalog.pg_trigger t where t.oid = d.objid)
      when 'pg_catalog.pg_policy'::regclass then
        (select p.polname = 'service_role_only' from pg_catalog.pg_policy p where p.oid = d.objid)
      else false
    end;
  if depending is not null then
    raise exception 'supaqueue: cannot replace the pre-release schema: objects of this project depend on it: %', depending
      using hint = 'Drop them, run the installer again, then create them anew (their definitions are in pg_dump --schema-only).';
  end if;
end $$;

create temp table prerelease_config on commit drop as select * from supaqueue.config;
create temp table prerelease_queue on commit drop as select * from supaqueue.queue;
-- status as text: its enum type goes with the old schema.
create temp table prerelease_job on commit drop as
  select id, seq, queue_id, payload, headers, status::text as status, attempts, run_at, dedup_key, last_status_code,
         last_error, created_at, finished_at
  from supaqueue.job;
create temp table prerelease_worker on commit drop as select * from supaqueue.worker;
create temp table prerelease_current_job on commit drop as select * from supaqueue.current_job;
create temp table prerelease_rate_bucket on commit drop as select * from supaqueue.rate_bucket;
create temp table prerelease_schedule on commit drop as select * from supaqueue.schedule;
create temp table prerelease_attempt on commit drop as select * from supaqueue.attempt;

-- The pre-release hop put the whole call into pg_net's queue, its decrypted header secrets, signing keys and the
-- shared secret included, where every role can read it. Those still waiting are taken out (pg_net has not sent
-- them: rows its worker is sending are locked, and this waits for them); their calls are woken the new way by
-- restore.sql. Calls whose request already left were delivered, and the function that has them reports them.
create temp table prerelease_unsent (current_job_id bigint) on commit drop;
with gone as (
  delete from net.http_request_queue r
  where r.url like '%/execute_current_job' and r.headers ? 'supaqueue-secret'
  returning pg_catalog.convert_from(r.body, 'UTF8')::jsonb ->> 'current_job_id' as id
)
insert into prerelease_unsent select g.id::bigint from gone g where g.id ~ '^[0-9]{1,18}$';

drop schema supaqueue cascade;
drop function if exists public.supaqueue_complete_current_job(bigint, boolean, integer, text, text, integer, boolean, integer);
drop function if exists public.supaqueue_complete_current_jobs(jsonb);
