-- Who may do what: anon and authenticated get nothing (no schema, table, view or function, the entry points in public
-- included), every table has RLS with a policy for service_role only, and service_role has the API.
-- Run by `supabase test db`; everything happens in one transaction that is rolled back, with a queue of its own.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;
select plan(14);

insert into supaqueue.queue (name, url) values ('pgtap-security', 'https://target.example/hook');

select ok(not has_schema_privilege('anon', 'supaqueue', 'usage'), 'anon has no usage on the supaqueue schema');
select ok(not has_schema_privilege('authenticated', 'supaqueue', 'usage'),
  'authenticated has no usage on the supaqueue schema');
select is(array(
    select c.relname::text from pg_class c
    where c.relnamespace = 'supaqueue'::regnamespace and c.relkind in ('r', 'v')
      and (has_table_privilege('anon', c.oid, 'select,insert,update,delete')
           or has_table_privilege('authenticated', c.oid, 'select,insert,update,delete'))),
  '{}'::text[], 'anon and authenticated can touch no table or view of supaqueue');
select is(array(
    select p.oid::regprocedure::text from pg_proc p
    where (p.pronamespace = 'supaqueue'::regnamespace
           or (p.pronamespace = 'public'::regnamespace and p.proname like 'supaqueue\_%'))
      and (has_function_privilege('anon', p.oid, 'execute') or has_function_privilege('authenticated', p.oid, 'execute'))),
  '{}'::text[], 'anon and authenticated can execute no Supaqueue function');
select throws_ok($$set local role anon; select public.supaqueue_enqueue('pgtap-security')$$, '42501', null,
  'anon cannot enqueue through the API');
select throws_ok($$set local role authenticated; select public.supaqueue_queue_stats()$$, '42501', null,
  'authenticated cannot read stats through the API');
select throws_ok($$set local role authenticated; select * from supaqueue.job$$, '42501', null,
  'authenticated cannot read jobs');

select is(array(
    select c.relname::text from pg_class c
    where c.relnamespace = 'supaqueue'::regnamespace and c.relkind = 'r' and not c.relrowsecurity),
  '{}'::text[], 'RLS is enabled on every table');
select is(array(
    select c.relname::text from pg_class c
    where c.relnamespace = 'supaqueue'::regnamespace and c.relkind = 'r'
      and not exists (select from pg_policy p where p.polrelid = c.oid)),
  '{}'::text[], 'every table has a policy');
select policy_roles_are('supaqueue', 'job', 'service_role_only', array['service_role'],
  'the job table''s policy is for service_role only');
select is(array(
    select p.oid::regprocedure::text from pg_proc p
    where p.pronamespace = 'public'::regnamespace and p.proname like 'supaqueue\_%' and p.prosecdef),
  '{}'::text[], 'the entry points in public run with the caller''s rights');

select lives_ok($$set local role service_role; select public.supaqueue_enqueue('pgtap-security', '{"n": 1}'); reset role$$,
  'service_role enqueues through the API');
select lives_ok($$set local role service_role; select public.supaqueue_pause('pgtap-security'); reset role$$,
  'service_role pauses a queue through the API');
select is((select count(*)::int from supaqueue.job j join supaqueue.queue q on q.id = j.queue_id
           where q.name = 'pgtap-security'), 1, 'the job service_role added is there');

select * from finish();
rollback;
