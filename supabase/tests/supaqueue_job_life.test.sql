-- A job's life from enqueue to success without network: enqueued through the client's RPC, its call started by
-- dispatch, claimed and completed through the edge function's RPCs (as execute_current_job would, with no HTTP),
-- then read back with its attempt. No wakeup is sent: that happens at commit, and this transaction is rolled back.
-- Run by `supabase test db`, with a queue of its own.
begin;
create extension if not exists pgtap with schema extensions;
set local search_path = public, extensions;
select plan(14);

-- A project installed by `supaqueue deploy` has its functions URL; one made from migrations alone may not yet.
select supaqueue.configure(functions_url => 'http://127.0.0.1:9/functions/v1')
where (select functions_url from supaqueue.config) is null;
insert into supaqueue.queue (name, url, max_attempts) values ('pgtap-life', 'https://target.example/hook', 2);
select supaqueue.set_workers('pgtap-life', 1);

select set_config('pgtap.job', public.supaqueue_enqueue('pgtap-life', '{"to": "ada@example.com"}')::text, true);
select is((select status::text from supaqueue.job where id = current_setting('pgtap.job')::uuid), 'in_progress',
  'a free worker starts the job at once');
select set_config('pgtap.call', (select id::text from supaqueue.current_job
                                 where job_id = current_setting('pgtap.job')::uuid), true);
select isnt(current_setting('pgtap.call'), '', 'the call in flight is a current job');

select is((public.supaqueue_claim_current_jobs(array[current_setting('pgtap.call')::bigint]) -> 0 -> 'job' -> 'payload'),
  '{"to": "ada@example.com"}'::jsonb, 'the claim hands out the call with its payload');
select is(jsonb_array_length(public.supaqueue_claim_current_jobs(array[current_setting('pgtap.call')::bigint])), 0,
  'a call is claimed once');

select is(public.supaqueue_complete_current_jobs(jsonb_build_array(jsonb_build_object(
    'current_job_id', current_setting('pgtap.call')::bigint, 'succeeded', true, 'status_code', 200,
    'duration_ms', 12, 'response_body', 'ok'))),
  array[current_setting('pgtap.call')::bigint], 'the outcome is recorded');

select is(public.supaqueue_get_job(current_setting('pgtap.job')::uuid) ->> 'status', 'successful',
  'the job has succeeded');
select is(public.supaqueue_get_job(current_setting('pgtap.job')::uuid) -> 'attempts_history' -> 0 -> 'status_code',
  '200'::jsonb, 'its attempt is kept with the status');
select ok(not exists (select from supaqueue.worker w join supaqueue.queue q on q.id = w.queue_id
                      where q.name = 'pgtap-life' and w.locked), 'the worker is free again');
select is((public.supaqueue_queue_stats('pgtap-life') -> 0 ->> 'successful')::int, 1, 'queue_stats counts it');

-- A long call (callback_timeout): the target answers 202, then reports through the callback with the call's token.
insert into supaqueue.queue (name, url, callback_timeout_ms) values ('pgtap-long', 'https://target.example/render', 60000);
select supaqueue.set_workers('pgtap-long', 1);
select set_config('pgtap.long', public.supaqueue_enqueue('pgtap-long', '{"video": 1}')::text, true);
select set_config('pgtap.long_call', (select id::text from supaqueue.current_job
                                      where job_id = current_setting('pgtap.long')::uuid), true);
select set_config('pgtap.token', public.supaqueue_claim_current_jobs(array[current_setting('pgtap.long_call')::bigint])
                                   -> 0 -> 'callback' ->> 'token', true);
select matches(current_setting('pgtap.token'), '^[0-9a-f]{64}\.[0-9a-f]{64}$', 'the call carries a callback token');
select is(public.supaqueue_complete_current_jobs(jsonb_build_array(jsonb_build_object(
    'current_job_id', current_setting('pgtap.long_call')::bigint, 'succeeded', true, 'status_code', 202))),
  array[current_setting('pgtap.long_call')::bigint], 'a 202 is recorded');
select is(public.supaqueue_get_job(current_setting('pgtap.long')::uuid) ->> 'status', 'in_progress',
  'after a 202 the call stays in flight, waiting for its callback');
select is(public.supaqueue_complete_callback(current_setting('pgtap.token'), 200, '{"url": "v.mp4"}'), 'recorded',
  'the callback records the outcome');
select is(public.supaqueue_complete_callback(current_setting('pgtap.token'), 200), 'unknown',
  'a repeated callback changes nothing');

select * from finish();
rollback;
