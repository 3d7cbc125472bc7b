-- Supaqueue is installed whole: its schema, tables, the SQL API and the entry points in public.
-- Run by `supabase test db` (pgTAP through pg_prove); everything happens in one transaction that is rolled back.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;
select plan(7);

select has_schema('supaqueue', 'the supaqueue schema exists');
select tables_are('supaqueue', array['config', 'queue', 'job', 'worker', 'current_job', 'rate_bucket', 'throttle', 'job_key', 'job_after', 'schedule',
  'attempt', 'wakeup', 'probe', 'ticker', 'alert_episode', 'migration'], 'Supaqueue has exactly its tables');
select has_view('supaqueue', 'queue_stats', 'the queue_stats view exists');
select ok((select count(*) = 1 from supaqueue.config), 'one row of install-time values');
select ok(exists (select from supaqueue.migration where version = 1), 'the first migration is recorded');
select is(array(select p.proname::text from pg_proc p
                where p.pronamespace = 'public'::regnamespace and p.proname like 'supaqueue\_%' order by 1),
  array['supaqueue_cancel', 'supaqueue_claim_current_jobs', 'supaqueue_complete_and_claim',
    'supaqueue_complete_callback', 'supaqueue_complete_current_jobs', 'supaqueue_enqueue', 'supaqueue_enqueue_many',
    'supaqueue_get_job', 'supaqueue_pause', 'supaqueue_payload_schema', 'supaqueue_queue_stats', 'supaqueue_resume',
    'supaqueue_retry'],
  'the entry points in public: the edge function''s four and the client''s nine, no other');
select ok(not exists (
    select from unnest(array['enqueue', 'enqueue_many', 'get_job', 'cancel', 'cancel_jobs', 'retry', 'retry_failed',
      'pause', 'resume', 'purge', 'set_workers', 'remove_queue', 'tick', 'probe', 'configure', 'complete_callback']) f
    where not exists (select from pg_proc p where p.pronamespace = 'supaqueue'::regnamespace and p.proname = f)),
  'the SQL API is installed');

select * from finish();
rollback;
