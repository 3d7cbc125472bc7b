-- Supaqueue 0001: queues, jobs, workers, current jobs, dispatch, completion, tick, grants.
--
-- Runs as Supabase's `postgres` role, which is not a superuser: nothing here needs superuser rights.
-- Applied by src/install/migrate.ts in one transaction under an advisory lock. Shipped migrations are never
-- edited: a change is a new file.
--
-- Lock order, everywhere: queue (FOR NO KEY UPDATE, only when reconfiguring) -> current_job -> job -> worker
-- -> rate_bucket. Dispatch never waits for a worker or job lock (it claims with SKIP LOCKED and only the rows it will
-- use); the one lock it waits for, a rate-limited queue's bucket, is held by a dispatch that waits for nothing else.
-- So two completions, a completion and an enqueue, or a tick and anything else cannot deadlock.

create extension if not exists pg_net;
create extension if not exists supabase_vault;

create schema if not exists supaqueue;
comment on schema supaqueue is 'Supaqueue: durable HTTP-call queues (https://github.com/supaqueue/supaqueue)';

-------------------------------------------------------------------------------------------------------------------
-- Types
-------------------------------------------------------------------------------------------------------------------

create type supaqueue.job_status as enum ('pending', 'in_progress', 'successful', 'failed', 'cancelled');

-------------------------------------------------------------------------------------------------------------------
-- Tables
-------------------------------------------------------------------------------------------------------------------

-- The one place for install-time values. A single row (id is always true).
create table supaqueue.config (
  id boolean primary key default true constraint config_is_single_row check (id),
  -- Where execute_current_job lives: https://<project-ref>.supabase.co/functions/v1 on Supabase.
  functions_url text,
  -- pg_net's timeout for the hop to the edge function, which answers at once and calls the target afterwards.
  request_timeout_ms integer not null default 10000 constraint request_timeout_is_positive check (request_timeout_ms > 0),
  -- A call in flight is given back after its queue's timeout plus this grace (edge start-up, reporting).
  lease_grace_ms integer not null default 30000 constraint lease_grace_is_not_negative check (lease_grace_ms >= 0),
  -- The longest per-call timeout a queue may ask for: the edge wall clock (150 s on the free plan) less a margin.
  max_call_timeout_ms integer not null default 140000 constraint max_call_timeout_is_positive check (max_call_timeout_ms > 0),
  -- Response bodies kept in the attempt history are cut to this many characters.
  max_response_chars integer not null default 2000 constraint max_response_chars_is_not_negative check (max_response_chars >= 0),
  -- Finished jobs and their attempts are deleted by tick() once finished this long ago.
  retention interval not null default '7 days' constraint retention_is_positive check (retention > interval '0')
);
insert into supaqueue.config default values;

-- A queue is one HTTP endpoint and the rules for calling it.
create table supaqueue.queue (
  id bigint generated always as identity primary key,
  name text not null constraint queue_name_is_unique unique,
  -- Exactly one of url (any http(s) URL) and function_name (an edge function of this project) is set.
  url text,
  function_name text,
  method text not null default 'POST',
  headers jsonb not null default '{}',
  -- Header name -> Vault secret name, resolved at dispatch so the value never sits in this table.
  secret_headers jsonb not null default '{}',
  max_attempts integer not null default 3,
  timeout_ms integer not null default 30000,
  backoff_base_ms integer not null default 10000,
  backoff_max_ms integer not null default 3600000,
  -- HTTP statuses that count as success (null: any 2xx) and that are retried (null: 408, 429 and 5xx).
  -- Any other status fails the job at once, without using up its remaining attempts.
  success_codes integer[],
  retry_codes integer[],
  -- At most this many calls per second (a token bucket holding one second of calls), on top of the workers.
  rate_limit_per_second double precision,
  -- A job that fails for good is also enqueued into this queue (payload, last status and error, attempts).
  dead_letter_queue text,
  -- Vault secret names of the HMAC-SHA256 signing key, and of the previous key while it is still honoured.
  signing_key_secret text,
  previous_signing_key_secret text,
  previous_signing_key_until timestamptz,
  paused boolean not null default false,
  -- Set when a queue comes from supaqueue.yml; the installer never touches queues where it is null.
  managed_by text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

-- A job is one call. Its payload is the JSON body (POST, PUT, PATCH) or the query string (GET, DELETE).
create table supaqueue.job (
  id uuid primary key default gen_random_uuid(),
  -- Insertion order, the tie-break for jobs due at the same time.
  seq bigint generated always as identity,
  queue_id bigint not null references supaqueue.queue (id),
  payload jsonb not null default '{}'
    constraint payload_is_json_object_or_array check (jsonb_typeof(payload) in ('object', 'array')),
  headers jsonb not null default '{}'
    constraint job_headers_is_json_object check (jsonb_typeof(headers) = 'object'),
  status supaqueue.job_status not null default 'pending',
  -- Attempts made in the current run (retry() starts a new run; the history keeps every attempt).
  attempts integer not null default 0 constraint attempts_is_not_negative check (attempts >= 0),
  run_at timestamptz not null default now(),
  dedup_key text,
  last_status_code integer,
  last_error text,
  created_at timestamptz not null default now(),
  finished_at timestamptz
);
-- Dispatch reads only this index: its size is the number of pending jobs, never the finished ones.
create index job_pending_due_idx on supaqueue.job (queue_id, run_at, seq) where status = 'pending';
-- One unfinished job per (queue, dedup_key).
create unique index job_dedup_key_idx on supaqueue.job (queue_id, dedup_key)
  where dedup_key is not null and status in ('pending', 'in_progress');
-- Retention deletes by age of finished jobs.
create index job_finished_at_idx on supaqueue.job (finished_at) where finished_at is not null;
-- No plain index on job (queue_id) nor on worker (queue_id): it would be written on every claim and completion
-- (status and locked change, so those updates are never HOT) and the partial indexes above already lead with
-- queue_id for dispatch. The Performance Advisor's unindexed_foreign_keys notes these two keys; that is deliberate.

-- Workers are a queue's concurrency slots. A locked worker is running a call.
create table supaqueue.worker (
  id bigint generated always as identity primary key,
  queue_id bigint not null references supaqueue.queue (id),
  locked boolean not null default false,
  -- Set when the queue is scaled down while this worker runs a call: it is deleted when the call ends.
  retiring boolean not null default false,
  created_at timestamptz not null default now()
);
-- Free workers of a queue, found without scanning the busy ones.
create index worker_free_idx on supaqueue.worker (queue_id, id) where not locked;

-- A current job joins a worker to the job it runs. Inserting one sends the call; completing it deletes it.
create table supaqueue.current_job (
  id bigint generated always as identity primary key,
  worker_id bigint not null constraint current_job_worker_is_unique unique references supaqueue.worker (id),
  job_id uuid not null constraint current_job_job_is_unique unique references supaqueue.job (id),
  attempt integer not null,
  started_at timestamptz not null default now(),
  -- After this the call is presumed lost and tick() counts it as a failed attempt.
  lease_until timestamptz not null
);
create index current_job_lease_idx on supaqueue.current_job (lease_until);

-- The token bucket of each rate-limited queue: tokens left as of refilled_at.
create table supaqueue.rate_bucket (
  queue_id bigint primary key references supaqueue.queue (id) on delete cascade,
  tokens double precision not null,
  refilled_at timestamptz not null
);

-- Recurring calls: each row is a pg_cron job named 'supaqueue:<name>' that enqueues `payload` into `queue_name`.
create table supaqueue.schedule (
  name text primary key constraint schedule_name_is_valid check (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
  cron text not null,
  queue_name text not null,
  payload jsonb not null default '{}',
  managed_by text,
  created_at timestamptz not null default now()
);

-- The outcome of every attempt, kept as long as its job.
create table supaqueue.attempt (
  id bigint generated always as identity primary key,
  job_id uuid not null references supaqueue.job (id) on delete cascade,
  attempt integer not null,
  worker_id bigint,
  started_at timestamptz not null,
  finished_at timestamptz not null default now(),
  succeeded boolean not null,
  status_code integer,
  response_body text,
  error text,
  duration_ms integer
);
create index attempt_job_idx on supaqueue.attempt (job_id);

-- Applied migrations (created by the runner before this file; declared here for completeness).
create table if not exists supaqueue.migration (
  version integer primary key,
  name text not null,
  applied_at timestamptz not null default now()
);

-- Claims walk the dead entries a claimed job leaves in job_pending_due_idx until vacuum (7 buffers read right after
-- a vacuum, 185 after 36,604 completions: bench/ANALYSIS.md). Postgres's default waits for 20 % of the table to be
-- dead; these hot tables are vacuumed after a fixed number of changes instead.
alter table supaqueue.job set (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 2000,
                               autovacuum_vacuum_insert_scale_factor = 0.01);
alter table supaqueue.current_job set (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 500);
alter table supaqueue.worker set (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 500);

-------------------------------------------------------------------------------------------------------------------
-- Validation: clear messages instead of bare constraint violations
-------------------------------------------------------------------------------------------------------------------

-- Checks a queue row and says what to fix.
create function supaqueue._validate_queue() returns trigger
language plpgsql set search_path = '' as $$
declare
  max_timeout integer := (select c.max_call_timeout_ms from supaqueue.config c);
begin
  if new.name is null or new.name !~ '^[a-z0-9][a-z0-9_-]{0,62}$' then
    raise exception 'supaqueue: invalid queue name "%"', new.name
      using hint = 'Use 1 to 63 lowercase letters, digits, "-" and "_", starting with a letter or digit.';
  end if;
  if (new.url is null) = (new.function_name is null) then
    raise exception 'supaqueue: queue "%" needs exactly one of url and function_name', new.name
      using hint = 'Set url to an http(s) URL, or function_name to an edge function of this project.';
  end if;
  if new.url is not null and new.url !~ '^https?://[^/?#\s]+[^\s]*$' then
    raise exception 'supaqueue: queue "%" has an invalid url "%"', new.name, new.url
      using hint = 'Use an absolute http:// or https:// URL.';
  end if;
  if new.function_name is not null and new.function_name !~ '^[A-Za-z0-9_-]{1,128}$' then
    raise exception 'supaqueue: queue "%" has an invalid function_name "%"', new.name, new.function_name
      using hint = 'Use the edge function''s name: letters, digits, "-" and "_".';
  end if;
  new.method := upper(new.method);
  if new.method not in ('GET', 'POST', 'PUT', 'PATCH', 'DELETE') then
    raise exception 'supaqueue: queue "%" has an invalid method "%"', new.name, new.method
      using hint = 'Allowed methods: GET, POST, PUT, PATCH, DELETE.';
  end if;
  if jsonb_typeof(new.headers) <> 'object'
     or exists (select from jsonb_each(new.headers) h where jsonb_typeof(h.value) <> 'string') then
    raise exception 'supaqueue: queue "%" has invalid headers', new.name
      using hint = 'headers must be a JSON object of strings, e.g. {"X-Api-Key": "..."}.';
  end if;
  if jsonb_typeof(new.secret_headers) <> 'object'
     or exists (select from jsonb_each(new.secret_headers) h where jsonb_typeof(h.value) <> 'string') then
    raise exception 'supaqueue: queue "%" has invalid secret_headers', new.name
      using hint = 'secret_headers must map a header name to the name of a Vault secret.';
  end if;
  if new.max_attempts is null or new.max_attempts < 1 then
    raise exception 'supaqueue: queue "%" has max_attempts %, it must be at least 1', new.name, new.max_attempts;
  end if;
  if new.timeout_ms is null or new.timeout_ms < 1 or new.timeout_ms > max_timeout then
    raise exception 'supaqueue: queue "%" has timeout_ms %, it must be between 1 and %', new.name, new.timeout_ms, max_timeout
      using hint = 'A call cannot outlive the edge function''s wall clock (supaqueue.config.max_call_timeout_ms).';
  end if;
  if new.backoff_base_ms is null or new.backoff_base_ms < 0
     or new.backoff_max_ms is null or new.backoff_max_ms < new.backoff_base_ms then
    raise exception 'supaqueue: queue "%" has an invalid backoff (base % ms, max % ms)', new.name, new.backoff_base_ms, new.backoff_max_ms
      using hint = 'backoff_base_ms must be at least 0 and backoff_max_ms at least backoff_base_ms.';
  end if;
  if exists (select from unnest(coalesce(new.success_codes, '{}') || coalesce(new.retry_codes, '{}')) c
             where c is null or c not between 100 and 599) then
    raise exception 'supaqueue: queue "%" lists an invalid HTTP status in success_codes or retry_codes', new.name
      using hint = 'HTTP statuses are numbers from 100 to 599.';
  end if;
  if new.rate_limit_per_second is not null and not (new.rate_limit_per_second > 0) then
    raise exception 'supaqueue: queue "%" has rate_limit_per_second %, it must be more than 0 (or null for no limit)', new.name, new.rate_limit_per_second;
  end if;
  if new.dead_letter_queue is not null and (new.dead_letter_queue = new.name
     or not exists (select from supaqueue.queue d where d.name = new.dead_letter_queue)) then
    raise exception 'supaqueue: queue "%" names dead_letter_queue "%", which is not another existing queue', new.name, new.dead_letter_queue
      using hint = 'Create the dead-letter queue first; a queue cannot be its own dead-letter queue.';
  end if;
  new.updated_at := now();
  return new;
end $$;

create trigger queue_is_valid before insert or update on supaqueue.queue
  for each row execute function supaqueue._validate_queue();

-------------------------------------------------------------------------------------------------------------------
-- Dispatch: pair free workers with due jobs
-------------------------------------------------------------------------------------------------------------------

-- Refills a queue's token bucket to `at` (capacity: one second of calls, at least one) and returns the tokens
-- available, holding the bucket's row lock until commit so concurrent dispatches take turns.
create function supaqueue._refill_bucket(queue_id bigint, per_second double precision, at timestamptz)
returns double precision
language sql security definer set search_path = '' as $$
  insert into supaqueue.rate_bucket as b (queue_id, tokens, refilled_at)
  values (_refill_bucket.queue_id, greatest(1, per_second), at)
  on conflict on constraint rate_bucket_pkey do update set
    tokens = least(greatest(1, per_second),
                   b.tokens + greatest(0, extract(epoch from (excluded.refilled_at - b.refilled_at))) * per_second),
    refilled_at = greatest(b.refilled_at, excluded.refilled_at)
  returning tokens
$$;

-- Claims up to `wanted` free workers of a queue and gives each the next due job, in due order.
-- With `own_worker` (a worker this transaction already holds, from a completion) it gives that worker the next
-- due job, or unlocks it when there is none. Only rows that will be used are locked, with SKIP LOCKED, so this
-- never waits and never blocks another dispatch. Returns the number of calls started.
create function supaqueue._dispatch(queue_id bigint, wanted integer, own_worker bigint default null,
                                    at timestamptz default now())
returns integer
language plpgsql security definer set search_path = '' as $$
declare
  q supaqueue.queue;
  worker_ids bigint[];
  job_ids uuid[];
  lease interval;
begin
  select * into q from supaqueue.queue where id = _dispatch.queue_id;
  if q.id is not null and not q.paused and q.rate_limit_per_second is not null then
    -- Taken first and held to commit: whoever holds a bucket never waits for anything else (no deadlock).
    wanted := least(wanted, floor(supaqueue._refill_bucket(q.id, q.rate_limit_per_second, at))::integer);
  end if;
  if q.id is null or q.paused or wanted < 1 then
    if own_worker is not null then
      update supaqueue.worker set locked = false where id = own_worker;
    end if;
    return 0;
  end if;

  if own_worker is not null then
    worker_ids := array[own_worker];
  else
    select array_agg(w.id order by w.id) into worker_ids
    from (select w.id from supaqueue.worker w
          where w.queue_id = q.id and not w.locked
          order by w.id limit wanted
          for update skip locked) w;
    if worker_ids is null then
      return 0;
    end if;
  end if;

  select array_agg(j.id order by j.run_at, j.seq) into job_ids
  from (select j.id, j.run_at, j.seq from supaqueue.job j
        where j.queue_id = q.id and j.status = 'pending' and j.run_at <= at
        order by j.run_at, j.seq limit cardinality(worker_ids)
        for update skip locked) j;

  if job_ids is null then
    if own_worker is not null then
      update supaqueue.worker set locked = false where id = own_worker;
    end if;
    return 0;
  end if;

  if own_worker is null then
    worker_ids := worker_ids[1:cardinality(job_ids)];
    update supaqueue.worker set locked = true where id = any (worker_ids);
  end if;

  lease := make_interval(secs => (q.timeout_ms + (select c.lease_grace_ms from supaqueue.config c)) / 1000.0);
  with claimed as (
    update supaqueue.job j set status = 'in_progress', attempts = j.attempts + 1
    where j.id = any (job_ids)
    returning j.id, j.attempts
  )
  insert into supaqueue.current_job (worker_id, job_id, attempt, started_at, lease_until)
  select p.worker_id, p.job_id, c.attempts, at, at + lease
  from unnest(worker_ids, job_ids) as p(worker_id, job_id)
  join claimed c on c.id = p.job_id;

  if q.rate_limit_per_second is not null then
    update supaqueue.rate_bucket b set tokens = b.tokens - cardinality(job_ids) where b.queue_id = q.id;
  end if;
  return cardinality(job_ids);
end $$;

-- After an insert of jobs (one row or a bulk insert ... select): one dispatch per queue touched, for as many
-- workers as the statement added due jobs. Runs once per statement, never once per row.
create function supaqueue._on_jobs_inserted() returns trigger
language plpgsql security definer set search_path = '' as $$
declare r record;
begin
  for r in
    select n.queue_id, count(*)::integer as due from new_jobs n
    where n.status = 'pending' and n.run_at <= now()
    group by n.queue_id order by n.queue_id
  loop
    perform supaqueue._dispatch(r.queue_id, r.due);
  end loop;
  return null;
end $$;

create trigger job_inserted_dispatches after insert on supaqueue.job
  referencing new table as new_jobs
  for each statement execute function supaqueue._on_jobs_inserted();

-- Dispatches for every free worker of the given queues that has a due job waiting.
create function supaqueue._dispatch_free_workers(queue_ids bigint[], at timestamptz default now())
returns integer
language plpgsql security definer set search_path = '' as $$
declare
  r record;
  started integer := 0;
begin
  for r in
    select w.queue_id, count(*)::integer as free
    from supaqueue.worker w
    where w.queue_id = any (queue_ids) and not w.locked
    group by w.queue_id order by w.queue_id
  loop
    started := started + supaqueue._dispatch(r.queue_id, r.free, null, at);
  end loop;
  return started;
end $$;

-- New workers (the seed's "insert worker rows") start on jobs that were waiting for them.
create function supaqueue._on_workers_inserted() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  perform supaqueue._dispatch_free_workers(array(select distinct n.queue_id from new_workers n));
  return null;
end $$;

create trigger worker_inserted_dispatches after insert on supaqueue.worker
  referencing new table as new_workers
  for each statement execute function supaqueue._on_workers_inserted();

-- A queue that is resumed starts on its waiting jobs.
create function supaqueue._on_queue_resumed() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  perform supaqueue._dispatch_free_workers(array(
    select n.id from new_queues n join old_queues o on o.id = n.id where o.paused and not n.paused));
  return null;
end $$;

create trigger queue_resumed_dispatches after update on supaqueue.queue
  referencing old table as old_queues new table as new_queues
  for each statement execute function supaqueue._on_queue_resumed();

-------------------------------------------------------------------------------------------------------------------
-- The call: a new current_job sends a request to execute_current_job through pg_net
-------------------------------------------------------------------------------------------------------------------

-- Sends one pg_net request per new current_job to <functions_url>/execute_current_job, authenticated by the
-- Vault secret `supaqueue_secret`. The request is sent when the transaction commits; if it never comes back,
-- the lease brings the job back. Fails loudly when Supaqueue is not fully installed, rather than losing calls.
create function supaqueue._on_current_jobs_inserted() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  cfg supaqueue.config;
  secret text;
begin
  select * into cfg from supaqueue.config;
  if cfg.functions_url is null then
    raise exception 'supaqueue: the functions URL is not configured'
      using hint = 'Run the installer, or: select supaqueue.configure(functions_url => ''https://<project-ref>.supabase.co/functions/v1'');';
  end if;
  select s.decrypted_secret into secret from vault.decrypted_secrets s where s.name = 'supaqueue_secret';
  if secret is null then
    raise exception 'supaqueue: the Vault secret "supaqueue_secret" is missing'
      using hint = 'Run the installer, or create it with vault.create_secret(<secret>, ''supaqueue_secret'').';
  end if;

  perform net.http_post(
    url := cfg.functions_url || '/execute_current_job',
    body := jsonb_build_object(
      'current_job_id', n.id,
      'attempt', n.attempt,
      'lease_until', n.lease_until,
      'max_response_chars', cfg.max_response_chars,
      'job', jsonb_build_object('id', j.id, 'payload', j.payload, 'headers', j.headers),
      'queue', jsonb_build_object(
        'name', q.name,
        'url', coalesce(q.url, cfg.functions_url || '/' || q.function_name),
        'is_function', q.function_name is not null,
        'method', q.method,
        -- Vault is read only for queues that use it (CASE evaluates the branch it takes).
        'headers', case when q.secret_headers = '{}' then q.headers else q.headers || coalesce((
          select jsonb_object_agg(h.key, s.decrypted_secret)
          from jsonb_each_text(q.secret_headers) h
          join vault.decrypted_secrets s on s.name = h.value), '{}') end,
        'timeout_ms', q.timeout_ms,
        'success_codes', q.success_codes,
        'retry_codes', q.retry_codes,
        -- The current key first; the previous one too while it is honoured, so targets can rotate.
        'signing_keys', case when q.signing_key_secret is not null then (
          select jsonb_agg(s.decrypted_secret order by k.ord)
          from (values (1, q.signing_key_secret),
                       (2, case when q.previous_signing_key_until > now() then q.previous_signing_key_secret end)) k(ord, name)
          join vault.decrypted_secrets s on s.name = k.name) end)),
    headers := jsonb_build_object('Content-Type', 'application/json', 'supaqueue-secret', secret),
    timeout_milliseconds := cfg.request_timeout_ms)
  from new_current_jobs n
  join supaqueue.job j on j.id = n.job_id
  join supaqueue.queue q on q.id = j.queue_id;
  return null;
end $$;

create trigger current_job_inserted_calls after insert on supaqueue.current_job
  referencing new table as new_current_jobs
  for each statement execute function supaqueue._on_current_jobs_inserted();

-------------------------------------------------------------------------------------------------------------------
-- Completion
-------------------------------------------------------------------------------------------------------------------

-- The delay before retry number `attempts` + 1: exponential from base to max, with equal jitter
-- (half fixed, half random), so delays never shrink from one attempt to the next.
create function supaqueue.backoff_delay(attempts integer, base_ms integer, max_ms integer)
returns interval
language sql volatile set search_path = '' as $$
  select make_interval(secs => d / 2000.0 + random() * d / 2000.0)
  from (select least(max_ms::numeric, base_ms::numeric * power(2::numeric, greatest(attempts - 1, 0))) as d) x
$$;

-- Enqueues a job that failed for good into its queue's dead-letter queue, with what a handler needs to act on it.
-- A dead-letter queue that has gone missing must not lose the outcome being recorded: it is skipped, with a warning.
create function supaqueue._dead_letter(q supaqueue.queue, j supaqueue.job, status_code integer, error text)
returns void
language plpgsql security definer set search_path = '' as $$
begin
  if not exists (select from supaqueue.queue d where d.name = q.dead_letter_queue) then
    raise warning 'supaqueue: dead-letter queue "%" of queue "%" does not exist; job % was not dead-lettered',
      q.dead_letter_queue, q.name, j.id;
    return;
  end if;
  perform supaqueue.enqueue(q.dead_letter_queue, jsonb_build_object(
    'job_id', j.id, 'queue', q.name, 'payload', j.payload, 'attempts', j.attempts,
    'last_status_code', status_code, 'last_error', error));
end $$;

-- Records the outcome of the attempt `cj` (already deleted from current_job by the caller), sets the job's
-- status, and hands the worker the next due job (or unlocks it). The job's new status is written before the
-- worker moves on, so a job sent back to pending is always seen by the next dispatch or tick.
create function supaqueue._finish_attempt(
  cj supaqueue.current_job, succeeded boolean, status_code integer, response_body text, error text,
  duration_ms integer, retryable boolean, retry_after_ms integer, at timestamptz)
returns void
language plpgsql security definer set search_path = '' as $$
declare
  j supaqueue.job;
  q supaqueue.queue;
  max_chars integer := (select c.max_response_chars from supaqueue.config c);
  next_status supaqueue.job_status;
  next_run_at timestamptz;
  w supaqueue.worker;
begin
  insert into supaqueue.attempt (job_id, attempt, worker_id, started_at, finished_at, succeeded, status_code,
                                 response_body, error, duration_ms)
  values (cj.job_id, cj.attempt, cj.worker_id, cj.started_at, at, succeeded, status_code,
          left(response_body, max_chars), left(error, 2000), duration_ms);

  select * into j from supaqueue.job where id = cj.job_id;
  select * into q from supaqueue.queue where id = j.queue_id;

  if j.status <> 'in_progress' then
    next_status := j.status;              -- cancelled while the call was in flight: stays cancelled
  elsif succeeded then
    next_status := 'successful';
  elsif not retryable or j.attempts >= q.max_attempts then
    next_status := 'failed';
  else
    next_status := 'pending';
    next_run_at := at + greatest(supaqueue.backoff_delay(j.attempts, q.backoff_base_ms, q.backoff_max_ms),
                                 make_interval(secs => coalesce(retry_after_ms, 0) / 1000.0));
  end if;

  update supaqueue.job set
    status = next_status,
    run_at = coalesce(next_run_at, run_at),
    last_status_code = _finish_attempt.status_code,
    last_error = case when succeeded then null else left(_finish_attempt.error, 2000) end,
    finished_at = case when next_status in ('successful', 'failed', 'cancelled') then at end
  where id = j.id;

  if next_status = 'failed' and q.dead_letter_queue is not null then
    perform supaqueue._dead_letter(q, j, _finish_attempt.status_code, _finish_attempt.error);
  end if;

  select * into w from supaqueue.worker where id = cj.worker_id;
  if w.retiring then
    delete from supaqueue.worker where id = w.id;
  else
    perform supaqueue._dispatch(q.id, 1, w.id, at);
  end if;
end $$;

-- Records the outcome of one attempt of a call in flight: success, HTTP status, response body (cut to
-- config.max_response_chars), error text and duration. A failed attempt goes back to pending after the queue's
-- backoff (or Retry-After, when later), or to failed once max_attempts is reached or when `retryable` is false.
-- Then the worker takes the next due job or is unlocked. Returns false, changing nothing, when the call is no
-- longer in flight (a repeated or late completion, or a lease that already expired).
create function supaqueue.complete_current_job(
  current_job_id bigint,
  succeeded boolean,
  status_code integer default null,
  response_body text default null,
  error text default null,
  duration_ms integer default null,
  retryable boolean default true,
  retry_after_ms integer default null)
returns boolean
language plpgsql security definer set search_path = '' as $$
declare cj supaqueue.current_job;
begin
  delete from supaqueue.current_job c where c.id = complete_current_job.current_job_id returning * into cj;
  if cj.id is null then
    return false;
  end if;
  perform supaqueue._finish_attempt(cj, succeeded, status_code, response_body, error, duration_ms,
                                    coalesce(retryable, true), retry_after_ms, now());
  return true;
end $$;

-------------------------------------------------------------------------------------------------------------------
-- Recovery and housekeeping
-------------------------------------------------------------------------------------------------------------------

-- Reaps expired leases (each a failed, retryable attempt), dispatches every free worker whose queue has a due job
-- (delayed jobs, backoffs that ended, and jobs missed by a lost wakeup), and deletes finished jobs older than
-- config.retention. Safe to run from several sessions at once. Scheduled every second by pg_cron when present.
create function supaqueue.tick(at timestamptz default clock_timestamp())
returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  cj supaqueue.current_job;
  reaped integer := 0;
  started integer;
  deleted integer;
begin
  for cj in
    select * from supaqueue.current_job c where c.lease_until < at
    order by c.lease_until limit 1000 for update skip locked
  loop
    delete from supaqueue.current_job where id = cj.id;
    perform supaqueue._finish_attempt(cj, false, null, null, 'lease expired: no outcome was reported in time',
                                      null, true, null, at);
    reaped := reaped + 1;
  end loop;

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

-- Schedules tick() with pg_cron when it is installed: every second on pg_cron 1.5 and later, every minute before.
-- Returns the schedule used, or null without pg_cron. Idempotent; the installer calls it on every run.
create function supaqueue.schedule_tick() returns text
language plpgsql set search_path = '' as $$
declare
  version text := (select e.extversion from pg_catalog.pg_extension e where e.extname = 'pg_cron');
  schedule text;
begin
  if version is null then
    return null;
  end if;
  -- extversion may carry a packaging suffix (Debian: '1.4-1'): compare major.minor only.
  schedule := case when (regexp_match(version, '^(\d+)\.(\d+)'))::int[] >= array[1, 5] then '1 seconds' else '* * * * *' end;
  execute 'select cron.schedule($1, $2, $3)' using 'supaqueue-tick', schedule, 'select supaqueue.tick()';
  return schedule;
end $$;

-------------------------------------------------------------------------------------------------------------------
-- The user API
-------------------------------------------------------------------------------------------------------------------

-- Sets install-time values; null leaves a value as it is. Called by the installer with the project's values.
create function supaqueue.configure(
  functions_url text default null,
  request_timeout_ms integer default null,
  lease_grace_ms integer default null,
  max_call_timeout_ms integer default null,
  max_response_chars integer default null,
  retention interval default null)
returns supaqueue.config
language plpgsql set search_path = '' as $$
declare result supaqueue.config;
begin
  if functions_url is not null and functions_url !~ '^https?://[^/?#\s]+[^\s?#]*$' then
    raise exception 'supaqueue: invalid functions_url "%"', functions_url
      using hint = 'Use the functions base URL, e.g. https://<project-ref>.supabase.co/functions/v1.';
  end if;
  update supaqueue.config c set
    functions_url = coalesce(rtrim(configure.functions_url, '/'), c.functions_url),
    request_timeout_ms = coalesce(configure.request_timeout_ms, c.request_timeout_ms),
    lease_grace_ms = coalesce(configure.lease_grace_ms, c.lease_grace_ms),
    max_call_timeout_ms = coalesce(configure.max_call_timeout_ms, c.max_call_timeout_ms),
    max_response_chars = coalesce(configure.max_response_chars, c.max_response_chars),
    retention = coalesce(configure.retention, c.retention)
  returning * into result;
  return result;
end $$;

-- Adds a job to the named queue and returns its id. `run_at` delays it; a `dedup_key` that an unfinished job of
-- the queue already has returns that job's id instead of adding another; `headers` are added to the queue's.
-- A paused queue accepts jobs: they wait, pending, until it is resumed.
create function supaqueue.enqueue(
  queue_name text,
  payload jsonb default '{}',
  run_at timestamptz default null,
  dedup_key text default null,
  headers jsonb default null)
returns uuid
language plpgsql security definer set search_path = '' as $$
#variable_conflict use_column
declare
  q supaqueue.queue;
  job_id uuid;
begin
  select * into q from supaqueue.queue where name = queue_name;
  if q.id is null then
    raise exception 'supaqueue: queue "%" does not exist', queue_name
      using hint = 'Create it in supaqueue.yml or insert it into supaqueue.queue; see select name from supaqueue.queue.';
  end if;
  if payload is null or jsonb_typeof(payload) not in ('object', 'array') then
    raise exception 'supaqueue: the payload for queue "%" must be a JSON object or array, not %', queue_name,
      coalesce(jsonb_typeof(payload), 'null');
  end if;
  if q.method in ('GET', 'DELETE') and jsonb_typeof(payload) <> 'object' then
    raise exception 'supaqueue: queue "%" sends % requests, whose payload becomes the query string: it must be a JSON object', queue_name, q.method;
  end if;
  if headers is not null and (jsonb_typeof(headers) <> 'object'
     or exists (select from jsonb_each(headers) h where jsonb_typeof(h.value) <> 'string')) then
    raise exception 'supaqueue: job headers must be a JSON object of strings';
  end if;

  insert into supaqueue.job (queue_id, payload, run_at, dedup_key, headers)
  values (q.id, payload, coalesce(enqueue.run_at, now()), enqueue.dedup_key, coalesce(enqueue.headers, '{}'))
  on conflict (queue_id, dedup_key) where dedup_key is not null and status in ('pending', 'in_progress')
  do nothing
  returning id into job_id;

  if job_id is null then
    select j.id into job_id from supaqueue.job j
    where j.queue_id = q.id and j.dedup_key = enqueue.dedup_key and j.status in ('pending', 'in_progress');
  end if;
  return job_id;
end $$;

-- Cancels a job that has not finished. A call already in flight completes, but its outcome no longer changes the
-- job. Returns false when the job was already finished (or does not exist).
create function supaqueue.cancel(job_id uuid) returns boolean
language plpgsql security definer set search_path = '' as $$
begin
  update supaqueue.job j set status = 'cancelled', finished_at = now()
  where j.id = cancel.job_id and j.status in ('pending', 'in_progress');
  return found;
end $$;

-- Sends a failed or cancelled job round again with a fresh set of attempts; its attempt history is kept.
create function supaqueue.retry(job_id uuid) returns boolean
language plpgsql security definer set search_path = '' as $$
begin
  update supaqueue.job j set status = 'pending', attempts = 0, run_at = now(), finished_at = null
  where j.id = retry.job_id and j.status in ('failed', 'cancelled')
    and not exists (select from supaqueue.current_job c where c.job_id = retry.job_id);
  if not found then
    return false;
  end if;
  perform supaqueue._dispatch_free_workers(array(select j.queue_id from supaqueue.job j where j.id = retry.job_id));
  return true;
end $$;

-- Sets the number of workers (calls in flight at most) of a queue. Scaling down removes free workers first and
-- lets busy ones finish their call before they go: a call in flight is never interrupted.
create function supaqueue.set_workers(queue_name text, workers integer) returns integer
language plpgsql security definer set search_path = '' as $$
declare
  q supaqueue.queue;
  existing integer;
  excess integer;
begin
  if workers is null or workers < 0 then
    raise exception 'supaqueue: workers for queue "%" must be 0 or more, not %', queue_name, workers;
  end if;
  -- Serializes reconfiguration of this queue without blocking enqueues (which take FOR KEY SHARE).
  select * into q from supaqueue.queue where name = queue_name for no key update;
  if q.id is null then
    raise exception 'supaqueue: queue "%" does not exist', queue_name;
  end if;
  select count(*) into existing from supaqueue.worker w where w.queue_id = q.id and not w.retiring;
  if workers > existing then
    insert into supaqueue.worker (queue_id) select q.id from generate_series(1, workers - existing);
  elsif workers < existing then
    excess := existing - workers;
    with gone as (
      delete from supaqueue.worker w where w.id in (
        select w2.id from supaqueue.worker w2
        where w2.queue_id = q.id and not w2.locked and not w2.retiring
        order by w2.id desc limit excess for update skip locked)
      returning 1)
    select excess - count(*) into excess from gone;
    if excess > 0 then
      update supaqueue.worker w set retiring = true where w.id in (
        select w2.id from supaqueue.worker w2
        where w2.queue_id = q.id and not w2.retiring
        order by w2.locked, w2.id desc limit excess for update);
    end if;
  end if;
  return workers;
end $$;

-- Removes a queue once it has no unfinished jobs (its finished jobs and workers go with it). A queue that still
-- has pending or in-flight jobs is paused instead, so nothing is lost; returns whether it was removed.
create function supaqueue.remove_queue(queue_name text) returns boolean
language plpgsql security definer set search_path = '' as $$
declare q supaqueue.queue;
begin
  select * into q from supaqueue.queue where name = queue_name for update;
  if q.id is null then
    return false;
  end if;
  if exists (select from supaqueue.job j where j.queue_id = q.id and j.status in ('pending', 'in_progress')) then
    update supaqueue.queue set paused = true where id = q.id and not paused;
    return false;
  end if;
  delete from supaqueue.job where queue_id = q.id;
  delete from supaqueue.worker where queue_id = q.id;
  delete from supaqueue.queue where id = q.id;
  return true;
end $$;

-- Stops sending a queue's jobs (calls in flight finish); jobs enqueued meanwhile wait. Returns false if unknown.
create function supaqueue.pause(queue_name text) returns boolean
language sql security definer set search_path = '' as $$
  update supaqueue.queue set paused = true where name = queue_name returning true
$$;

-- Sends a paused queue's waiting jobs again, at once. Returns false if the queue does not exist.
create function supaqueue.resume(queue_name text) returns boolean
language sql security definer set search_path = '' as $$
  update supaqueue.queue set paused = false where name = queue_name returning true
$$;

-- Cancels the pending jobs of a queue, all of them or those whose payload contains `payload_filter` (jsonb @>).
-- Calls already in flight finish. Returns the number of jobs cancelled.
create function supaqueue.cancel_jobs(queue_name text, payload_filter jsonb default null) returns integer
language plpgsql security definer set search_path = '' as $$
declare cancelled integer;
begin
  if not exists (select from supaqueue.queue q where q.name = queue_name) then
    raise exception 'supaqueue: queue "%" does not exist', queue_name;
  end if;
  update supaqueue.job j set status = 'cancelled', finished_at = now()
  from supaqueue.queue q
  where q.name = queue_name and j.queue_id = q.id and j.status = 'pending'
    and (payload_filter is null or j.payload @> payload_filter);
  get diagnostics cancelled = row_count;
  return cancelled;
end $$;

-- Purges a queue: cancels all of its pending jobs. Returns the number cancelled.
create function supaqueue.purge(queue_name text) returns integer
language sql security definer set search_path = '' as $$
  select supaqueue.cancel_jobs(queue_name)
$$;

-- Sends the failed jobs of a queue round again (those that failed at or after `since`, default all), each with a
-- fresh set of attempts and its history kept. Returns the number of jobs retried.
create function supaqueue.retry_failed(queue_name text, since timestamptz default null) returns integer
language plpgsql security definer set search_path = '' as $$
declare
  qid bigint := (select q.id from supaqueue.queue q where q.name = queue_name);
  retried integer;
begin
  if qid is null then
    raise exception 'supaqueue: queue "%" does not exist', queue_name;
  end if;
  update supaqueue.job j set status = 'pending', attempts = 0, run_at = now(), finished_at = null
  where j.queue_id = qid and j.status = 'failed' and (since is null or j.finished_at >= since);
  get diagnostics retried = row_count;
  perform supaqueue._dispatch_free_workers(array[qid]);
  return retried;
end $$;

-- Stores a value in Vault under `secret_name` (created or updated through Vault's own functions).
create function supaqueue._put_secret(secret_name text, value text) returns void
language plpgsql security definer set search_path = '' as $$
declare existing uuid := (select s.id from vault.decrypted_secrets s where s.name = secret_name);
begin
  if existing is null then
    perform vault.create_secret(value, secret_name, 'Supaqueue');
  else
    perform vault.update_secret(existing, value);
  end if;
end $$;

-- Sets a new HMAC-SHA256 signing key for a queue (a random one unless given) and returns it. The previous key
-- stays valid for `overlap`: calls are signed with both until then, so targets can switch keys without failures.
create function supaqueue.rotate_signing_key(queue_name text, new_key text default null,
                                             overlap interval default '1 day')
returns text
language plpgsql security definer set search_path = '' as $$
declare
  q supaqueue.queue;
  current_name text := 'supaqueue_signing_' || queue_name;
  previous_name text := 'supaqueue_signing_' || queue_name || '_previous';
  old_key text;
  key text := coalesce(new_key, encode(decode(md5(gen_random_uuid()::text) || md5(gen_random_uuid()::text), 'hex'), 'base64'));
begin
  select * into q from supaqueue.queue where name = queue_name for no key update;
  if q.id is null then
    raise exception 'supaqueue: queue "%" does not exist', queue_name;
  end if;
  if length(key) < 16 then
    raise exception 'supaqueue: a signing key must be at least 16 characters long';
  end if;
  old_key := (select s.decrypted_secret from vault.decrypted_secrets s where s.name = q.signing_key_secret);
  if old_key is not null and overlap > interval '0' then
    perform supaqueue._put_secret(previous_name, old_key);
  end if;
  perform supaqueue._put_secret(current_name, key);
  update supaqueue.queue set
    signing_key_secret = current_name,
    previous_signing_key_secret = case when old_key is not null and overlap > interval '0' then previous_name end,
    previous_signing_key_until = case when old_key is not null and overlap > interval '0' then now() + overlap end
  where id = q.id;
  return key;
end $$;

-- Schedules a recurring call: a pg_cron job 'supaqueue:<name>' that enqueues `payload` into `queue_name` on the
-- cron expression `cron` (pg_cron syntax; '30 seconds' style on pg_cron 1.5+). Idempotent by name.
create function supaqueue.schedule(name text, cron text, queue_name text, payload jsonb default '{}',
                                   managed_by text default null)
returns void
language plpgsql security definer set search_path = '' as $$
begin
  if not exists (select from pg_catalog.pg_extension e where e.extname = 'pg_cron') then
    raise exception 'supaqueue: recurring calls need the pg_cron extension'
      using hint = 'Enable it: create extension pg_cron; (Database > Extensions in the Supabase dashboard).';
  end if;
  if not exists (select from supaqueue.queue q where q.name = schedule.queue_name) then
    raise exception 'supaqueue: schedule "%" names queue "%", which does not exist', schedule.name, schedule.queue_name;
  end if;
  if payload is null or jsonb_typeof(payload) not in ('object', 'array') then
    raise exception 'supaqueue: the payload of schedule "%" must be a JSON object or array', schedule.name;
  end if;
  insert into supaqueue.schedule as s (name, cron, queue_name, payload, managed_by)
  values (schedule.name, schedule.cron, schedule.queue_name, schedule.payload, schedule.managed_by)
  on conflict on constraint schedule_pkey do update
    set cron = excluded.cron, queue_name = excluded.queue_name, payload = excluded.payload, managed_by = excluded.managed_by;
  execute 'select cron.schedule($1, $2, $3)' using
    'supaqueue:' || schedule.name, schedule.cron,
    format('select supaqueue.enqueue(%L, %L::jsonb)', schedule.queue_name, schedule.payload::text);
end $$;

-- Removes a recurring call and its pg_cron job. Returns false if there was no such schedule.
create function supaqueue.unschedule(name text) returns boolean
language plpgsql security definer set search_path = '' as $$
begin
  delete from supaqueue.schedule s where s.name = unschedule.name;
  if not found then
    return false;
  end if;
  if exists (select from pg_catalog.pg_extension e where e.extname = 'pg_cron') then
    execute 'select cron.unschedule(jobid) from cron.job where jobname = $1' using 'supaqueue:' || unschedule.name;
  end if;
  return true;
end $$;

-- Per queue: jobs pending (due now), scheduled (due later), in flight, successful and failed (kept ones),
-- workers and busy workers, and the p50 / p95 call duration in ms over the last hour.
create view supaqueue.queue_stats with (security_invoker = true) as
select
  q.name as queue,
  q.paused,
  count(*) filter (where j.status = 'pending' and j.run_at <= now()) as pending,
  count(*) filter (where j.status = 'pending' and j.run_at > now()) as scheduled,
  count(*) filter (where j.status = 'in_progress') as in_flight,
  count(*) filter (where j.status = 'successful') as successful,
  count(*) filter (where j.status = 'failed') as failed,
  count(*) filter (where j.status = 'cancelled') as cancelled,
  (select count(*) from supaqueue.worker w where w.queue_id = q.id and not w.retiring) as workers,
  (select count(*) from supaqueue.worker w where w.queue_id = q.id and w.locked) as busy_workers,
  d.p50_ms,
  d.p95_ms
from supaqueue.queue q
left join supaqueue.job j on j.queue_id = q.id
left join lateral (
  select percentile_cont(0.5) within group (order by a.duration_ms) as p50_ms,
         percentile_cont(0.95) within group (order by a.duration_ms) as p95_ms
  from supaqueue.attempt a join supaqueue.job aj on aj.id = a.job_id
  where aj.queue_id = q.id and a.finished_at > now() - interval '1 hour' and a.duration_ms is not null
) d on true
group by q.id, q.name, q.paused, d.p50_ms, d.p95_ms;

-------------------------------------------------------------------------------------------------------------------
-- The completion entry point for the edge function (supabase-js rpc through the project's REST API)
-------------------------------------------------------------------------------------------------------------------

-- PostgREST exposes `public` by default, so this thin wrapper lets execute_current_job call
-- rpc('supaqueue_complete_current_job') with the service-role key, with no change to the project's API settings.
-- It runs with the caller's rights: only service_role (and postgres) may execute it or what it calls.
create function public.supaqueue_complete_current_job(
  current_job_id bigint,
  succeeded boolean,
  status_code integer default null,
  response_body text default null,
  error text default null,
  duration_ms integer default null,
  retryable boolean default true,
  retry_after_ms integer default null)
returns boolean
language sql security invoker set search_path = '' as $$
  select supaqueue.complete_current_job(current_job_id, succeeded, status_code, response_body, error,
                                        duration_ms, retryable, retry_after_ms)
$$;

-------------------------------------------------------------------------------------------------------------------
-- Security: RLS everywhere, nothing for anon and authenticated, what service_role needs
-------------------------------------------------------------------------------------------------------------------

alter table supaqueue.config enable row level security;
alter table supaqueue.queue enable row level security;
alter table supaqueue.job enable row level security;
alter table supaqueue.worker enable row level security;
alter table supaqueue.current_job enable row level security;
alter table supaqueue.attempt enable row level security;
alter table supaqueue.migration enable row level security;
alter table supaqueue.rate_bucket enable row level security;
alter table supaqueue.schedule enable row level security;

-- RLS with no policy already denies every role but the owner and service_role (which bypasses RLS). These policies
-- say so explicitly, for readers and for Supabase's linter (which reports a table with RLS and no policy).
do $$
declare t text;
begin
  if exists (select from pg_roles where rolname = 'service_role') then
    foreach t in array array['config', 'queue', 'job', 'worker', 'current_job', 'attempt', 'migration',
                             'rate_bucket', 'schedule'] loop
      execute format('create policy service_role_only on supaqueue.%I as permissive for all to service_role '
                     'using (true) with check (true)', t);
    end loop;
  end if;
end $$;

revoke all on schema supaqueue from public;
revoke all on all tables in schema supaqueue from public;
revoke all on all sequences in schema supaqueue from public;
revoke all on all functions in schema supaqueue from public;
revoke all on function public.supaqueue_complete_current_job(bigint, boolean, integer, text, text, integer, boolean, integer) from public;
alter default privileges in schema supaqueue revoke all on functions from public;

do $$
declare r text;
begin
  -- Supabase gives anon and authenticated default privileges on new objects in public: take them back.
  foreach r in array array['anon', 'authenticated'] loop
    if exists (select from pg_roles where rolname = r) then
      execute format('revoke all on schema supaqueue from %I', r);
      execute format('revoke all on all tables in schema supaqueue from %I', r);
      execute format('revoke all on all functions in schema supaqueue from %I', r);
      execute format('revoke all on function public.supaqueue_complete_current_job(bigint, boolean, integer, text, text, integer, boolean, integer) from %I', r);
    end if;
  end loop;
  if exists (select from pg_roles where rolname = 'service_role') then
    grant usage on schema supaqueue to service_role;
    grant select, insert, update, delete on supaqueue.queue, supaqueue.job, supaqueue.worker to service_role;
    grant select on supaqueue.current_job, supaqueue.attempt, supaqueue.config, supaqueue.migration,
      supaqueue.rate_bucket, supaqueue.schedule, supaqueue.queue_stats to service_role;
    grant execute on function
      supaqueue.enqueue(text, jsonb, timestamptz, text, jsonb),
      supaqueue.cancel(uuid),
      supaqueue.retry(uuid),
      supaqueue.set_workers(text, integer),
      supaqueue.remove_queue(text),
      supaqueue.pause(text),
      supaqueue.resume(text),
      supaqueue.cancel_jobs(text, jsonb),
      supaqueue.purge(text),
      supaqueue.retry_failed(text, timestamptz),
      supaqueue.rotate_signing_key(text, text, interval),
      supaqueue.schedule(text, text, text, jsonb, text),
      supaqueue.unschedule(text),
      supaqueue.tick(timestamptz),
      supaqueue.backoff_delay(integer, integer, integer),
      supaqueue.complete_current_job(bigint, boolean, integer, text, text, integer, boolean, integer),
      public.supaqueue_complete_current_job(bigint, boolean, integer, text, text, integer, boolean, integer)
    to service_role;
  end if;
end $$;

select supaqueue.schedule_tick();
