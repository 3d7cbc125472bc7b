-- Supaqueue 0002: completions in batches, processed as sets.
--
-- 0001 finished one attempt per call of complete_current_job: about twenty statements and one commit per call.
-- Under load, execute_current_job now reports the outcomes that arrive while a report is on its way together, in one
-- call of complete_current_jobs, and the database finishes them as a set: one statement per step for the whole
-- batch, one dispatch per queue, one commit (bench/ANALYSIS.md has the measurements). complete_current_job and
-- tick() use the same code, so every outcome, one or many, reported or reaped, takes one path.

-- One reported outcome: the arguments of complete_current_job as a row.
create type supaqueue.outcome as (
  current_job_id bigint,
  succeeded boolean,
  status_code integer,
  response_body text,
  error text,
  duration_ms integer,
  retryable boolean,
  retry_after_ms integer
);

-- The one-worker dispatch of 0001 becomes a dispatch that may hand several workers of the same queue (held by
-- this transaction, from completions) their next jobs at once.
drop function supaqueue._dispatch(bigint, integer, bigint, timestamptz);
drop function supaqueue._finish_attempt(supaqueue.current_job, boolean, integer, text, text, integer, boolean,
                                        integer, timestamptz);

-- Claims up to `wanted` free workers of a queue and gives each the next due job, in due order.
-- With `own_workers` (workers this transaction already holds, from completions) it gives those workers the next
-- due jobs, in the order given, and unlocks the ones left without a job. Only rows that will be used are locked,
-- with SKIP LOCKED, so this never waits and never blocks another dispatch. Returns the number of calls started.
--
-- Cached plans at any size: PL/pgSQL keeps a statement's generic plan only while it looks no dearer than a plan made
-- for the actual values, and a generic plan knows neither a `limit $n` (it assumes 10% of the rows) nor an array's
-- length. With 1,000,000 pending jobs (or 10,000 free workers) a claim written with `limit wanted` was then planned
-- afresh at every dispatch: about 130 µs of a 270 µs dispatch, while a small queue kept its cached plan
-- (bench/ANALYSIS.md, claim cost). A dispatch for one worker (one enqueue, one completion) therefore claims with a
-- constant `limit 1` and updates single rows, whose generic plans are kept; a dispatch for several workers plans
-- for their number, once a batch.
create function supaqueue._dispatch(queue_id bigint, wanted integer, own_workers bigint[] default null,
                                    at timestamptz default now())
returns integer
language plpgsql security definer set search_path = '' as $$
declare
  q supaqueue.queue;
  worker_ids bigint[];
  job_ids uuid[];
  started integer;
  lease interval;
begin
  if own_workers is not null then
    wanted := cardinality(own_workers);
  end if;
  select * into q from supaqueue.queue where id = _dispatch.queue_id;
  if q.id is not null and not q.paused and q.rate_limit_per_second is not null and wanted > 0 then
    -- Taken first and held to commit: whoever holds a bucket never waits for anything else (no deadlock).
    wanted := least(wanted, floor(supaqueue._refill_bucket(q.id, q.rate_limit_per_second, at))::integer);
  end if;

  -- The claims for one worker and for several differ only in their LIMIT: a constant one keeps its plan cached.
  if q.id is null or q.paused or wanted < 1 then
    worker_ids := '{}';
  elsif own_workers is not null then
    worker_ids := own_workers[1:wanted];
  elsif wanted = 1 then
    select array[w.id] into worker_ids from supaqueue.worker w
    where w.queue_id = q.id and not w.locked
    order by w.id limit 1
    for update skip locked;
  else
    select array_agg(w.id order by w.id) into worker_ids
    from (select w.id from supaqueue.worker w
          where w.queue_id = q.id and not w.locked
          order by w.id limit wanted
          for update skip locked) w;
  end if;

  if cardinality(worker_ids) = 1 then
    select array[j.id] into job_ids from supaqueue.job j
    where j.queue_id = q.id and j.status = 'pending' and j.run_at <= at
    order by j.run_at, j.seq limit 1
    for update skip locked;
  elsif cardinality(worker_ids) > 1 then
    select array_agg(j.id order by j.run_at, j.seq) into job_ids
    from (select j.id, j.run_at, j.seq from supaqueue.job j
          where j.queue_id = q.id and j.status = 'pending' and j.run_at <= at
          order by j.run_at, j.seq limit cardinality(worker_ids)
          for update skip locked) j;
  end if;
  started := coalesce(cardinality(job_ids), 0);

  if own_workers is not null and started < cardinality(own_workers) then
    update supaqueue.worker set locked = false where id = any (own_workers[started + 1:]);
  end if;
  if started = 0 then
    return 0;
  end if;

  worker_ids := worker_ids[1:started];
  lease := make_interval(secs => (q.timeout_ms + (select c.lease_grace_ms from supaqueue.config c)) / 1000.0);
  if started = 1 then
    -- One call: the statements below with scalars instead of arrays, whose generic plans are kept.
    if own_workers is null then
      update supaqueue.worker set locked = true where id = worker_ids[1];
    end if;
    with claimed as (
      update supaqueue.job j set status = 'in_progress', attempts = j.attempts + 1
      where j.id = job_ids[1]
      returning j.attempts
    )
    insert into supaqueue.current_job (worker_id, job_id, attempt, started_at, lease_until)
    select worker_ids[1], job_ids[1], c.attempts, at, at + lease from claimed c;
  else
    if own_workers is null then
      update supaqueue.worker set locked = true where id = any (worker_ids);
    end if;
    with claimed as (
      update supaqueue.job j set status = 'in_progress', attempts = j.attempts + 1
      where j.id = any (job_ids)
      returning j.id, j.attempts
    )
    insert into supaqueue.current_job (worker_id, job_id, attempt, started_at, lease_until)
    select p.worker_id, p.job_id, c.attempts, at, at + lease
    from unnest(worker_ids, job_ids) as p(worker_id, job_id)
    join claimed c on c.id = p.job_id;
  end if;

  if q.rate_limit_per_second is not null then
    update supaqueue.rate_bucket b set tokens = b.tokens - started where b.queue_id = q.id;
  end if;
  return started;
end $$;

-- The status a job in flight moves to when its attempt ends. A job cancelled while its call was in flight stays
-- cancelled; a failure is retried until the queue's max_attempts, unless the target said not to retry.
create function supaqueue._next_status(current supaqueue.job_status, succeeded boolean, retryable boolean,
                                       attempts integer, max_attempts integer)
returns supaqueue.job_status
language sql immutable set search_path = '' as $$
  select case
    when current <> 'in_progress' then current
    when succeeded then 'successful'
    when not retryable or attempts >= max_attempts then 'failed'
    else 'pending'
  end::supaqueue.job_status
$$;

-- Finishes the attempts named by `outcomes` that are still in flight, as a set: deletes their current_job rows,
-- records each attempt, sets each job's status (see _next_status; a retry waits the queue's backoff, or a later
-- Retry-After), dead-letters the jobs that failed for good, removes retiring workers and hands every other worker
-- its queue's next due job (or unlocks it). Job statuses are written before any worker moves on, so a job sent
-- back to pending is seen by the next dispatch. Returns the ids of the current jobs it finished; the others were
-- no longer in flight (a repeated or late report, or a lease that already expired) and change nothing.
--
-- Locks: the current jobs in id order (two reports naming the same call cannot deadlock), then their jobs, then
-- their workers. Each job and worker has at most one current job, so two batches never share a job or a worker.
--
-- Its statements join by primary keys whatever the batch size, so one cached plan serves every call: planning them
-- for each call's arrays took about 220 µs of a 770 µs one-outcome completion (bench/ANALYSIS.md).
create function supaqueue._complete(outcomes supaqueue.outcome[], at timestamptz)
returns bigint[]
language plpgsql security definer set search_path = '' set plan_cache_mode = force_generic_plan as $$
declare
  max_chars integer := (select c.max_response_chars from supaqueue.config c);
  finished supaqueue.current_job[];
  worker_ids bigint[];
  dead_ids uuid[];
  dead_codes integer[];
  dead_errors text[];
  r record;
  dead_queue supaqueue.queue;
  dead_job supaqueue.job;
begin
  with gone as (
    delete from supaqueue.current_job c
    where c.id in (select l.id from supaqueue.current_job l
                   where l.id = any (array(select o.current_job_id from unnest(outcomes) o))
                   order by l.id for update)
    returning c.*
  )
  select array_agg(g order by g.id) into finished from gone g;
  if finished is null then
    return '{}';
  end if;

  -- One statement records every attempt and moves every job on. The status is decided on the job row being
  -- updated, so a cancel() that commits meanwhile is seen.
  with f as (
    select c.id, c.job_id, c.worker_id, c.attempt, c.started_at, o.succeeded, o.status_code,
           o.response_body, o.error, o.duration_ms, coalesce(o.retryable, true) as retryable, o.retry_after_ms
    from unnest(finished) c
    join (select distinct on (o.current_job_id) o.* from unnest(outcomes) with ordinality o
          order by o.current_job_id, o.ordinality) o on o.current_job_id = c.id
  ),
  recorded as (
    insert into supaqueue.attempt (job_id, attempt, worker_id, started_at, finished_at, succeeded, status_code,
                                   response_body, error, duration_ms)
    select f.job_id, f.attempt, f.worker_id, f.started_at, at, f.succeeded, f.status_code,
           left(f.response_body, max_chars), left(f.error, 2000), f.duration_ms
    from f
  ),
  moved as (
    update supaqueue.job j set
      status = supaqueue._next_status(j.status, f.succeeded, f.retryable, j.attempts, q.max_attempts),
      run_at = case
        when supaqueue._next_status(j.status, f.succeeded, f.retryable, j.attempts, q.max_attempts) = 'pending'
        then at + greatest(supaqueue.backoff_delay(j.attempts, q.backoff_base_ms, q.backoff_max_ms),
                           make_interval(secs => coalesce(f.retry_after_ms, 0) / 1000.0))
        else j.run_at end,
      last_status_code = f.status_code,
      last_error = case when f.succeeded then null else left(f.error, 2000) end,
      finished_at = case
        when supaqueue._next_status(j.status, f.succeeded, f.retryable, j.attempts, q.max_attempts) = 'pending'
        then null else at end
    from f, supaqueue.queue q
    where j.id = f.job_id and q.id = j.queue_id
    returning j.id, j.status, q.dead_letter_queue, f.status_code, f.error
  )
  select array_agg(m.id), array_agg(m.status_code), array_agg(m.error)
  into dead_ids, dead_codes, dead_errors
  from moved m where m.status = 'failed' and m.dead_letter_queue is not null;

  for i in 1 .. coalesce(cardinality(dead_ids), 0) loop
    select * into dead_job from supaqueue.job where id = dead_ids[i];
    select * into dead_queue from supaqueue.queue where id = dead_job.queue_id;
    perform supaqueue._dead_letter(dead_queue, dead_job, dead_codes[i], dead_errors[i]);
  end loop;

  worker_ids := array(select c.worker_id from unnest(finished) c);
  delete from supaqueue.worker w where w.id = any (worker_ids) and w.retiring;
  for r in
    select w.queue_id, array_agg(w.id order by w.id) as workers
    from supaqueue.worker w where w.id = any (worker_ids)
    group by w.queue_id order by w.queue_id
  loop
    perform supaqueue._dispatch(r.queue_id, null, r.workers, at);
  end loop;

  return array(select c.id from unnest(finished) c);
end $$;

-- Records the outcome of one attempt of a call in flight: success, HTTP status, response body (cut to
-- config.max_response_chars), error text and duration. A failed attempt goes back to pending after the queue's
-- backoff (or Retry-After, when later), or to failed once max_attempts is reached or when `retryable` is false.
-- Then the worker takes the next due job or is unlocked. Returns false, changing nothing, when the call is no
-- longer in flight (a repeated or late completion, or a lease that already expired).
create or replace function supaqueue.complete_current_job(
  current_job_id bigint,
  succeeded boolean,
  status_code integer default null,
  response_body text default null,
  error text default null,
  duration_ms integer default null,
  retryable boolean default true,
  retry_after_ms integer default null)
returns boolean
language sql security definer set search_path = '' as $$
  select cardinality(supaqueue._complete(
    array[row(current_job_id, succeeded, status_code, response_body, error, duration_ms, retryable,
              retry_after_ms)::supaqueue.outcome], now())) > 0
$$;

-- Records many outcomes at once: a JSON array of objects named like complete_current_job's arguments
-- ({"current_job_id": 17, "succeeded": true, "status_code": 200, ...}), finished in one transaction as a set.
-- Returns the ids of the current jobs it finished; the others were no longer in flight and change nothing.
create function supaqueue.complete_current_jobs(outcomes jsonb)
returns bigint[]
language plpgsql security definer set search_path = '' as $$
declare bad jsonb;
begin
  if outcomes is null or jsonb_typeof(outcomes) <> 'array' then
    raise exception 'supaqueue: complete_current_jobs takes a JSON array of outcomes, not %',
      coalesce(jsonb_typeof(outcomes), 'null')
      using hint = 'Pass [{"current_job_id": 17, "succeeded": true, "status_code": 200}, ...].';
  end if;
  select e into bad from jsonb_array_elements(outcomes) e
  where jsonb_typeof(e) <> 'object'
     or not coalesce(jsonb_typeof(e -> 'current_job_id') = 'number'
                     or (jsonb_typeof(e -> 'current_job_id') = 'string' and e ->> 'current_job_id' ~ '^[0-9]{1,18}$'),
                     false)
     or jsonb_typeof(e -> 'succeeded') is distinct from 'boolean'
  limit 1;
  if bad is not null then
    raise exception 'supaqueue: invalid outcome %: each needs a numeric "current_job_id" and a boolean "succeeded"',
      left(bad::text, 200)
      using hint = 'Optional: status_code, response_body, error, duration_ms, retryable, retry_after_ms.';
  end if;
  return supaqueue._complete(
    array(select o from jsonb_populate_recordset(null::supaqueue.outcome, outcomes) o), now());
end $$;

-- Reaps expired leases (each a failed, retryable attempt), dispatches every free worker whose queue has a due job
-- (delayed jobs, backoffs that ended, and jobs missed by a lost wakeup), and deletes finished jobs older than
-- config.retention. Safe to run from several sessions at once. Scheduled every second by pg_cron when present.
create or replace function supaqueue.tick(at timestamptz default clock_timestamp())
returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  expired supaqueue.outcome[];
  reaped integer;
  started integer;
  deleted integer;
begin
  select array_agg(row(c.id, false, null, null, 'lease expired: no outcome was reported in time', null, true,
                       null)::supaqueue.outcome order by c.id)
  into expired
  from (select c.id from supaqueue.current_job c where c.lease_until < at
        order by c.lease_until limit 1000 for update skip locked) c;
  reaped := coalesce(cardinality(supaqueue._complete(expired, at)), 0);

  started := supaqueue._dispatch_free_workers(
    array(select q.id from supaqueue.queue q where not q.paused), at);

  with old as (
    select j.id from supaqueue.job j
    where j.finished_at < at - (select c.retention from supaqueue.config c)
      and j.status in ('successful', 'failed', 'cancelled')
    limit 10000
  )
  delete from supaqueue.job j using old where j.id = old.id;
  get diagnostics deleted = row_count;

  return jsonb_build_object('reaped', reaped, 'dispatched', started, 'deleted', deleted);
end $$;

-- The batched completion entry point for the edge function, like public.supaqueue_complete_current_job (0001):
-- rpc('supaqueue_complete_current_jobs', { outcomes: [...] }) with the service-role key, run with the caller's rights.
create function public.supaqueue_complete_current_jobs(outcomes jsonb)
returns bigint[]
language sql security invoker set search_path = '' as $$
  select supaqueue.complete_current_jobs(outcomes)
$$;

-- Nothing for anyone by default; the edge function's service_role may complete calls.
revoke all on function supaqueue._dispatch(bigint, integer, bigint[], timestamptz),
  supaqueue._next_status(supaqueue.job_status, boolean, boolean, integer, integer),
  supaqueue._complete(supaqueue.outcome[], timestamptz),
  supaqueue.complete_current_jobs(jsonb),
  public.supaqueue_complete_current_jobs(jsonb) from public;
do $$
declare r text;
begin
  foreach r in array array['anon', 'authenticated'] loop
    if exists (select from pg_roles where rolname = r) then
      execute format('revoke all on function supaqueue._dispatch(bigint, integer, bigint[], timestamptz), '
                     'supaqueue._next_status(supaqueue.job_status, boolean, boolean, integer, integer), '
                     'supaqueue._complete(supaqueue.outcome[], timestamptz), '
                     'supaqueue.complete_current_jobs(jsonb), '
                     'public.supaqueue_complete_current_jobs(jsonb) from %I', r);
    end if;
  end loop;
  if exists (select from pg_roles where rolname = 'service_role') then
    grant execute on function supaqueue.complete_current_jobs(jsonb), public.supaqueue_complete_current_jobs(jsonb)
      to service_role;
  end if;
end $$;
