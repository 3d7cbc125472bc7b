-- Supaqueue 0001: queues, jobs, workers, current jobs, dispatch, the hop to the edge function, claims,
-- completion, tick, the user API, grants.
--
-- Runs as Supabase's `postgres` role, which is not a superuser: nothing here needs superuser rights.
-- Applied by src/db/migrate.ts in one transaction under an advisory lock, with its checksum recorded. Until the first
-- release tag (v1.0.0) this file is the whole schema and reads top to bottom; from then on migrations are
-- append-only: a change is a new file.
--
-- Lock order, everywhere: queue (FOR NO KEY UPDATE, only when reconfiguring) -> current_job -> job -> throttle
-- (in queue-id order, only when a target says slow down) -> job_key (keys in order; dispatch: SKIP LOCKED) -> worker
-- -> rate_bucket. Dispatch never waits for a worker, job or key lock (it claims with SKIP LOCKED and only the rows it
-- will use, and reads a throttle without locking it; a key's row is made by enqueue, in key order, so dispatch makes
-- one only when a raw insert raced tick's cleanup); the one lock it waits for, a rate-limited queue's bucket, is held
-- by a dispatch that waits for nothing else.
-- Claims lock current jobs only, with SKIP LOCKED. So two completions, a completion and an enqueue, a claim and
-- anything else, or a tick and anything else cannot deadlock. A completion that enqueues (dead letters, on_success
-- steps, waiting jobs made pending) dispatches those queues with its own workers' queues, all in queue-id order, so
-- every transaction that takes several rate buckets takes them in that one order. Waiting jobs (enqueue's `after`)
-- are locked after the jobs they wait for, in id order (a cancellation locks every waiting job downstream at once).
-- A target's callback, like cancel(), locks its call's current_job before the job.
--
-- The hop (see "The hop" below): pg_net carries nothing worth stealing. A transaction that starts calls sends, when
-- it commits, one request to execute_current_job holding only current-job ids, authenticated by an HMAC keyed with the
-- Vault secret `supaqueue_secret`. The function claims the calls with the service-role key through
-- public.supaqueue_claim_current_jobs, which hands out each call's details (URL, payload, headers with their
-- secrets, signing keys) once, while its lease is live. pg_net's tables are readable by every role: no payload,
-- header or secret is ever written there.

create schema if not exists extensions;
create extension if not exists pg_net with schema extensions;
create extension if not exists supabase_vault;

create schema if not exists supaqueue;
comment on schema supaqueue is 'Supaqueue: durable HTTP-call queues (https://github.com/supaqueue/action)';

-------------------------------------------------------------------------------------------------------------------
-- Types
-------------------------------------------------------------------------------------------------------------------

-- waiting: enqueued with `after`, held until every job it waits for has succeeded (see supaqueue.job_after).
create type supaqueue.job_status as enum ('pending', 'in_progress', 'successful', 'failed', 'cancelled', 'waiting');

-- One reported outcome of a call: what execute_current_job learned from the target.
create type supaqueue.outcome as (
  current_job_id bigint,
  succeeded boolean,
  status_code integer,
  response_body text,
  error text,
  duration_ms integer,
  retryable boolean,
  retry_after_ms integer,
  -- The call was given back before it could finish (the function's worker shut down, or too little of its wall clock
  -- was left to start it): the job goes back to pending at once and the attempt does not count.
  released boolean,
  -- The response body for the queue's on_success step, read up to config.max_chain_body_bytes (the function sends it
  -- only for queues with on_success; response_body keeps its own, smaller bound). Null: use response_body.
  chain_body text
);

-------------------------------------------------------------------------------------------------------------------
-- Tables
-------------------------------------------------------------------------------------------------------------------

-- The one place for install-time values. A single row (id is always true).
create table supaqueue.config (
  id boolean primary key default true constraint config_is_single_row check (id),
  -- Where execute_current_job lives: https://<project-ref>.supabase.co/functions/v1 on Supabase.
  functions_url text,
  -- pg_net's timeout for the hop to execute_current_job, which claims its calls and answers before calling targets.
  request_timeout_ms integer not null default 10000 constraint request_timeout_is_positive check (request_timeout_ms > 0),
  -- A call in flight is given back after its queue's timeout plus this grace (edge start-up, reporting).
  lease_grace_ms integer not null default 30000 constraint lease_grace_is_not_negative check (lease_grace_ms >= 0),
  -- The longest per-call timeout a queue may ask for: the edge wall clock (150 s on the free plan) less a margin.
  max_call_timeout_ms integer not null default 140000 constraint max_call_timeout_is_positive check (max_call_timeout_ms > 0),
  -- Response bodies kept in the attempt history are cut to this many characters.
  max_response_chars integer not null default 2000 constraint max_response_chars_is_not_negative check (max_response_chars >= 0),
  -- Finished jobs and their attempts are deleted by tick() once finished this long ago.
  retention interval not null default '7 days' constraint retention_is_positive check (retention > interval '0'),
  -- The most a job's payload may weigh, as JSON text; the function holds every payload of its calls in memory.
  max_payload_bytes integer not null default 1048576 constraint max_payload_bytes_is_positive check (max_payload_bytes > 0),
  -- The most a job's own headers may weigh, as JSON text.
  max_job_headers_bytes integer not null default 8192 constraint max_job_headers_bytes_is_positive check (max_job_headers_bytes > 0),
  -- A call that execute_current_job has not claimed this long after its last wakeup is woken again by tick().
  rewake_after_ms integer not null default 5000 constraint rewake_after_is_positive check (rewake_after_ms > 0),
  -- How far the function's clock may be from the database's; part of a wakeup's freshness window.
  clock_skew_ms integer not null default 30000 constraint clock_skew_is_not_negative check (clock_skew_ms >= 0),
  -- The largest response an on_success step reads (the function reads at most this much, and never more than the
  -- 1,000,000 characters a report may carry): a larger one fails the step.
  max_chain_body_bytes integer not null default 262144
    constraint max_chain_body_bytes_is_bounded check (max_chain_body_bytes between 1 and 1000000)
);
insert into supaqueue.config default values;

-- A queue is one HTTP endpoint and the rules for calling it.
create table supaqueue.queue (
  id bigint generated always as identity primary key,
  name text not null constraint queue_name_is_unique unique,
  -- Exactly one of url (any http(s) URL) and function_name (an edge function of this project) is set.
  url text,
  -- When the URL holds a secret (supaqueue.yml's `url: https://…?token=${TOKEN}`): the Vault secret with the whole
  -- URL, read when a call is claimed; `url` then shows it as written, its secret parts as ${VAR}.
  url_secret text,
  function_name text,
  method text not null default 'POST',
  headers jsonb not null default '{}',
  -- Header name -> Vault secret name, resolved when the call is claimed so the value never sits in this table.
  secret_headers jsonb not null default '{}',
  max_attempts integer not null default 3,
  timeout_ms integer not null default 30000,
  -- Calls longer than an edge worker lives: with callback_timeout_ms set, each call carries a per-call callback URL
  -- and token (headers Supaqueue-Callback-Url and Supaqueue-Callback-Token); a target that answers 202 has taken the
  -- work on and reports its outcome later through that URL (supaqueue.complete_callback). The call stays in flight,
  -- its worker busy, until then or until this long after the 202 (a lost callback is a failed, retryable attempt).
  -- Null: a 202 is a success like any 2xx.
  callback_timeout_ms integer
    constraint queue_callback_timeout_is_bounded check (callback_timeout_ms between 1000 and 604800000),
  backoff_base_ms integer not null default 10000,
  backoff_max_ms integer not null default 3600000,
  -- HTTP statuses that count as success (null: any 2xx) and that are retried (null: 408, 429 and 5xx).
  -- Any other status fails the job at once, without using up its remaining attempts.
  success_codes integer[],
  retry_codes integer[],
  -- At most this many calls per second (a token bucket holding one second of calls), on top of the workers.
  rate_limit_per_second double precision,
  -- Back-pressure from the target. slow_down: a 429 or 503 halves the calls per second the queue may start (at most
  -- once a second), which then grow back by a step every second up to the rate limit (supaqueue.throttle).
  -- honor_retry_after: 'job' delays only the job that got a Retry-After; 'queue' also holds the queue's new calls
  -- until then.
  slow_down boolean not null default false,
  -- Flow control per key (a job's `key`, e.g. a tenant): per_key_concurrency caps a key's calls in flight; ordered
  -- runs a key's jobs one at a time in enqueue order (a job retried with backoff holds the ones after it); with
  -- hold_key_on_failure an ordered key whose job failed for good stops until that job is retried or the key released
  -- (supaqueue.release_key). key_field: enqueue() takes the key from this payload field when given none.
  per_key_concurrency integer,
  ordered boolean not null default false,
  hold_key_on_failure boolean not null default false,
  key_field text,
  honor_retry_after text not null default 'job'
    constraint queue_honor_retry_after_is_known check (honor_retry_after in ('job', 'queue')),
  -- A job that fails for good is also enqueued into this queue (payload, last status and error, attempts).
  dead_letter_queue text,
  -- Chains: each job that succeeds enqueues a job into on_success_queue, in the transaction that records the
  -- success, its parent_id naming the job it came from. Its payload (on_success_payload) is the JSON response (or
  -- its field on_success_field), the original payload, or both merged (payload || response object). With fan_out
  -- the response (or field) is a JSON array and each item becomes a job, at most fan_out_max of them.
  on_success_queue text,
  on_success_payload text not null default 'response'
    constraint queue_on_success_payload_is_known check (on_success_payload in ('response', 'payload', 'merged')),
  on_success_field text,
  fan_out boolean not null default false,
  fan_out_max integer not null default 100
    constraint queue_fan_out_max_is_bounded check (fan_out_max between 1 and 10000),
  -- Alerts (supaqueue.yml's `alerts:`, see "Alerts" below): the queue that carries them to the webhook (the installer
  -- makes it as '<queue>-alerts', the webhook's URL in Vault), the thresholds watched (null: not watched) and the
  -- link to the queue's page of the dashboard that alerts end with (null: none is known).
  alert_queue text,
  alert_failure_rate double precision,
  alert_oldest_due_ms integer,
  alert_dead_letters integer,
  alert_link text,
  -- The JSON Schema its payloads follow (supaqueue.yml's `payload:`), or null. Checked by the client and by
  -- `supaqueue enqueue` before a job is sent to the database (supaqueue.payload_schema), not by the database itself.
  payload_schema jsonb,
  -- Vault secret names of the HMAC-SHA256 signing key, and of the previous key while it is still honoured.
  -- A queue with a signing key never sends a call unsigned: a key missing from Vault fails the call.
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
  -- Time-ordered ids (RFC 9562 version 7: 48 bits of Unix milliseconds, the version, the variant and
  -- gen_random_uuid()'s random bits, its version nibble turned from 4 into 7 by setting bits 52 and 53). A random
  -- id put each new job's primary-key entry on a random leaf page: with 1,000,000 pending jobs an enqueue then read
  -- and dirtied a page no other statement needed (bench/ANALYSIS.md). New entries now go to the right edge of the
  -- index. An expression, not a function: a function must pin its search_path, which keeps PostgreSQL from inlining
  -- it, and a call per row took a quarter of bulk enqueue's throughput; this expression about 3%.
  id uuid primary key default pg_catalog.encode(pg_catalog.set_bit(pg_catalog.set_bit(
    overlay(pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
            placing substring(pg_catalog.int8send(
              pg_catalog.floor(extract(epoch from pg_catalog.clock_timestamp()) * 1000)::bigint) from 3)
            from 1 for 6),
    52, 1), 53, 1), 'hex')::uuid,
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
  -- The flow-control key (see queue.per_key_concurrency and ordered); null: no key.
  key text constraint job_key_is_short check (octet_length(key) between 1 and 256),
  last_status_code integer,
  -- On a successful job: why its on_success step failed (the call is not repeated; see _next_payloads).
  last_error text,
  -- The job whose success enqueued this one (its queue's on_success), or null. Not a foreign key: retention deletes
  -- finished jobs by age, parents before their children.
  parent_id uuid,
  -- A waiting job: how many of the jobs it waits for have not succeeded yet (each success counts it down; the last
  -- makes it pending). Null for a job that never waited.
  waiting_for integer constraint waiting_for_is_not_negative check (waiting_for >= 0),
  created_at timestamptz not null default now(),
  finished_at timestamptz
);
-- Dispatch reads only this index: its size is the number of pending jobs, never the finished ones.
create index job_pending_due_idx on supaqueue.job (queue_id, run_at, seq) where status = 'pending';
-- A keyed queue's pending jobs per key, in enqueue order: an ordered key's head is found here.
create index job_pending_key_idx on supaqueue.job (queue_id, key, seq) where status = 'pending' and key is not null;
-- One unfinished job per (queue, dedup_key).
create unique index job_dedup_key_idx on supaqueue.job (queue_id, dedup_key)
  where dedup_key is not null and status in ('pending', 'in_progress', 'waiting');
-- A job's children (get_job), only for jobs that have a parent.
create index job_parent_idx on supaqueue.job (parent_id) where parent_id is not null;
-- Retention deletes by age of finished jobs.
create index job_finished_at_idx on supaqueue.job (finished_at) where finished_at is not null;
-- No plain index on job (queue_id) nor on worker (queue_id): it would be written on every claim and completion
-- (status and locked change, so those updates are never HOT) and the partial indexes above already lead with
-- queue_id for dispatch. The Performance Advisor's unindexed_foreign_keys notes these two keys; that is deliberate.

-- Fan-in: job_id waits for parent_id (enqueue's `after`). A parent's success counts its waiting jobs down (rows locked
-- in id order; siblings' statuses are never read); its failure for good or cancellation cancels them. Only jobs
-- enqueued with `after` have rows; they go with either job (retention).
create table supaqueue.job_after (
  parent_id uuid not null references supaqueue.job (id) on delete cascade,
  job_id uuid not null references supaqueue.job (id) on delete cascade,
  primary key (parent_id, job_id)
);
create index job_after_job_idx on supaqueue.job_after (job_id);

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

-- A current job joins a worker to the job it runs: a call in flight. Inserting one wakes execute_current_job when the
-- transaction commits; the function claims it (once) and reports its outcome, which deletes it.
create table supaqueue.current_job (
  id bigint generated always as identity primary key,
  worker_id bigint not null constraint current_job_worker_is_unique unique references supaqueue.worker (id),
  job_id uuid not null constraint current_job_job_is_unique unique references supaqueue.job (id),
  attempt integer not null,
  started_at timestamptz not null default now(),
  -- After this the call is presumed lost and tick() counts it as a failed attempt. Set again when it is claimed.
  lease_until timestamptz not null,
  -- When execute_current_job took the call's details; null until then. A call is claimed at most once.
  claimed_at timestamptz,
  -- The pg_net request of the last wakeup sent for this call, and when; null when none was needed (a call the
  -- function claimed in the transaction that started it). Its answer is in net._http_response.
  wakeup_id bigint,
  woken_at timestamptz,
  -- A call of a queue with callback_timeout_ms: the SHA-256 of the callback token handed to the target (the token
  -- itself is kept nowhere), set when the call is claimed; and when the target answered 202, taking the work on.
  -- Until its callback comes (supaqueue.complete_callback) the call stays in flight, its lease callback_timeout_ms
  -- from the 202 (or from the last 202 callback, a heartbeat).
  callback_hash bytea,
  accepted_at timestamptz
);
create index current_job_lease_idx on supaqueue.current_job (lease_until);
create unique index current_job_callback_idx on supaqueue.current_job (callback_hash) where callback_hash is not null;

-- The token bucket of each rate-limited queue: tokens left as of refilled_at.
create table supaqueue.rate_bucket (
  queue_id bigint primary key references supaqueue.queue (id) on delete cascade,
  tokens double precision not null,
  refilled_at timestamptz not null
);

-- The keys of keyed queues (per_key_concurrency or ordered) with their calls in flight. Dispatch locks a key's row
-- with SKIP LOCKED (after the job, before the worker) and never waits for it; completion frees it, keys in order.
-- held_by: the job that failed for good on an ordered key that holds on failure. tick() deletes idle rows.
create table supaqueue.job_key (
  queue_id bigint not null references supaqueue.queue (id) on delete cascade,
  key text not null,
  in_flight integer not null default 0 constraint job_key_in_flight_is_not_negative check (in_flight >= 0),
  held_by uuid,
  primary key (queue_id, key)
);

-- Queues their target told to slow down (a 429 or 503 with slow_down, or a Retry-After with honor_retry_after =
-- 'queue'): the calls per second they may start, as of changed_at, and until when they start none. A row lives only
-- while a queue is held back: tick() deletes it once the rate has grown back and the pause is over, so a queue that
-- was never told to slow down costs one index probe per dispatch, and only when it opted in.
create table supaqueue.throttle (
  queue_id bigint primary key references supaqueue.queue (id) on delete cascade,
  -- Calls per second allowed as of changed_at (null: no lowered rate, only a pause); grows by `step` a second.
  rate double precision,
  -- What the rate grows back to: the queue's rate limit, or (without one) the calls it had in flight per second
  -- when it was first told to slow down.
  ceiling double precision,
  step double precision,
  changed_at timestamptz not null,
  -- The last halving: further 429s within a second of it are the same episode and halve nothing more.
  decreased_at timestamptz,
  paused_until timestamptz
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

-- Every wakeup sent through pg_net, kept as long as pg_net keeps its answer (6 h), so that its answer in
-- net._http_response can be told from other users' requests (supaqueue doctor, and a call never claimed).
create table supaqueue.wakeup (
  request_id bigint primary key,
  sent_at timestamptz not null,
  -- How many calls it named (0 for a probe).
  calls integer not null
);
create index wakeup_sent_at_idx on supaqueue.wakeup (sent_at);

-- Probes of the whole loop (database -> pg_net -> execute_current_job -> its RPC -> database): the function marks a
-- probe reached when it claims with it. Installers and `supaqueue doctor` send one and wait for it.
create table supaqueue.probe (
  id uuid primary key default gen_random_uuid(),
  created_at timestamptz not null default now(),
  wakeup_id bigint,
  reached_at timestamptz
);

-- When tick() last ran, as the one row of this table (doctor says when it stopped).
create table supaqueue.ticker (
  id boolean primary key default true constraint ticker_is_single_row check (id),
  last_run_at timestamptz,
  last_result jsonb
);
insert into supaqueue.ticker default values;

-- Applied migrations with the checksum of their file (created by the runner before this file; declared here for
-- completeness). The runner refuses a database whose recorded checksum differs from the shipped file.
create table if not exists supaqueue.migration (
  version integer primary key,
  name text not null,
  checksum text,
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

-- Whether following queues from `first` by their dead_letter_queue (or, with on_success, their on_success_queue)
-- comes back to `home`: the cycle check of both links.
create function supaqueue._leads_back(first text, home text, on_success boolean) returns boolean
language sql stable set search_path = '' as $$
  with recursive chain (name, depth) as (
    select first, 1
    union all
    select n.next, c.depth + 1
    from chain c join supaqueue.queue d on d.name = c.name
    cross join lateral (select case when on_success then d.on_success_queue else d.dead_letter_queue end as next) n
    where n.next is not null and c.name <> home and c.depth < 1000)
  select exists (select from chain where chain.name = home)
$$;

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
  if new.url is not null and new.url_secret is null and new.url !~ '^https?://[^/?#\s@]+[^\s]*$' then
    raise exception 'supaqueue: queue "%" has an invalid url "%"', new.name, new.url
      using hint = 'Use an absolute http:// or https:// URL, without user:password@ (keep secrets in Vault: url_secret).';
  end if;
  if new.url_secret is not null and new.url is null then
    raise exception 'supaqueue: queue "%" has a url_secret but no url', new.name
      using hint = 'Set url to the URL as shown (its secret parts as ${VAR}); url_secret names the Vault secret holding it whole.';
  end if;
  if new.function_name is not null and new.function_name !~ '^[A-Za-z0-9_-]{1,128}$' then
    raise exception 'supaqueue: queue "%" has an invalid function_name "%"', new.name, new.function_name
      using hint = 'Use the edge function''s name: letters, digits, "-" and "_".';
  end if;
  if new.payload_schema is not null and jsonb_typeof(new.payload_schema) <> 'object' then
    raise exception 'supaqueue: queue "%" has a payload_schema that is not a JSON object', new.name
      using hint = 'Set it to a JSON Schema (an object such as {"type": "object", "required": ["to"]}), or null.';
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
  if new.per_key_concurrency is not null and not (new.per_key_concurrency between 1 and 1000) then
    raise exception 'supaqueue: queue "%" has per_key_concurrency %, it must be from 1 to 1000 (or null for none)',
      new.name, new.per_key_concurrency;
  end if;
  if new.ordered and coalesce(new.per_key_concurrency, 1) <> 1 then
    raise exception 'supaqueue: queue "%" is ordered with per_key_concurrency %', new.name, new.per_key_concurrency
      using hint = 'An ordered key runs one job at a time: leave per_key_concurrency out (or 1).';
  end if;
  if new.hold_key_on_failure and not new.ordered then
    raise exception 'supaqueue: queue "%" holds keys on failure but is not ordered', new.name
      using hint = 'hold_key_on_failure keeps the order of an ordered key after a job fails for good: set ordered too.';
  end if;
  if new.dead_letter_queue is not null then
    if new.dead_letter_queue = new.name
       or not exists (select from supaqueue.queue d where d.name = new.dead_letter_queue) then
      raise exception 'supaqueue: queue "%" names dead_letter_queue "%", which is not another existing queue', new.name, new.dead_letter_queue
        using hint = 'Create the dead-letter queue first; a queue cannot be its own dead-letter queue.';
    end if;
    -- A cycle (a -> b -> a) would pass a job that keeps failing round for ever, its payload growing each time.
    if supaqueue._leads_back(new.dead_letter_queue, new.name, on_success => false) then
      raise exception 'supaqueue: queue "%" names dead_letter_queue "%", whose dead letters lead back to "%"', new.name, new.dead_letter_queue, new.name
        using hint = 'Dead-letter queues must not form a cycle: end the chain with a queue that has no dead_letter_queue.';
    end if;
  end if;
  if new.on_success_queue is not null then
    if new.on_success_queue = new.name
       or not exists (select from supaqueue.queue d where d.name = new.on_success_queue) then
      raise exception 'supaqueue: queue "%" names on_success queue "%", which is not another existing queue', new.name, new.on_success_queue
        using hint = 'Create the next queue first; a queue cannot be its own on_success queue.';
    end if;
    -- A cycle (a -> b -> a) would call for ever, each success starting the next round.
    if supaqueue._leads_back(new.on_success_queue, new.name, on_success => true) then
      raise exception 'supaqueue: queue "%" names on_success queue "%", whose successes lead back to "%"', new.name, new.on_success_queue, new.name
        using hint = 'on_success chains must not form a cycle: end the chain with a queue that has no on_success queue.';
    end if;
  end if;
  if new.fan_out and new.on_success_payload = 'payload' then
    raise exception 'supaqueue: queue "%" fans out its original payload', new.name
      using hint = 'fan_out makes one job per item of the JSON response (or its field): use on_success_payload ''response'' or ''merged''.';
  end if;
  if new.on_success_field is not null and (new.on_success_field = '' or new.on_success_payload = 'payload') then
    raise exception 'supaqueue: queue "%" has on_success_field "%" that is empty or unused', new.name, new.on_success_field
      using hint = 'on_success_field names a field of the JSON response, used with on_success_payload ''response'' or ''merged''.';
  end if;
  new.updated_at := now();
  return new;
end $$;

create trigger queue_is_valid before insert or update on supaqueue.queue
  for each row execute function supaqueue._validate_queue();

-------------------------------------------------------------------------------------------------------------------
-- Vault: secret names and writes
-------------------------------------------------------------------------------------------------------------------

-- The shared secret of the hop, in Vault as `supaqueue_secret` and in the function as SUPAQUEUE_SECRET.
-- The Vault name of a queue's secret header: 'supaqueue:header:<queue>:<header in lower case>'. Neither a queue name
-- nor an HTTP header name can contain ':', so no two (queue, header) pairs share a name.
create function supaqueue._header_secret_name(queue_name text, header text) returns text
language sql immutable set search_path = '' as $$
  select 'supaqueue:header:' || queue_name || ':' || pg_catalog.lower(header)
$$;

-- The Vault name of a queue's secret URL: 'supaqueue:url:<queue>'.
create function supaqueue._url_secret_name(queue_name text) returns text
language sql immutable set search_path = '' as $$
  select 'supaqueue:url:' || queue_name
$$;

-- The Vault name of a queue's signing key ('supaqueue:signing:<queue>'), or of the previous one during a rotation
-- ('supaqueue:signing:<queue>:previous'). No queue name contains ':', so the two kinds never meet.
create function supaqueue._signing_key_name(queue_name text, previous boolean default false) returns text
language sql immutable set search_path = '' as $$
  select 'supaqueue:signing:' || queue_name || case when previous then ':previous' else '' end
$$;

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

-- The calls per second a throttled queue may start at `at`: its lowered rate grown back by `step` a second since it
-- was lowered, up to its ceiling; null when the throttle lowers no rate.
create function supaqueue._throttled_rate(t supaqueue.throttle, at timestamptz) returns double precision
language sql immutable set search_path = '' as $$
  select least(t.ceiling, t.rate + t.step * greatest(0, extract(epoch from (at - t.changed_at))))
$$;

-- The next due jobs of a keyed queue (per_key_concurrency or ordered), in due order, skipping the jobs of keys that
-- are full, held, or (ordered) not at their head, and counting them as in flight on their key. Each job is locked
-- with its key's row in one statement, SKIP LOCKED (a key another transaction holds is skipped, never waited for:
-- that transaction frees or fills it and dispatches after), then counted on its key at once, so a second job of the
-- same key in this dispatch sees the count. A key found full or held is remembered, so its later jobs are passed over
-- without a look. What it costs grows with the due jobs of blocked keys ahead of the first runnable ones (a hot key's
-- backlog at the head is walked past at every dispatch). Its statements keep their generic plans (all of them look
-- rows up by key or walk an index with a constant LIMIT): left to choose, PL/pgSQL planned them afresh at every
-- dispatch, half of a keyed claim's extra cost (bench/ANALYSIS.md, section 10).
create function supaqueue._claim_keyed_jobs(q supaqueue.queue, wanted integer, at timestamptz) returns uuid[]
language plpgsql security definer set search_path = '' set plan_cache_mode = force_generic_plan as $$
declare
  cap integer := case when q.ordered then 1 else q.per_key_concurrency end;
  c record;
  k supaqueue.job_key;
  ids uuid[] := '{}';
  blocked text[] := '{}';
  page integer;
  last_run_at timestamptz := '-infinity';
  last_seq bigint := 0;
begin
  <<pages>>
  loop
    -- A page of due jobs at a time, after the last one seen: a constant LIMIT keeps an index scan that stops early
    -- (a loop over the unbounded query was planned as a sort of every due job of the queue).
    page := 0;
    for c in
      select j.id, j.key, j.seq, j.run_at from supaqueue.job j
      where j.queue_id = q.id and j.status = 'pending' and j.run_at <= at
        and (j.run_at, j.seq) > (last_run_at, last_seq)
      order by j.run_at, j.seq
      limit 100
    loop
      page := page + 1;
      last_run_at := c.run_at;
      last_seq := c.seq;
      exit pages when cardinality(ids) >= wanted;
      if c.key is null then
        perform from supaqueue.job j where j.id = c.id and j.status = 'pending' for update skip locked;
        if found then
          ids := ids || c.id;
        end if;
        continue;
      end if;
      continue when c.key = any (blocked);
      -- The job and its key's row, locked together; an ordered key's job only when it is the key's head (no earlier
      -- pending job: the head may still come in this scan, due earlier than this job, so the key is not blocked).
      -- The head is read as the key's first pending job, so that even the cached generic plan walks
      -- job_pending_key_idx.
      -- Rarely the key has no row (a raw insert, or tick's cleanup raced enqueue): it is made, and looked at again.
      k := null;
      for attempt in 1 .. 2 loop
        select jk.* into k
        from supaqueue.job j join supaqueue.job_key jk on jk.queue_id = q.id and jk.key = c.key
        where j.id = c.id and j.status = 'pending'
          and (not q.ordered or (select e.seq from supaqueue.job e
                                 where e.queue_id = q.id and e.key = c.key and e.status = 'pending'
                                 order by e.seq limit 1) >= c.seq)
        for update of j, jk skip locked;
        exit when k.queue_id is not null
          or exists (select from supaqueue.job_key jk where jk.queue_id = q.id and jk.key = c.key);
        insert into supaqueue.job_key (queue_id, key) values (q.id, c.key) on conflict do nothing;
      end loop;
      -- The job was taken, the key's row is held elsewhere, or (ordered) this is not the head: go on.
      continue when k.queue_id is null;
      if k.held_by is not null or k.in_flight >= cap then
        blocked := blocked || c.key;
        continue;
      end if;
      update supaqueue.job_key jk set in_flight = jk.in_flight + 1 where jk.queue_id = q.id and jk.key = c.key;
      ids := ids || c.id;
    end loop;
    exit pages when page < 100 or cardinality(ids) >= wanted;
  end loop;
  return ids;
end $$;

-- Claims up to `wanted` free workers of a queue and gives each the next due job, in due order.
-- With `own_workers` (workers this transaction already holds, from completions) it gives those workers the next
-- due jobs, in the order given, and unlocks the ones left without a job. Only rows that will be used are locked,
-- with SKIP LOCKED, so this never waits and never blocks another dispatch. Returns the number of calls started.
--
-- Cached plans at any size: PL/pgSQL keeps a statement's generic plan only while it looks no dearer than a plan made
-- for the actual values, and a generic plan knows neither a `limit $n` (it assumes 10% of the rows) nor an array's
-- length. With 1,000,000 pending jobs (or 10,000 free workers) a claim written with `limit wanted` was then planned
-- afresh at every dispatch: about 130 µs of a 270 µs dispatch (bench/ANALYSIS.md, claim cost). A dispatch for one
-- worker (one enqueue, one completion) therefore claims with a constant `limit 1` and updates single rows, whose
-- generic plans are kept; a dispatch for several workers plans for their number, once a batch.
--
-- Due jobs are locked before free workers (the file's lock order), and only as many workers as there are jobs: a
-- dispatch that finds no due job (tick() visits every queue) holds no worker, so an enqueue committing meanwhile finds
-- its free worker at once instead of leaving its job to the next tick.
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
  t supaqueue.throttle;
  rate double precision;
begin
  if own_workers is not null then
    wanted := cardinality(own_workers);
  end if;
  select * into q from supaqueue.queue where id = _dispatch.queue_id;
  rate := q.rate_limit_per_second;
  if q.id is not null and (q.slow_down or q.honor_retry_after = 'queue') then
    select * into t from supaqueue.throttle where throttle.queue_id = q.id;
    if t.paused_until > at then
      wanted := 0;
    end if;
    rate := coalesce(supaqueue._throttled_rate(t, at), rate);
  end if;
  if q.id is not null and not q.paused and rate is not null and wanted > 0 then
    -- Taken first and held to commit: whoever holds a bucket never waits for anything else (no deadlock).
    wanted := least(wanted, floor(supaqueue._refill_bucket(q.id, rate, at))::integer);
  end if;

  -- The claims for one call and for several differ only in their LIMIT: a constant one keeps its plan cached.
  if q.id is null or q.paused or wanted < 1 then
    job_ids := '{}';
  elsif q.per_key_concurrency is not null or q.ordered then
    job_ids := supaqueue._claim_keyed_jobs(q, wanted, at);
  elsif wanted = 1 then
    select array[j.id] into job_ids from supaqueue.job j
    where j.queue_id = q.id and j.status = 'pending' and j.run_at <= at
    order by j.run_at, j.seq limit 1
    for update skip locked;
  else
    select array_agg(j.id order by j.run_at, j.seq) into job_ids
    from (select j.id, j.run_at, j.seq from supaqueue.job j
          where j.queue_id = q.id and j.status = 'pending' and j.run_at <= at
          order by j.run_at, j.seq limit wanted
          for update skip locked) j;
  end if;

  if own_workers is not null then
    worker_ids := own_workers[1:coalesce(cardinality(job_ids), 0)];
  elsif cardinality(job_ids) = 1 then
    select array[w.id] into worker_ids from supaqueue.worker w
    where w.queue_id = q.id and not w.locked
    order by w.id limit 1
    for update skip locked;
  elsif cardinality(job_ids) > 1 then
    select array_agg(w.id order by w.id) into worker_ids
    from (select w.id from supaqueue.worker w
          where w.queue_id = q.id and not w.locked
          order by w.id limit cardinality(job_ids)
          for update skip locked) w;
  end if;
  started := least(coalesce(cardinality(job_ids), 0), coalesce(cardinality(worker_ids), 0));

  if own_workers is not null and started < cardinality(own_workers) then
    update supaqueue.worker set locked = false where id = any (own_workers[started + 1:]);
  end if;
  if started < cardinality(job_ids) and (q.per_key_concurrency is not null or q.ordered) then
    -- Jobs claimed on their key but left without a worker give their place back.
    update supaqueue.job_key jk set in_flight = jk.in_flight - x.n
    from (select j.key, count(*)::integer as n from supaqueue.job j
          where j.id = any (job_ids[started + 1:]) and j.key is not null group by j.key) x
    where jk.queue_id = q.id and jk.key = x.key;  -- rare: a dispatch that found fewer free workers than jobs
  end if;
  if started = 0 then
    return 0;
  end if;

  job_ids := job_ids[1:started];
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

  if rate is not null then
    update supaqueue.rate_bucket b set tokens = b.tokens - started where b.queue_id = q.id;
  end if;
  return started;
end $$;

-- After an insert of jobs (one row or a bulk insert ... select): checks the size bounds, then one dispatch per queue
-- touched, for as many workers as the statement added due jobs. Runs once per statement, never once per row.
create function supaqueue._on_jobs_inserted() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  cfg supaqueue.config;
  too_big record;
  r record;
begin
  select * into cfg from supaqueue.config;
  select n.id, q.name as queue, octet_length(n.payload::text) as payload_bytes,
         octet_length(n.headers::text) as header_bytes
  into too_big
  from new_jobs n join supaqueue.queue q on q.id = n.queue_id
  where octet_length(n.payload::text) > cfg.max_payload_bytes
     or octet_length(n.headers::text) > cfg.max_job_headers_bytes
  limit 1;
  if too_big.id is not null then
    if too_big.payload_bytes > cfg.max_payload_bytes then
      raise exception 'supaqueue: a job for queue "%" has a payload of % bytes, more than max_payload_bytes (%)',
        too_big.queue, too_big.payload_bytes, cfg.max_payload_bytes
        using hint = 'Store large data in a table or in Storage and send its id, or raise the bound: select supaqueue.configure(max_payload_bytes => ...).';
    end if;
    raise exception 'supaqueue: a job for queue "%" has headers of % bytes, more than max_job_headers_bytes (%)',
      too_big.queue, too_big.header_bytes, cfg.max_job_headers_bytes
      using hint = 'Put fewer or shorter headers on the job, or raise the bound: select supaqueue.configure(max_job_headers_bytes => ...).';
  end if;

  -- Keyed jobs get their key's row here, in key order, so that dispatch finds it and never has to create one (two
  -- dispatches creating the same key would wait for each other).
  insert into supaqueue.job_key (queue_id, key)
  select distinct n.queue_id, n.key from new_jobs n where n.key is not null order by 1, 2
  on conflict do nothing;

  -- A completion that enqueues (dead letters, on_success steps) dispatches those queues itself, after its own
  -- workers and in queue-id order (see _complete), so that rate buckets are taken in one order.
  if current_setting('supaqueue.defer_dispatch', true) = 'on' then
    return null;
  end if;
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
-- The hop: a wakeup at commit carries current-job ids only, signed with the Vault secret
-------------------------------------------------------------------------------------------------------------------

-- HMAC-SHA256 (RFC 2104) from the built-in sha256(), so Supaqueue needs no pgcrypto (and none in a schema it does not
-- know): the key, hashed first when longer than a block, is zero-padded to 64 bytes and XORed with the inner and
-- outer pads as a 512-bit string. 10-120 µs a call (bench/ANALYSIS.md), once per wakeup of up to 100 calls.
create function supaqueue._hmac_sha256(key bytea, message bytea) returns bytea
language sql immutable strict set search_path = '' as $$
  select pg_catalog.sha256(pg_catalog.substr(pg_catalog.varbit_send(b.k # pg_catalog.repeat('01011100', 64)::bit(512)), 5)
         || pg_catalog.sha256(pg_catalog.substr(pg_catalog.varbit_send(b.k # pg_catalog.repeat('00110110', 64)::bit(512)), 5)
                              || message))
  from (select ('x' || pg_catalog.rpad(pg_catalog.encode(
          case when pg_catalog.length(key) > 64 then pg_catalog.sha256(key) else key end, 'hex'), 128, '0'))::bit(512) as k) b
$$;

-- The functions URL, or an error that says how to set it: calls are never started that could not be sent.
create function supaqueue._functions_url() returns text
language plpgsql stable security definer set search_path = '' as $$
declare url text := (select c.functions_url from supaqueue.config c);
begin
  if url is null then
    raise exception 'supaqueue: the functions URL is not configured'
      using hint = 'Run the installer, or: select supaqueue.configure(functions_url => ''https://<project-ref>.supabase.co/functions/v1'');';
  end if;
  return url;
end $$;

-- The secret shared with execute_current_job (Vault's supaqueue_secret, the function's SUPAQUEUE_SECRET), or an error
-- that says how to set it.
create function supaqueue._shared_secret() returns bytea
language plpgsql stable security definer set search_path = '' as $$
declare
  secret bytea := (select convert_to(s.decrypted_secret, 'UTF8') from vault.decrypted_secrets s
                   where s.name = 'supaqueue_secret');
begin
  if secret is null or length(secret) = 0 then
    raise exception 'supaqueue: the Vault secret "supaqueue_secret" is missing'
      using hint = 'Run the installer, or create it with vault.create_secret(<secret>, ''supaqueue_secret'') and set the same value as the function''s SUPAQUEUE_SECRET.';
  end if;
  return secret;
end $$;

-- A call's callback token (queues with callback_timeout_ms): 32 random bytes (two v4 UUIDs: 244 random bits) in hex,
-- a dot, and the HMAC-SHA256 of "callback.<random>" keyed with the shared secret, in hex. execute_current_job checks
-- the MAC before it asks the database anything, so a forged token costs the database nothing; the database keeps
-- only the token's SHA-256 (current_job.callback_hash), so a reader of its tables cannot complete a call.
create function supaqueue._callback_token() returns text
language sql volatile security definer set search_path = '' as $$
  select r.random || '.' || encode(supaqueue._hmac_sha256(supaqueue._shared_secret(),
                                                          convert_to('callback.' || r.random, 'UTF8')), 'hex')
  from (select encode(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()), 'hex') as random) r
$$;

-- Sends one wakeup through pg_net: `body` and the header `Supaqueue-Wakeup: v=2,t=<unix ms>,w=<window ms>,mac=<hex>`,
-- where mac is the HMAC-SHA256, keyed with the Vault secret `supaqueue_secret`, of "v2.<t>.<w>.<body as sent>". The
-- function refuses it after t + w: the window covers pg_net's request timeout, its wait between batches and
-- config.clock_skew_ms. Records it in supaqueue.wakeup and returns pg_net's request id. Fails loudly when Supaqueue is
-- not installed, rather than losing calls.
create function supaqueue._send_wakeup(body jsonb, calls integer, at timestamptz) returns bigint
language plpgsql security definer set search_path = '' as $$
declare
  cfg supaqueue.config;
  secret bytea := supaqueue._shared_secret();
  t bigint := floor(extract(epoch from at) * 1000)::bigint;
  w integer;
  request_id bigint;
begin
  select * into cfg from supaqueue.config;
  perform supaqueue._functions_url();
  w := cfg.request_timeout_ms + 1000 + cfg.clock_skew_ms;
  -- pg_net sends convert_to(body::text, 'UTF8'): the MAC covers exactly those bytes.
  request_id := net.http_post(
    url := cfg.functions_url || '/execute_current_job',
    body := body,
    headers := jsonb_build_object(
      'Content-Type', 'application/json',
      'Supaqueue-Wakeup', format('v=2,t=%s,w=%s,mac=%s', t, w, encode(supaqueue._hmac_sha256(secret,
        convert_to(format('v2.%s.%s.%s', t, w, body::text), 'UTF8')), 'hex'))),
    timeout_milliseconds := cfg.request_timeout_ms);
  insert into supaqueue.wakeup (request_id, sent_at, calls) values (request_id, at, calls);
  return request_id;
end $$;

-- Wakes the function for the calls `ids`, one wakeup ({"v": 2, "ids": [...]}) per 100 of them, and records each
-- call's wakeup and when, for tick() and for diagnosis. Returns the number of requests queued.
create function supaqueue._wake(ids bigint[], at timestamptz) returns integer
language plpgsql security definer set search_path = '' as $$
declare
  chunk bigint[];
  request_id bigint;
  sent integer := 0;
begin
  if coalesce(cardinality(ids), 0) = 0 then
    return 0;
  end if;
  for i in 0 .. (cardinality(ids) - 1) / 100 loop
    chunk := ids[i * 100 + 1 : i * 100 + 100];
    request_id := supaqueue._send_wakeup(jsonb_build_object('v', 2, 'ids', to_jsonb(chunk)), cardinality(chunk), at);
    update supaqueue.current_job c set wakeup_id = request_id, woken_at = at where c.id = any (chunk);
    sent := sent + 1;
  end loop;
  return sent;
end $$;

-- Statement trigger on current_job: remembers the calls this transaction started (a transaction-local setting,
-- which a rolled-back savepoint also rolls back), to wake the function for all of them at once when it commits.
create function supaqueue._remember_started_calls() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  perform supaqueue._functions_url();
  perform set_config('supaqueue.started_calls',
    (coalesce(nullif(current_setting('supaqueue.started_calls', true), ''), '{}')::bigint[]
     || array(select n.id from new_current_jobs n order by n.id))::text, true);
  return null;
end $$;

create trigger current_job_inserted_remembers after insert on supaqueue.current_job
  referencing new table as new_current_jobs
  for each statement execute function supaqueue._remember_started_calls();

-- True for the first current job of a transaction (and again after the wakeup was sent), so the deferred trigger
-- below is queued once per transaction rather than once per row.
create function supaqueue._first_call_of_transaction() returns boolean
language plpgsql set search_path = '' as $$
begin
  if current_setting('supaqueue.wakeup_queued', true) = 'on' then
    return false;
  end if;
  perform set_config('supaqueue.wakeup_queued', 'on', true);
  return true;
end $$;

-- At commit: one wakeup for every call this transaction started and did not claim itself (a report that takes its
-- next calls claims them in the same transaction; they need none). pg_net sends it once the transaction commits.
create function supaqueue._wake_started_calls() returns trigger
language plpgsql security definer set search_path = '' as $$
declare started bigint[] := nullif(current_setting('supaqueue.started_calls', true), '')::bigint[];
begin
  perform set_config('supaqueue.started_calls', '', true);
  perform set_config('supaqueue.wakeup_queued', '', true);
  if started is not null then
    perform supaqueue._wake(array(select c.id from supaqueue.current_job c
                                  where c.id = any (started) and c.claimed_at is null order by c.id),
                            clock_timestamp());
  end if;
  return null;
end $$;

create constraint trigger current_job_wakes_function after insert on supaqueue.current_job
  deferrable initially deferred
  for each row when (supaqueue._first_call_of_transaction())
  execute function supaqueue._wake_started_calls();

-- One claimed call: what execute_current_job needs to make it, as a JSON object. Secret headers and signing keys
-- are read from Vault here, and only for queues that use them. `problem` says why the call must not be made (a
-- secret missing from Vault); the function then reports it as a failed attempt that is not retried.
create function supaqueue._call_details(current_job_id bigint, attempt integer, lease_until timestamptz,
                                        callback_token text, j supaqueue.job, q supaqueue.queue,
                                        cfg supaqueue.config, at timestamptz)
returns jsonb
language plpgsql stable security definer set search_path = '' as $$
declare
  headers jsonb := q.headers;
  url text := coalesce(q.url, cfg.functions_url || '/' || q.function_name);
  missing text;
  keys jsonb;
  problem text;
begin
  if q.url_secret is not null then
    url := (select s.decrypted_secret from vault.decrypted_secrets s where s.name = q.url_secret);
    if url is null then
      problem := format('the URL of queue "%s" is missing from Vault (secret "%s"); the call was not made', q.name,
                        q.url_secret);
      url := 'https://url-secret-missing.invalid/';
    end if;
  end if;
  if q.secret_headers <> '{}' then
    select coalesce(jsonb_object_agg(h.key, s.decrypted_secret) filter (where s.decrypted_secret is not null), '{}'),
           min(format('header "%s" (Vault secret "%s")', h.key, h.value)) filter (where s.decrypted_secret is null)
    into keys, missing
    from jsonb_each_text(q.secret_headers) h
    left join vault.decrypted_secrets s on s.name = h.value;
    headers := headers || keys;
    if missing is not null then
      problem := format('a secret header is missing from Vault: %s; the call was not made', missing);
    end if;
  end if;
  keys := null;
  if q.signing_key_secret is not null then
    -- The current key first; the previous one too while it is honoured, so targets can rotate.
    select jsonb_agg(s.decrypted_secret order by k.ord) into keys
    from (values (1, q.signing_key_secret),
                 (2, case when q.previous_signing_key_until > at then q.previous_signing_key_secret end)) k(ord, name)
    join vault.decrypted_secrets s on s.name = k.name;
    if not exists (select from vault.decrypted_secrets s where s.name = q.signing_key_secret) then
      problem := coalesce(problem || '; ', '') || format(
        'queue "%s" is signed but its signing key (Vault secret "%s") is missing; the call was not sent unsigned',
        q.name, q.signing_key_secret);
    end if;
  end if;
  return jsonb_build_object(
    'current_job_id', current_job_id,
    'attempt', attempt,
    'lease_until', lease_until,
    'max_response_chars', cfg.max_response_chars,
    -- Only queues with a next step need the body in full (up to this bound): see outcome.chain_body.
    'chain_max_bytes', case when q.on_success_queue is not null and q.on_success_payload <> 'payload'
                            then cfg.max_chain_body_bytes end,
    -- Where and with what the target reports a call it took on with a 202 (queues with callback_timeout_ms).
    'callback', case when callback_token is not null then jsonb_build_object(
      'url', cfg.functions_url || '/execute_current_job/callback',
      'token', callback_token,
      'timeout_ms', q.callback_timeout_ms) end,
    'job', jsonb_build_object('id', j.id, 'payload', j.payload, 'headers', j.headers),
    'queue', jsonb_build_object(
      'name', q.name,
      'url', url,
      'is_function', q.function_name is not null,
      'method', q.method,
      'headers', headers,
      'timeout_ms', q.timeout_ms,
      'success_codes', q.success_codes,
      'retry_codes', q.retry_codes,
      'signed', q.signing_key_secret is not null,
      'signing_keys', coalesce(keys, '[]')),
    'problem', problem);
end $$;

-- Claims the calls `ids` that are in flight, not claimed before and whose lease is live (and, with
-- `max_timeout_ms`, whose queue's timeout fits in it), in one statement: marks them claimed, makes sure their lease
-- leaves the function the call's timeout and at least half the grace from now, and returns their details, in id order. A call is claimed at
-- most once: a replayed, repeated or forged wakeup gets nothing. Rows another transaction holds (a concurrent claim,
-- tick reaping it) are skipped, never waited for.
create function supaqueue._claim(ids bigint[], at timestamptz, max_timeout_ms integer default null) returns jsonb
language plpgsql security definer set search_path = '' set plan_cache_mode = force_generic_plan as $$
declare
  cfg supaqueue.config;
  calls jsonb;
begin
  if coalesce(cardinality(ids), 0) = 0 then
    return '[]';
  end if;
  select * into cfg from supaqueue.config;
  with claimable as (
    -- A queue taking callbacks gets a fresh token for each call, its hash kept on the call.
    select c.id, case when q.callback_timeout_ms is not null then supaqueue._callback_token() end as token
    from supaqueue.current_job c
    join supaqueue.job j on j.id = c.job_id
    join supaqueue.queue q on q.id = j.queue_id
    where c.id = any (ids) and c.claimed_at is null and c.lease_until > at
      and (max_timeout_ms is null or q.timeout_ms <= max_timeout_ms)
    order by c.id
    for update of c skip locked
  ),
  claimed as (
    update supaqueue.current_job c
    set claimed_at = at,
        -- A call claimed soon after it started keeps its lease, so the update changes no indexed column and stays
        -- HOT (lease_until is indexed for tick); one claimed late gets the time it needs from now.
        lease_until = case
          when c.lease_until < at + make_interval(secs => (q.timeout_ms + cfg.lease_grace_ms / 2) / 1000.0)
          then at + make_interval(secs => (q.timeout_ms + cfg.lease_grace_ms) / 1000.0)
          else c.lease_until end,
        callback_hash = pg_catalog.sha256(convert_to(l.token, 'UTF8'))
    from claimable l, supaqueue.job j, supaqueue.queue q
    where c.id = l.id and j.id = c.job_id and q.id = j.queue_id
    returning c.id, c.job_id, c.attempt, c.lease_until, l.token
  )
  -- The details are built from what the update returned: a data-modifying CTE's changes are not visible to the
  -- other parts of the same statement.
  select coalesce(jsonb_agg(supaqueue._call_details(c.id, c.attempt, c.lease_until, c.token, j, q, cfg, at) order by c.id),
                  '[]') into calls
  from claimed c
  join supaqueue.job j on j.id = c.job_id
  join supaqueue.queue q on q.id = j.queue_id;
  return calls;
end $$;

-- What execute_current_job calls when a wakeup arrives: claims those of `ids` that are still waiting for it (see
-- _claim) and returns their details as a JSON array. VOLATILE, since it writes: PostgREST runs STABLE functions in a
-- read-only transaction.
-- With `probe` (a probe's wakeup, see supaqueue.probe()), it also marks that probe reached: the whole loop works.
create function supaqueue.claim_current_jobs(ids bigint[], probe uuid default null) returns jsonb
language plpgsql volatile security definer set search_path = '' as $$
begin
  if ids is null or cardinality(ids) > 1000 then
    raise exception 'supaqueue: claim_current_jobs takes an array of at most 1000 current-job ids'
      using hint = 'A wakeup carries at most 100 ids.';
  end if;
  if probe is not null then
    update supaqueue.probe p set reached_at = clock_timestamp()
    where p.id = claim_current_jobs.probe and p.reached_at is null;
  end if;
  return supaqueue._claim(ids, clock_timestamp());
end $$;

-- Sends a probe through the whole loop: a wakeup naming no call, which execute_current_job claims with the probe's
-- id, marking it reached (supaqueue.probe.reached_at) through the same RPC it claims calls with. Nothing is called.
-- Returns the probe's id; its wakeup's answer is in net._http_response (supaqueue.probe.wakeup_id) once pg_net has
-- it. The installer and `supaqueue doctor` send one after each change and say which link is broken when it does not
-- come back.
create function supaqueue.probe() returns uuid
language plpgsql volatile security definer set search_path = '' as $$
declare
  id uuid := gen_random_uuid();
begin
  insert into supaqueue.probe (id, wakeup_id)
  values (id, supaqueue._send_wakeup(jsonb_build_object('v', 2, 'ids', '[]'::jsonb, 'probe', id), 0, clock_timestamp()));
  return id;
end $$;

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

-- The status a job in flight moves to when its attempt ends. A job cancelled while its call was in flight stays
-- cancelled; a released call goes back to pending; a failure is retried until the queue's max_attempts, unless the
-- target said not to retry.
create function supaqueue._next_status(current supaqueue.job_status, succeeded boolean, retryable boolean,
                                       attempts integer, max_attempts integer, released boolean)
returns supaqueue.job_status
language sql immutable set search_path = '' as $$
  select case
    when current <> 'in_progress' then current
    when released then 'pending'
    when succeeded then 'successful'
    when not retryable or attempts >= max_attempts then 'failed'
    else 'pending'
  end::supaqueue.job_status
$$;

-- Enqueues a job that failed for good into its queue's dead-letter queue, with what a handler needs to act on it.
-- Recording the outcome must never fail because of this: a dead-letter queue that has gone missing is skipped with a
-- warning, the error is cut to 2,000 characters, and a payload too large to be copied within max_payload_bytes is
-- left out (the failed job keeps it; job_id names it).
create function supaqueue._dead_letter(q supaqueue.queue, j supaqueue.job, status_code integer, error text)
returns void
language plpgsql security definer set search_path = '' as $$
declare max_bytes integer := (select c.max_payload_bytes from supaqueue.config c);
begin
  if not exists (select from supaqueue.queue d where d.name = q.dead_letter_queue) then
    raise warning 'supaqueue: dead-letter queue "%" of queue "%" does not exist; job % was not dead-lettered',
      q.dead_letter_queue, q.name, j.id;
    return;
  end if;
  perform supaqueue.enqueue(q.dead_letter_queue, jsonb_build_object(
    'job_id', j.id, 'queue', q.name, 'attempts', j.attempts,
    'last_status_code', status_code, 'last_error', left(error, 2000))
    || case when octet_length(j.payload::text) <= max_bytes - 4096 then jsonb_build_object('payload', j.payload)
            else jsonb_build_object('payload_omitted', 'larger than max_payload_bytes; see the failed job') end);
end $$;

-- Why `value`, item `ord` of a step, cannot be a payload of `target` (not an object or array, not an object for a
-- GET/DELETE queue, larger than max_payload_bytes, a key_field value that is no key), or null when it can.
create function supaqueue._payload_problem(target supaqueue.queue, value jsonb, ord bigint, max_payload_bytes integer)
returns text
language sql stable set search_path = '' as $$
  select case
    when jsonb_typeof(value) not in ('object', 'array')
      or (target.method in ('GET', 'DELETE') and jsonb_typeof(value) <> 'object')
    then format('item %s is %s, and a payload for queue "%s" must be %s', ord, jsonb_typeof(value), target.name,
                case when target.method in ('GET', 'DELETE') then 'a JSON object' else 'a JSON object or array' end)
    when octet_length(value::text) > max_payload_bytes
    then format('item %s has a payload of %s bytes, more than max_payload_bytes (%s)', ord, octet_length(value::text),
                max_payload_bytes)
    when jsonb_typeof(value) = 'object' and target.key_field is not null
      and octet_length(value ->> target.key_field) not between 1 and 256
    then format('item %s has key_field "%s" of %s bytes; a key is 1 to 256 bytes', ord, target.key_field,
                octet_length(value ->> target.key_field))
  end
$$;

-- The payloads of the jobs a successful job of `q` enqueues into `target` (its on_success queue, null when that queue
-- has gone), in order, or one row with the error that stops the step instead: a response that is empty, larger than
-- config.max_chain_body_bytes or not JSON, a missing field, no array to fan out or more than fan_out_max items, or a
-- next payload the target would refuse (not an object or array, not an object for merged or a GET/DELETE queue,
-- larger than max_payload_bytes, a key_field value that is no key). A step is all or nothing: no job is enqueued
-- when any item is at fault, and the completion that records the success never fails because of it.
create function supaqueue._next_payloads(q supaqueue.queue, target supaqueue.queue, payload jsonb, body text,
                                         cfg supaqueue.config)
returns table (ord bigint, next_payload jsonb, error text)
-- One row for most steps (the planner's default of 1,000 once made it sort the whole attempt table per report).
language plpgsql stable rows 1 set search_path = '' as $$
declare
  answer jsonb;
  nexts jsonb;
  bad text;
begin
  if target.id is null then
    return query select 1::bigint, null::jsonb, format('on_success: queue "%s" does not exist; the call is not repeated',
                                                       q.on_success_queue);
    return;
  end if;
  if q.on_success_payload = 'payload' then
    nexts := jsonb_build_array(payload);
  elsif body is null or body = '' then
    bad := 'the response has no body, and on_success needs JSON';
  elsif octet_length(body) > cfg.max_chain_body_bytes then
    bad := format('the response is larger than max_chain_body_bytes (%s bytes)', cfg.max_chain_body_bytes);
  else
    begin
      answer := body::jsonb;
    exception when others then
      bad := format('the response is not JSON (%s)', sqlerrm);
    end;
  end if;
  if bad is null and nexts is null and q.on_success_field is not null then
    if jsonb_typeof(answer) = 'object' and answer ? q.on_success_field then
      answer := answer -> q.on_success_field;
    else
      bad := format('the response has no field "%s"', q.on_success_field);
    end if;
  end if;
  if bad is null and nexts is null and q.fan_out and jsonb_typeof(answer) <> 'array' then
    bad := format('fan_out needs a JSON array, the response gave %s', jsonb_typeof(answer));
  elsif bad is null and nexts is null and q.fan_out and jsonb_array_length(answer) > q.fan_out_max then
    bad := format('the response has %s items, more than fan_out_max (%s)', jsonb_array_length(answer), q.fan_out_max);
  elsif bad is null and nexts is null and q.on_success_payload = 'merged' and jsonb_typeof(payload) <> 'object' then
    bad := 'on_success_payload ''merged'' needs the original payload to be a JSON object';
  end if;
  -- The common step, one job from the response (or its field), is checked without a query.
  if bad is null and nexts is null and not q.fan_out and q.on_success_payload = 'response' then
    bad := supaqueue._payload_problem(target, answer, 1, cfg.max_payload_bytes);
    if bad is null then
      return query select 1::bigint, answer, null::text;
      return;
    end if;
  end if;
  if bad is null and nexts is null then
    select format('item %s is %s, and on_success_payload ''merged'' needs JSON objects', e.ord, jsonb_typeof(e.value))
    into bad
    from jsonb_array_elements(case when q.fan_out then answer else jsonb_build_array(answer) end)
         with ordinality e(value, ord)
    where q.on_success_payload = 'merged' and jsonb_typeof(e.value) <> 'object'
    order by e.ord limit 1;
    select jsonb_agg(case when q.on_success_payload = 'merged' then payload || e.value else e.value end order by e.ord)
    into nexts
    from jsonb_array_elements(case when q.fan_out then answer else jsonb_build_array(answer) end)
         with ordinality e(value, ord);
  end if;
  if bad is null then
    -- _payload_problem's conditions, inline: a function that sets search_path is never inlined, and calling it for
    -- every item of a fan-out cost more than the step's insert. It words the first item at fault.
    select supaqueue._payload_problem(target, e.value, e.ord, cfg.max_payload_bytes) into bad
    from jsonb_array_elements(coalesce(nexts, '[]')) with ordinality e(value, ord)
    where jsonb_typeof(e.value) not in ('object', 'array')
       or (target.method in ('GET', 'DELETE') and jsonb_typeof(e.value) <> 'object')
       or octet_length(e.value::text) > cfg.max_payload_bytes
       or (jsonb_typeof(e.value) = 'object' and target.key_field is not null
           and octet_length(e.value ->> target.key_field) not between 1 and 256)
    order by e.ord limit 1;
  end if;
  if bad is not null then
    return query select 1::bigint, null::jsonb, 'on_success: ' || bad || '; the call is not repeated';
    return;
  end if;
  return query select e.ord, e.value, null::text from jsonb_array_elements(nexts) with ordinality e(value, ord);
end $$;

-- Enqueues the next jobs of `job_ids` (jobs that just succeeded on queues with on_success, with the bodies their
-- calls answered), in one insert, each naming its parent; records the error of each step that failed on the job
-- (last_error; its status stays successful) and on its attempt. Returns the ids of the queues it enqueued into.
-- The caller defers their dispatch (supaqueue.defer_dispatch) and dispatches them in queue-id order.
create function supaqueue._on_success(job_ids uuid[], bodies text[])
returns bigint[]
language plpgsql security definer set search_path = '' as $$
declare
  cfg supaqueue.config;
  targets bigint[];
  failed_ids uuid[];
  failed_errors text[];
  failed_attempts integer[];
begin
  select * into cfg from supaqueue.config;
  with steps as materialized (
    select j.id as parent_id, j.attempts, t.id as target_id, t.key_field, n.ord, n.next_payload, n.error
    from unnest(job_ids, bodies) c(id, body)
    join supaqueue.job j on j.id = c.id
    join supaqueue.queue q on q.id = j.queue_id
    left join supaqueue.queue t on t.name = q.on_success_queue
    cross join lateral supaqueue._next_payloads(q, t, j.payload, c.body, cfg) n
  ),
  added as (
    insert into supaqueue.job (queue_id, payload, key, parent_id)
    select s.target_id, s.next_payload, s.next_payload ->> s.key_field, s.parent_id
    from steps s where s.error is null
    order by s.parent_id, s.ord
    returning queue_id
  )
  select array(select distinct a.queue_id from added a order by 1),
         array_agg(s.parent_id) filter (where s.error is not null),
         array_agg(s.error) filter (where s.error is not null),
         array_agg(s.attempts) filter (where s.error is not null)
  into targets, failed_ids, failed_errors, failed_attempts
  from steps s;
  -- The steps that failed are recorded on their jobs and attempts, each found by its key.
  if failed_ids is not null then
    update supaqueue.job j set last_error = f.error
    from unnest(failed_ids, failed_errors) f(id, error) where j.id = f.id;
    update supaqueue.attempt a set error = f.error
    from unnest(failed_ids, failed_errors, failed_attempts) f(id, error, attempt)
    where a.job_id = f.id and a.attempt = f.attempt;
  end if;
  return targets;
end $$;

-- Moves on the jobs waiting for `parent_ids` (enqueue's `after`), which just finished. When they succeeded, each
-- waiting job counts them down and the ones at zero become pending (due at once); otherwise the waiting jobs are
-- cancelled, naming the job that failed or was cancelled, and so are the jobs waiting for those, level by level
-- (all of them locked first). Waiting jobs are locked in id order and never read their siblings. Returns the queues
-- of jobs made pending, for the caller to dispatch.
create function supaqueue._after_finished(parent_ids uuid[], succeeded boolean, at timestamptz)
returns bigint[]
language plpgsql security definer set search_path = '' as $$
declare
  waiting uuid[];
  queues bigint[];
begin
  if parent_ids is null
     or not exists (select from supaqueue.job_after a where a.parent_id = any (parent_ids)) then
    return '{}';
  end if;
  if succeeded then
    waiting := array(select j.id from supaqueue.job j
                     where j.id in (select a.job_id from supaqueue.job_after a where a.parent_id = any (parent_ids))
                       and j.status = 'waiting'
                     order by j.id for update);
    with counted as (
      update supaqueue.job j set
        waiting_for = j.waiting_for - x.n,
        status = case when j.waiting_for - x.n = 0 then 'pending' else 'waiting' end::supaqueue.job_status,
        run_at = case when j.waiting_for - x.n = 0 then greatest(j.run_at, at) else j.run_at end
      from (select a.job_id, count(*)::integer as n from supaqueue.job_after a
            where a.parent_id = any (parent_ids) and a.job_id = any (waiting) group by a.job_id) x
      where j.id = x.job_id
      returning j.queue_id, j.status
    )
    select array(select distinct c.queue_id from counted c where c.status = 'pending' order by 1) into queues;
    return queues;
  end if;
  -- Every waiting job downstream is locked first, in id order, in one statement: two cascades that meet (a job that
  -- waits for jobs of both) would otherwise lock their levels in different orders and deadlock.
  perform from supaqueue.job j
  where j.id in (with recursive down(id) as (
                   select a.job_id from supaqueue.job_after a where a.parent_id = any (parent_ids)
                   union
                   select a.job_id from supaqueue.job_after a join down d on a.parent_id = d.id)
                 select d.id from down d)
    and j.status = 'waiting'
  order by j.id for update;
  loop
    waiting := array(select j.id from supaqueue.job j
                     where j.id in (select a.job_id from supaqueue.job_after a where a.parent_id = any (parent_ids))
                       and j.status = 'waiting'
                     order by j.id for update);
    exit when cardinality(waiting) = 0;
    update supaqueue.job j set status = 'cancelled', finished_at = at, last_error = (
      select format('cancelled: job %s, which it waited for, %s', p.id,
                    case when p.status = 'failed' then 'failed for good' else 'was cancelled' end)
      from supaqueue.job_after a join supaqueue.job p on p.id = a.parent_id
      where a.job_id = j.id and a.parent_id = any (parent_ids)
      order by p.id limit 1)
    where j.id = any (waiting);
    parent_ids := waiting;
  end loop;
  return '{}';
end $$;

-- Validates a JSON array of outcomes (objects named like supaqueue.outcome's fields) and returns them as rows.
create function supaqueue._outcomes(outcomes jsonb) returns supaqueue.outcome[]
language plpgsql immutable set search_path = '' as $$
declare bad jsonb;
begin
  if outcomes is null or jsonb_typeof(outcomes) <> 'array' then
    raise exception 'supaqueue: outcomes must be a JSON array, not %', coalesce(jsonb_typeof(outcomes), 'null')
      using hint = 'Pass [{"current_job_id": 17, "succeeded": true, "status_code": 200}, ...].';
  end if;
  select e into bad from jsonb_array_elements(outcomes) e
  where jsonb_typeof(e) <> 'object'
     or not coalesce(jsonb_typeof(e -> 'current_job_id') = 'number'
                     or (jsonb_typeof(e -> 'current_job_id') = 'string' and e ->> 'current_job_id' ~ '^[0-9]{1,18}$'),
                     false)
     or jsonb_typeof(e -> 'succeeded') is distinct from 'boolean'
     or coalesce(jsonb_typeof(e -> 'released'), 'null') not in ('null', 'boolean')
  limit 1;
  if bad is not null then
    raise exception 'supaqueue: invalid outcome %: each needs a numeric "current_job_id" and a boolean "succeeded"',
      left(bad::text, 200)
      using hint = 'Optional: status_code, response_body, error, duration_ms, retryable, retry_after_ms, released.';
  end if;
  return array(select o from jsonb_populate_recordset(null::supaqueue.outcome, outcomes) o);
end $$;

-- A target told a queue to slow down: with slow_down, a 429 or 503 halves the calls per second it may start (once
-- a second at most: the calls in flight when it first answered so are one episode), from its rate limit or, without
-- one, from the calls it had in flight (an estimate of its pace per second); the rate then grows back by a thirtieth
-- of that ceiling every second (tick() drops the throttle when it is back). With honor_retry_after = 'queue', a
-- Retry-After holds the queue's new calls until then. Never below one call every ten seconds.
create function supaqueue._slow_down(q supaqueue.queue, halve boolean, retry_after_ms integer, at timestamptz)
returns void
language plpgsql security definer set search_path = '' as $$
declare
  t supaqueue.throttle;
  top double precision;
begin
  insert into supaqueue.throttle (queue_id, changed_at) values (q.id, at) on conflict (queue_id) do nothing;
  select * into t from supaqueue.throttle where queue_id = q.id for update;
  if halve and q.slow_down and (t.decreased_at is null or t.decreased_at <= at - interval '1 second') then
    top := coalesce(t.ceiling, q.rate_limit_per_second,
                        greatest(1, (select count(*) from supaqueue.worker w where w.queue_id = q.id and w.locked)));
    update supaqueue.throttle set
      rate = greatest(0.1, coalesce(supaqueue._throttled_rate(t, at), top) / 2),
      ceiling = top,
      step = greatest(0.1, top / 30),
      changed_at = at,
      decreased_at = at
    where queue_id = q.id;
  end if;
  if retry_after_ms > 0 and q.honor_retry_after = 'queue' then
    update supaqueue.throttle
    set paused_until = greatest(paused_until, at + make_interval(secs => retry_after_ms / 1000.0))
    where queue_id = q.id;
  end if;
end $$;

-- Finishes the attempts named by `outcomes` that are still in flight, as a set: deletes their current_job rows,
-- records each attempt, sets each job's status (see _next_status; a retry waits the queue's backoff, or a later
-- Retry-After), dead-letters the jobs that failed for good, removes retiring workers and hands every other worker
-- its queue's next due job (or unlocks it). Job statuses are written before any worker moves on, so a job sent
-- back to pending is seen by the next dispatch. Returns the ids of the current jobs it finished (and of the 202s now
-- waiting for their callback); the others were no longer in flight (a repeated or late report, or a lease
-- that already expired) and change nothing. The one path of every outcome: reported by the function, reaped by
-- tick() when a lease expires, or reported by the target's callback (complete_callback).
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
  chain_ids uuid[];
  chain_bodies text[];
  succeeded_ids uuid[];
  ended_ids uuid[];
  other_queues bigint[] := '{}';
  -- Per finished call of a keyed job: its queue, key, and the job when it failed for good on a key that holds.
  key_queues bigint[];
  key_names text[];
  key_held_by uuid[];
  -- Per finished call a target told to slow down (queues that opted in): its queue, whether to halve, Retry-After.
  told_queues bigint[];
  told_halve boolean[];
  told_retry_after integer[];
  accepted bigint[];
begin
  -- A target that answered 202 to a call of a queue taking callbacks has taken the work on: the call stays in flight
  -- (its worker busy, its key held), its lease callback_timeout_ms from now, until its callback reports the outcome
  -- (complete_callback). Every named call is locked first, in id order, as the delete below locks them.
  if exists (select from unnest(outcomes) o where o.status_code = 202 and o.succeeded) then
    perform from supaqueue.current_job l
    where l.id = any (array(select o.current_job_id from unnest(outcomes) o)) order by l.id for update;
    with taken as (
      update supaqueue.current_job c
      set accepted_at = at, lease_until = at + make_interval(secs => q.callback_timeout_ms / 1000.0)
      from supaqueue.job j, supaqueue.queue q
      where c.id = any (array(select o.current_job_id from unnest(outcomes) o
                              where o.status_code = 202 and o.succeeded and not coalesce(o.released, false)))
        and c.callback_hash is not null and c.accepted_at is null
        and j.id = c.job_id and q.id = j.queue_id and q.callback_timeout_ms is not null
      returning c.id
    )
    select array_agg(t.id) into accepted from taken t;
    -- A 202 repeated for a call already waiting for its callback changes nothing (it must not finish the call).
    outcomes := array(select o from unnest(outcomes) o
                      where o.current_job_id <> all (coalesce(accepted, '{}'))
                        and not (o.status_code = 202 and o.succeeded and exists (
                          select from supaqueue.current_job c
                          where c.id = o.current_job_id and c.accepted_at is not null)));
  end if;

  with gone as (
    delete from supaqueue.current_job c
    where c.id in (select l.id from supaqueue.current_job l
                   where l.id = any (array(select o.current_job_id from unnest(outcomes) o))
                   order by l.id for update)
    returning c.*
  )
  select array_agg(g order by g.id) into finished from gone g;
  if finished is null then
    return coalesce(accepted, '{}');
  end if;

  -- One statement records every attempt and moves every job on. The status is decided on the job row being
  -- updated, so a cancel() that commits meanwhile is seen.
  with f as (
    select c.id, c.job_id, c.worker_id, c.attempt, c.started_at, o.succeeded, o.status_code,
           o.response_body, left(o.error, 2000) as error, o.duration_ms, coalesce(o.retryable, true) as retryable,
           o.retry_after_ms, coalesce(o.released, false) and not o.succeeded as released,
           coalesce(o.chain_body, o.response_body) as chain_body
    from unnest(finished) c
    join (select distinct on (o.current_job_id) o.* from unnest(outcomes) with ordinality o
          order by o.current_job_id, o.ordinality) o on o.current_job_id = c.id
  ),
  recorded as (
    insert into supaqueue.attempt (job_id, attempt, worker_id, started_at, finished_at, succeeded, status_code,
                                   response_body, error, duration_ms)
    select f.job_id, f.attempt, f.worker_id, f.started_at, at, f.succeeded, f.status_code,
           left(f.response_body, max_chars), f.error, f.duration_ms
    from f
  ),
  moved as (
    update supaqueue.job j set
      status = supaqueue._next_status(j.status, f.succeeded, f.retryable, j.attempts, q.max_attempts, f.released),
      -- A released call's attempt does not count, and it may go again at once.
      attempts = case when f.released and j.status = 'in_progress' then greatest(j.attempts - 1, 0)
                      else j.attempts end,
      run_at = case
        when f.released and j.status = 'in_progress' then at
        when supaqueue._next_status(j.status, f.succeeded, f.retryable, j.attempts, q.max_attempts, f.released)
             = 'pending'
        then at + greatest(supaqueue.backoff_delay(j.attempts, q.backoff_base_ms, q.backoff_max_ms),
                           make_interval(secs => coalesce(f.retry_after_ms, 0) / 1000.0))
        else j.run_at end,
      last_status_code = f.status_code,
      last_error = case when f.succeeded then null else f.error end,
      finished_at = case
        when supaqueue._next_status(j.status, f.succeeded, f.retryable, j.attempts, q.max_attempts, f.released)
             = 'pending'
        then null else at end
    from f, supaqueue.queue q
    where j.id = f.job_id and q.id = j.queue_id
    returning j.id, j.status, j.queue_id, j.key, q.dead_letter_queue, q.on_success_queue, q.hold_key_on_failure,
              q.slow_down or q.honor_retry_after = 'queue' as told, f.status_code, f.error, f.chain_body,
              f.retry_after_ms, f.released
  )
  select array_agg(m.id) filter (where m.status = 'failed' and m.dead_letter_queue is not null),
         array_agg(m.status_code) filter (where m.status = 'failed' and m.dead_letter_queue is not null),
         array_agg(m.error) filter (where m.status = 'failed' and m.dead_letter_queue is not null),
         -- Only a job that was in flight becomes successful here (_next_status keeps any other status).
         array_agg(m.id order by m.id) filter (where m.status = 'successful' and m.on_success_queue is not null),
         array_agg(m.chain_body order by m.id) filter (where m.status = 'successful' and m.on_success_queue is not null),
         array_agg(m.id order by m.id) filter (where m.status = 'successful'),
         array_agg(m.id order by m.id) filter (where m.status = 'failed'),
         -- What the steps below need, gathered here so that they read no job or queue row again.
         array_agg(m.queue_id) filter (where m.key is not null),
         array_agg(m.key) filter (where m.key is not null),
         array_agg(case when m.status = 'failed' and m.hold_key_on_failure then m.id end) filter (where m.key is not null),
         array_agg(m.queue_id) filter (where m.told and not m.released
                                         and (m.status_code in (429, 503) or m.retry_after_ms > 0)),
         array_agg(coalesce(m.status_code in (429, 503), false)) filter (where m.told and not m.released
                                         and (m.status_code in (429, 503) or m.retry_after_ms > 0)),
         array_agg(m.retry_after_ms) filter (where m.told and not m.released
                                         and (m.status_code in (429, 503) or m.retry_after_ms > 0))
  into dead_ids, dead_codes, dead_errors, chain_ids, chain_bodies, succeeded_ids, ended_ids,
       key_queues, key_names, key_held_by, told_queues, told_halve, told_retry_after
  from moved m;

  -- Back-pressure from the targets (only queues that opted in; queue-id order, see the lock order).
  for r in
    select q as queue, bool_or(t.halve) as halve, max(t.retry_after_ms) as retry_after_ms
    from unnest(told_queues, told_halve, told_retry_after) t(queue_id, halve, retry_after_ms)
    join supaqueue.queue q on q.id = t.queue_id
    group by q.id order by q.id
  loop
    perform supaqueue._slow_down(r.queue, r.halve, r.retry_after_ms, at);
  end loop;

  -- The calls of keyed jobs free their key (rows locked in key order, see the lock order); an ordered key that holds
  -- on failure keeps the job that failed for good.
  -- One key at a time by its primary key, in key order (a join was planned, generically, as a scan of every key).
  for r in
    select k.queue_id, k.key, count(*)::integer as n, (array_agg(k.held_by) filter (where k.held_by is not null))[1] as failed
    from unnest(key_queues, key_names, key_held_by) k(queue_id, key, held_by)
    group by k.queue_id, k.key order by k.queue_id, k.key
  loop
    update supaqueue.job_key jk set in_flight = greatest(jk.in_flight - r.n, 0), held_by = coalesce(r.failed, jk.held_by)
    where jk.queue_id = r.queue_id and jk.key = r.key;
  end loop;

  -- Jobs enqueued here (dead letters, on_success steps) are not dispatched by the insert trigger: their queues are
  -- dispatched below with the own workers' queues, all in queue-id order, so that this completion takes rate buckets
  -- in the one order every dispatch of several queues takes them (see the lock order).
  if dead_ids is not null or chain_ids is not null then
    perform set_config('supaqueue.defer_dispatch', 'on', true);
    for i in 1 .. coalesce(cardinality(dead_ids), 0) loop
      select * into dead_job from supaqueue.job where id = dead_ids[i];
      select * into dead_queue from supaqueue.queue where id = dead_job.queue_id;
      perform supaqueue._dead_letter(dead_queue, dead_job, dead_codes[i], dead_errors[i]);
      other_queues := other_queues || (select d.id from supaqueue.queue d where d.name = dead_queue.dead_letter_queue);
    end loop;
    if chain_ids is not null then
      other_queues := other_queues || supaqueue._on_success(chain_ids, chain_bodies);
    end if;
    perform set_config('supaqueue.defer_dispatch', '', true);
  end if;
  -- Jobs waiting for these (enqueue's after): counted down, or cancelled. Their queues are dispatched below.
  other_queues := other_queues || supaqueue._after_finished(succeeded_ids, true, at);
  perform supaqueue._after_finished(ended_ids, false, at);

  worker_ids := array(select c.worker_id from unnest(finished) c);
  delete from supaqueue.worker w where w.id = any (worker_ids) and w.retiring;
  for r in
    select coalesce(o.queue_id, x.queue_id) as queue_id, o.workers, x.queue_id is not null as other
    from (select w.queue_id, array_agg(w.id order by w.id) as workers
          from supaqueue.worker w where w.id = any (worker_ids)
          group by w.queue_id) o
    full join (select distinct u.queue_id from unnest(other_queues) u(queue_id) where u.queue_id is not null) x
      on x.queue_id = o.queue_id
    order by 1
  loop
    if r.workers is not null then
      perform supaqueue._dispatch(r.queue_id, null, r.workers, at);
    end if;
    if r.other then
      perform supaqueue._dispatch_free_workers(array[r.queue_id], at);
    end if;
  end loop;

  return array(select c.id from unnest(finished) c) || coalesce(accepted, '{}');
end $$;

-- Records many outcomes at once: a JSON array of objects named like supaqueue.outcome's fields
-- ({"current_job_id": 17, "succeeded": true, "status_code": 200, ...}), finished in one transaction as a set.
-- Returns the ids of the current jobs it finished; the others were no longer in flight and change nothing. The calls
-- it starts for the freed workers are sent a wakeup when the transaction commits.
create function supaqueue.complete_current_jobs(outcomes jsonb)
returns bigint[]
language sql volatile security definer set search_path = '' as $$
  select supaqueue._complete(supaqueue._outcomes(outcomes), now())
$$;

-- What execute_current_job reports with: records the outcomes like complete_current_jobs and claims, among the
-- calls this transaction started for the freed workers, those whose queue's timeout fits in `claim_within_ms` (how
-- long the reporting instance may still run a call), and hands them back: a busy queue goes on in the same function
-- instance without a wakeup through pg_net. The calls it does not claim (0: none) are woken through pg_net at
-- commit, as usual. Returns {"finished": [ids], "calls": [details]}.
create function supaqueue.complete_and_claim(outcomes jsonb, claim_within_ms integer default 0)
returns jsonb
language plpgsql volatile security definer set search_path = '' as $$
declare
  finished bigint[] := supaqueue._complete(supaqueue._outcomes(outcomes), now());
  started bigint[];
begin
  if claim_within_ms > 0 then
    started := nullif(current_setting('supaqueue.started_calls', true), '')::bigint[];
  end if;
  return jsonb_build_object('finished', to_jsonb(finished),
                            'calls', supaqueue._claim(coalesce(started, '{}'), clock_timestamp(), claim_within_ms));
end $$;

-------------------------------------------------------------------------------------------------------------------
-- Callbacks: calls longer than an edge worker lives
-------------------------------------------------------------------------------------------------------------------

-- The outcome a target reports for a call it took on with a 202 (a queue with callback_timeout_ms), through
-- execute_current_job's /callback, which checks the token's MAC first (see _callback_token): `token` is the call's
-- Supaqueue-Callback-Token, `status_code` how the work ended, judged like a call's answer (success_codes, retry_codes:
-- a retryable failure runs the call again after the backoff), `body` its result (what an on_success step takes) and
-- `error` a message for a failure. A 202 is a heartbeat: the call stays in flight, its lease callback_timeout_ms from
-- now. Returns 'recorded', 'extended' (a heartbeat), or 'unknown' when no call in flight has this token (its outcome
-- was already recorded, its lease ran out, it was cancelled, or the token was never issued): a late or repeated
-- callback changes nothing. A callback may come before execute_current_job has reported the 202; the 202 then finds
-- the call finished and changes nothing either.
create function supaqueue.complete_callback(token text, status_code integer, body text default null,
                                            error text default null)
returns text
language plpgsql volatile security definer set search_path = '' as $$
declare
  c supaqueue.current_job;
  q supaqueue.queue;
  at timestamptz := now();
  ok boolean;
begin
  if status_code is null or status_code not between 100 and 599 then
    raise exception 'supaqueue: a callback''s status_code must be an HTTP status from 100 to 599, not %',
      coalesce(status_code::text, 'null')
      using hint = 'Report the status the work ended with: 200 for success, 500 for a failure to retry, 202 while still working.';
  end if;
  if token is null or length(token) > 256 then
    return 'unknown';
  end if;
  select * into c from supaqueue.current_job cj
  where cj.callback_hash = pg_catalog.sha256(convert_to(token, 'UTF8')) for update;
  if not found then
    return 'unknown';
  end if;
  select q2.* into q from supaqueue.job j join supaqueue.queue q2 on q2.id = j.queue_id where j.id = c.job_id;
  if status_code = 202 then
    update supaqueue.current_job cj set accepted_at = coalesce(cj.accepted_at, at),
      lease_until = at + make_interval(secs => coalesce(q.callback_timeout_ms, q.timeout_ms) / 1000.0)
    where cj.id = c.id;
    return 'extended';
  end if;
  ok := case when q.success_codes is not null then status_code = any (q.success_codes)
             else status_code between 200 and 299 end;
  perform supaqueue._complete(array[row(
    c.id, ok, status_code, body,
    case when not ok then format('HTTP %s, reported by the target''s callback', status_code)
                          || coalesce(': ' || left(error, 1000), '') end,
    least(extract(epoch from at - c.started_at) * 1000, 2147483647)::integer,
    not ok and case when q.retry_codes is not null then status_code = any (q.retry_codes)
                    else status_code in (408, 429) or status_code >= 500 end,
    null, false, body)::supaqueue.outcome], at);
  return 'recorded';
end $$;

-------------------------------------------------------------------------------------------------------------------
-- Recovery and housekeeping
-------------------------------------------------------------------------------------------------------------------

-- Reaps expired leases (each a failed, retryable attempt; one never claimed says so, with its last wakeup's answer),
-- wakes the function again for calls it has not claimed within config.rewake_after_ms of their last wakeup (pg_net
-- never retries, its queue is lost on a crash and any role may delete from it; no attempt is counted), dispatches
-- every free worker whose queue has a due job (delayed jobs, backoffs that ended, jobs missed by a lost wakeup), and
-- deletes finished jobs older than config.retention. Safe to run from several sessions at once. Scheduled every
-- second by pg_cron when present.
create function supaqueue.tick(at timestamptz default clock_timestamp())
returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  cfg supaqueue.config;
  expired supaqueue.outcome[];
  unclaimed bigint[];
  reaped integer;
  rewoken integer;
  started integer;
  deleted integer;
begin
  select * into cfg from supaqueue.config;
  with lapsed as (
    select c.id, c.claimed_at, c.wakeup_id, c.woken_at, c.accepted_at from supaqueue.current_job c
    where c.lease_until < at
    order by c.lease_until limit 1000 for update skip locked
  ),
  -- What the last wakeup of a never-claimed call was answered, for its error. net._http_response has an index on
  -- `created` only, so the answer is looked for among those written in the moments after the wakeup, and for at most
  -- 10 wakeups a tick: a function that is down costs tick little.
  answers as (
    select w.wakeup_id, a.status_code, a.message
    from (select distinct l.wakeup_id, l.woken_at from lapsed l
          where l.claimed_at is null and l.wakeup_id is not null order by l.wakeup_id limit 10) w
    cross join lateral (
      select r.status_code, left(coalesce(r.error_msg, r.content, ''), 200) as message
      from net._http_response r
      where r.created >= w.woken_at
        and r.created <= w.woken_at + make_interval(secs => (2 * cfg.request_timeout_ms + 5000) / 1000.0)
        and r.id = w.wakeup_id
      limit 1) a
  )
  select array_agg(row(l.id, false, null, null,
           case
             when l.accepted_at is not null then format(
               'lease expired: the target took the call on (202) at %s and its callback did not come within the queue''s callback_timeout',
               l.accepted_at)
             when l.claimed_at is not null then 'lease expired: no outcome was reported in time'
             when a.wakeup_id is not null then format(
               'lease expired: execute_current_job never claimed the call (its last wakeup, pg_net request %s, was answered %s: %s)',
               l.wakeup_id, coalesce(a.status_code::text, 'with no status'), a.message)
             else 'lease expired: execute_current_job never claimed the call' || coalesce(format(
               ' (its last wakeup was pg_net request %s: see net._http_response)', l.wakeup_id), '')
           end,
           null, true, null, false, null)::supaqueue.outcome order by l.id)
  into expired
  from lapsed l left join answers a on a.wakeup_id = l.wakeup_id;
  reaped := coalesce(cardinality(supaqueue._complete(expired, at)), 0);

  select array_agg(c.id order by c.id) into unclaimed
  from (select c.id from supaqueue.current_job c
        where c.claimed_at is null and c.lease_until >= at
          and coalesce(c.woken_at, c.started_at) < at - make_interval(secs => cfg.rewake_after_ms / 1000.0)
        order by c.id limit 10000 for update skip locked) c;
  rewoken := coalesce(cardinality(unclaimed), 0);
  perform supaqueue._wake(unclaimed, at);

  -- Keys with nothing in flight, nothing held and no pending job go (enqueue makes a key's row again).
  delete from supaqueue.job_key jk where jk.ctid in (
    select i.ctid from supaqueue.job_key i
    where i.in_flight = 0 and i.held_by is null
      and not exists (select from supaqueue.job j where j.queue_id = i.queue_id and j.key = i.key and j.status = 'pending')
    limit 10000 for update skip locked);

  -- A throttle whose rate has grown back and whose pause is over goes: the queue is its own again.
  delete from supaqueue.throttle t
  where (t.rate is null or supaqueue._throttled_rate(t, at) >= t.ceiling)
    and (t.paused_until is null or t.paused_until <= at);

  started := supaqueue._dispatch_free_workers(
    array(select q.id from supaqueue.queue q where not q.paused), at);

  with old as (
    select j.id from supaqueue.job j
    where j.finished_at < at - cfg.retention
      and j.status in ('successful', 'failed', 'cancelled')
    limit 10000
  )
  delete from supaqueue.job j using old where j.id = old.id;
  get diagnostics deleted = row_count;

  -- pg_net keeps its answers 6 hours; the wakeups and probes that explain them go with them.
  delete from supaqueue.wakeup w where w.request_id in (
    select w2.request_id from supaqueue.wakeup w2 where w2.sent_at < at - interval '6 hours' limit 10000);
  delete from supaqueue.probe p where p.created_at < at - interval '6 hours';
  -- pg_cron keeps a row per run of every job for ever: Supaqueue's own (tick every second, schedules) are deleted
  -- after config.retention, once a minute. A role without the right to (a pg_cron set up otherwise) keeps them.
  if extract(second from at) < 1 and to_regclass('cron.job_run_details') is not null then
    begin
      execute 'delete from cron.job_run_details d where d.runid in (
                 select r.runid from cron.job_run_details r join cron.job j on j.jobid = r.jobid
                 where j.jobname like ''supaqueue%'' and r.end_time < $1 limit 10000)'
        using at - cfg.retention;
    exception when insufficient_privilege then
      null;
    end;
  end if;

  perform supaqueue._check_alerts(at);
  update supaqueue.ticker set last_run_at = at,
    last_result = jsonb_build_object('reaped', reaped, 'rewoken', rewoken, 'dispatched', started, 'deleted', deleted);
  return jsonb_build_object('reaped', reaped, 'rewoken', rewoken, 'dispatched', started, 'deleted', deleted);
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
  retention interval default null,
  max_payload_bytes integer default null,
  max_job_headers_bytes integer default null,
  rewake_after_ms integer default null,
  clock_skew_ms integer default null)
returns supaqueue.config
language plpgsql set search_path = '' as $$
declare result supaqueue.config;
begin
  if functions_url is not null and functions_url !~ '^https?://[^/?#\s@]+[^\s?#]*$' then
    raise exception 'supaqueue: invalid functions_url "%"', functions_url
      using hint = 'Use the functions base URL, e.g. https://<project-ref>.supabase.co/functions/v1.';
  end if;
  update supaqueue.config c set
    functions_url = coalesce(rtrim(configure.functions_url, '/'), c.functions_url),
    request_timeout_ms = coalesce(configure.request_timeout_ms, c.request_timeout_ms),
    lease_grace_ms = coalesce(configure.lease_grace_ms, c.lease_grace_ms),
    max_call_timeout_ms = coalesce(configure.max_call_timeout_ms, c.max_call_timeout_ms),
    max_response_chars = coalesce(configure.max_response_chars, c.max_response_chars),
    retention = coalesce(configure.retention, c.retention),
    max_payload_bytes = coalesce(configure.max_payload_bytes, c.max_payload_bytes),
    max_job_headers_bytes = coalesce(configure.max_job_headers_bytes, c.max_job_headers_bytes),
    rewake_after_ms = coalesce(configure.rewake_after_ms, c.rewake_after_ms),
    clock_skew_ms = coalesce(configure.clock_skew_ms, c.clock_skew_ms)
  returning * into result;
  return result;
end $$;

-- The queue a job is added to, or an error naming the queue and how to create it.
create function supaqueue._queue_for_job(queue_name text) returns supaqueue.queue
language plpgsql stable set search_path = '' as $$
declare q supaqueue.queue;
begin
  select * into q from supaqueue.queue where name = queue_name;
  if q.id is null then
    raise exception 'supaqueue: queue "%" does not exist', queue_name
      using hint = 'Create it in supaqueue.yml or insert it into supaqueue.queue; see select name from supaqueue.queue.';
  end if;
  return q;
end $$;

-- Checks a job's payload and headers against its queue and says what to fix. The size bounds are checked by the
-- insert trigger, for every way in.
create function supaqueue._check_job(q supaqueue.queue, payload jsonb, headers jsonb) returns void
language plpgsql immutable set search_path = '' as $$
begin
  if payload is null or jsonb_typeof(payload) not in ('object', 'array') then
    raise exception 'supaqueue: the payload for queue "%" must be a JSON object or array, not %', q.name,
      coalesce(jsonb_typeof(payload), 'null');
  end if;
  if q.method in ('GET', 'DELETE') and jsonb_typeof(payload) <> 'object' then
    raise exception 'supaqueue: queue "%" sends % requests, whose payload becomes the query string: it must be a JSON object', q.name, q.method;
  end if;
  if headers is not null and (jsonb_typeof(headers) <> 'object'
     or exists (select from jsonb_each(headers) h where jsonb_typeof(h.value) <> 'string')) then
    raise exception 'supaqueue: job headers must be a JSON object of strings';
  end if;
end $$;

-- Checks the jobs of enqueue_many() (a JSON array) against their queue, in one query whatever their number, and
-- raises for the first job at fault, naming its position when there is more than one. The query asks what
-- _check_job() checks, as a set; _check_job() then says what is wrong, so each message has one source.
create function supaqueue._check_jobs(q supaqueue.queue, jobs jsonb) returns void
language plpgsql stable set search_path = '' as $$
declare
  bad record;
begin
  select e.ord, e.value as job into bad
  from jsonb_array_elements(jobs) with ordinality e(value, ord)
  where jsonb_typeof(e.value) <> 'object'
     or exists (select from jsonb_object_keys(e.value) k where k not in ('payload', 'run_at', 'delay_ms', 'dedup_key', 'headers', 'key', 'after'))
     or (e.value ? 'run_at' and e.value ? 'delay_ms')
     or jsonb_typeof(coalesce(e.value -> 'after', '[]')) not in ('array', 'null')
     or exists (select from jsonb_array_elements(case jsonb_typeof(e.value -> 'after') when 'array' then e.value -> 'after' end) a
                where jsonb_typeof(a) <> 'string'
                   or a #>> '{}' !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$')
     or jsonb_typeof(coalesce(e.value -> 'payload', '{}')) not in ('object', 'array')
     or (q.method in ('GET', 'DELETE') and jsonb_typeof(coalesce(e.value -> 'payload', '{}')) <> 'object')
     or jsonb_typeof(coalesce(e.value -> 'headers', '{}')) not in ('object', 'null')
     or exists (select from jsonb_each(case jsonb_typeof(e.value -> 'headers') when 'object' then e.value -> 'headers' end) h
                where jsonb_typeof(h.value) <> 'string')
  order by e.ord limit 1;
  if not found then
    return;
  end if;
  begin
    if jsonb_typeof(bad.job) <> 'object' then
      raise exception 'supaqueue: a job must be a JSON object, not %', jsonb_typeof(bad.job);
    elsif exists (select from jsonb_object_keys(bad.job) k where k not in ('payload', 'run_at', 'delay_ms', 'dedup_key', 'headers', 'key', 'after')) then
      raise exception 'supaqueue: unknown key in a job; the keys are payload, run_at, delay_ms, dedup_key, headers, key, after';
    elsif bad.job ? 'run_at' and bad.job ? 'delay_ms' then
      raise exception 'supaqueue: a job has run_at or delay_ms, not both';
    elsif jsonb_typeof(coalesce(bad.job -> 'after', '[]')) not in ('array', 'null')
          or exists (select from jsonb_array_elements(bad.job -> 'after') a
                     where jsonb_typeof(a) <> 'string'
                        or a #>> '{}' !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$') then
      raise exception 'supaqueue: "after" must be an array of job ids, not %', left((bad.job -> 'after')::text, 100);
    end if;
    perform supaqueue._check_job(q, coalesce(bad.job -> 'payload', '{}'), nullif(bad.job -> 'headers', 'null'));
  exception when others then
    if jsonb_array_length(jobs) = 1 then
      raise;
    end if;
    raise exception 'supaqueue: job % of %: %', bad.ord, jsonb_array_length(jobs), regexp_replace(sqlerrm, '^supaqueue: ', '')
      using errcode = sqlstate;
  end;
end $$;

-- Adds a job to the named queue and returns its id. `run_at` delays it; a `dedup_key` that an unfinished job of
-- the queue already has returns that job's id instead of adding another; `headers` are added to the queue's.
-- A paused queue accepts jobs: they wait, pending, until it is resumed. Payloads and headers larger than
-- config.max_payload_bytes / max_job_headers_bytes are refused (by the insert trigger, for every way in).
-- With `after` (job ids) the job is 'waiting' until each of them that has not succeeded yet has (see job_after and
-- _after_finished); jobs that are missing, failed or cancelled are refused.
create function supaqueue.enqueue(
  queue_name text,
  payload jsonb default '{}',
  run_at timestamptz default null,
  dedup_key text default null,
  headers jsonb default null,
  key text default null,
  after uuid[] default null)
returns uuid
language plpgsql security definer set search_path = '' as $$
#variable_conflict use_column
declare
  q supaqueue.queue := supaqueue._queue_for_job(queue_name);
  job_id uuid;
  parents uuid[];
  unfinished uuid[];
  bad record;
begin
  perform supaqueue._check_job(q, payload, headers);
  if cardinality(after) > 0 then
    -- The jobs waited for are locked (in id order) until this commits, so none finishes unseen meanwhile.
    parents := array(select distinct a from unnest(after) a where a is not null order by 1);
    select p.id, j.status into bad
    from unnest(parents) p(id) left join supaqueue.job j on j.id = p.id
    where j.id is null or j.status in ('failed', 'cancelled')
    order by p.id limit 1;
    if found then
      raise exception 'supaqueue: job % to wait for %', bad.id,
        case when bad.status is null then 'does not exist' else format('has already %s', bad.status) end
        using hint = 'after => lists jobs that exist and have not failed or been cancelled (retry them first).';
    end if;
    unfinished := array(select j.id from supaqueue.job j where j.id = any (parents) order by j.id for share);
    unfinished := array(select j.id from supaqueue.job j
                        where j.id = any (unfinished) and j.status <> 'successful' order by j.id);
  end if;

  insert into supaqueue.job (queue_id, payload, run_at, dedup_key, headers, key, status, waiting_for)
  values (q.id, payload, coalesce(enqueue.run_at, now()), enqueue.dedup_key, coalesce(enqueue.headers, '{}'),
          coalesce(enqueue.key, payload ->> q.key_field),
          case when cardinality(unfinished) > 0 then 'waiting' else 'pending' end::supaqueue.job_status,
          nullif(cardinality(unfinished), 0))
  on conflict (queue_id, dedup_key) where dedup_key is not null and status in ('pending', 'in_progress', 'waiting')
  do nothing
  returning id into job_id;

  if job_id is null then
    select j.id into job_id from supaqueue.job j
    where j.queue_id = q.id and j.dedup_key = enqueue.dedup_key and j.status in ('pending', 'in_progress', 'waiting');
  elsif cardinality(unfinished) > 0 then
    insert into supaqueue.job_after (parent_id, job_id) select u, job_id from unnest(unfinished) u;
  end if;
  return job_id;
end $$;

-- Adds many jobs to one queue in one call and returns their ids in the order given. `jobs` is a JSON array of
-- objects with the keys `payload` (default {}), `run_at` (a timestamp) or `delay_ms` (from now), `dedup_key` and
-- `headers`, `key` and `after` (job ids), each meaning what it means for enqueue(). Every job is checked first: one bad
-- job adds none, and the message names its position. Jobs without a dedup key or `after` are added in one insert (one
-- dispatch for all of them); the others go through enqueue(), which returns the unfinished job holding the key and
-- checks and locks the jobs waited for.
create function supaqueue.enqueue_many(queue_name text, jobs jsonb) returns uuid[]
language plpgsql security definer set search_path = '' as $$
declare
  q supaqueue.queue := supaqueue._queue_for_job(queue_name);
  ids uuid[];
begin
  if jobs is null or jsonb_typeof(jobs) <> 'array' then
    raise exception 'supaqueue: jobs must be a JSON array of objects, not %', coalesce(jsonb_typeof(jobs), 'null')
      using hint = 'Each job: {"payload": {...}, "run_at" or "delay_ms", "dedup_key", "headers", "key", "after"}, all optional.';
  end if;
  perform supaqueue._check_jobs(q, jobs);

  -- The due time is an expression, not a function: a function pins its search_path and is then called once per row.
  -- Ids of the bulk insert are matched to positions by seq, which it hands out in the order its rows arrive.
  with input as (
    select e.ord, coalesce(e.value -> 'payload', '{}') as payload,
           coalesce((e.value ->> 'run_at')::timestamptz,
                    now() + coalesce((e.value ->> 'delay_ms')::numeric, 0) * interval '1 ms') as run_at,
           e.value ->> 'dedup_key' as dedup_key, coalesce(nullif(e.value -> 'headers', 'null'), '{}') as headers,
           coalesce(e.value ->> 'key', e.value -> 'payload' ->> q.key_field) as key,
           case when e.value ? 'after' then
             array(select a #>> '{}' from jsonb_array_elements(nullif(e.value -> 'after', 'null')) a)::uuid[] end as after,
           e.value ->> 'dedup_key' is null and coalesce(jsonb_array_length(nullif(e.value -> 'after', 'null')), 0) = 0
             as plain
    from jsonb_array_elements(jobs) with ordinality e(value, ord)
  ), bulk as (
    insert into supaqueue.job (queue_id, payload, run_at, headers, key)
    select q.id, i.payload, i.run_at, i.headers, i.key from input i where i.plain order by i.ord
    returning id, seq
  ), placed as (
    select array_agg(b.id order by b.seq) as ids from bulk b
  )
  select array_agg(case when i.plain then (select p.ids from placed p)[i.n]
                        else supaqueue.enqueue(queue_name, i.payload, i.run_at, i.dedup_key, i.headers, i.key,
                                               i.after) end
                   order by i.ord)
  into ids
  from (select input.*, count(*) filter (where input.plain) over (order by input.ord) as n from input) i;
  return coalesce(ids, '{}');
end $$;

-- A job with its attempts, as JSON: what `supaqueue.job` holds, its queue's name, and
-- `attempts_history`, every attempt in order. Null when there is no such job (or it was deleted after retention).
create function supaqueue.get_job(job_id uuid) returns jsonb
language sql stable security definer set search_path = '' as $$
  select jsonb_build_object(
    'id', j.id, 'queue', q.name, 'status', j.status, 'payload', j.payload, 'headers', j.headers,
    'attempts', j.attempts, 'run_at', j.run_at, 'dedup_key', j.dedup_key, 'last_status_code', j.last_status_code,
    'last_error', j.last_error, 'created_at', j.created_at, 'finished_at', j.finished_at,
    'parent_id', j.parent_id, 'waiting_for', j.waiting_for,
    -- The call in flight, if any: when it started, until when its lease runs, and when its target took it on (202).
    'call', (select jsonb_build_object('attempt', c.attempt, 'started_at', c.started_at, 'lease_until', c.lease_until,
                                       'accepted_at', c.accepted_at)
             from supaqueue.current_job c where c.job_id = j.id),
    'after', coalesce((select jsonb_agg(a.parent_id order by a.parent_id) from supaqueue.job_after a where a.job_id = j.id), '[]'),
    'waited_on_by', coalesce((select jsonb_agg(a.job_id order by a.job_id) from supaqueue.job_after a where a.parent_id = j.id), '[]'),
    'children', coalesce((select jsonb_agg(c.id order by c.seq) from supaqueue.job c where c.parent_id = j.id), '[]'),
    'attempts_history', coalesce((
      select jsonb_agg(jsonb_build_object(
        'attempt', a.attempt, 'succeeded', a.succeeded, 'status_code', a.status_code, 'error', a.error,
        'duration_ms', a.duration_ms, 'response_body', a.response_body, 'started_at', a.started_at,
        'finished_at', a.finished_at) order by a.id)
      from supaqueue.attempt a where a.job_id = j.id), '[]'))
  from supaqueue.job j join supaqueue.queue q on q.id = j.queue_id
  where j.id = get_job.job_id
$$;

-- The JSON Schema a queue's payloads follow (supaqueue.yml's `payload:`), null when it has none. Raises for an
-- unknown queue, like enqueue.
create function supaqueue.payload_schema(queue_name text) returns jsonb
language sql stable security definer set search_path = '' as $$
  select (supaqueue._queue_for_job(queue_name)).payload_schema
$$;

-- Cancels a job that has not finished (and the jobs waiting for it). A call already in flight completes, but its
-- outcome no longer changes the job; one its target took on with a 202 ends now (its worker would otherwise wait for
-- the callback), and its callback changes nothing. Returns false when the job was already finished (or does not
-- exist).
create function supaqueue.cancel(job_id uuid) returns boolean
language plpgsql security definer set search_path = '' as $$
declare
  taken supaqueue.outcome[];
begin
  -- The call first, then the job: the order every completion locks them in.
  select array_agg(row(c.id, false, null, null,
           'cancelled while the target was working on it (after its 202); its callback changes nothing',
           least(extract(epoch from now() - c.started_at) * 1000, 2147483647)::integer, false, null, false,
           null)::supaqueue.outcome)
  into taken
  from (select * from supaqueue.current_job l where l.job_id = cancel.job_id and l.accepted_at is not null
        for update) c;
  update supaqueue.job j set status = 'cancelled', finished_at = now()
  where j.id = cancel.job_id and j.status in ('pending', 'in_progress', 'waiting');
  if not found then
    return false;
  end if;
  perform supaqueue._after_finished(array[cancel.job_id], false, now());
  if taken is not null then
    perform supaqueue._complete(taken, now());
  end if;
  return true;
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
  -- A key held for this job (ordered, hold_key_on_failure) goes on with it.
  update supaqueue.job_key jk set held_by = null where jk.held_by = retry.job_id;
  perform supaqueue._dispatch_free_workers(array(select j.queue_id from supaqueue.job j where j.id = retry.job_id));
  return true;
end $$;

-- Lets a held key go on without retrying the job it waits for (an ordered queue with hold_key_on_failure): its next
-- job runs. Returns false when the key was not held.
create function supaqueue.release_key(queue_name text, key text) returns boolean
language plpgsql security definer set search_path = '' as $$
declare
  qid bigint := (select q.id from supaqueue.queue q where q.name = queue_name);
begin
  if qid is null then
    raise exception 'supaqueue: queue "%" does not exist', queue_name;
  end if;
  update supaqueue.job_key jk set held_by = null
  where jk.queue_id = qid and jk.key = release_key.key and jk.held_by is not null;
  if not found then
    return false;
  end if;
  perform supaqueue._dispatch_free_workers(array[qid]);
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
  if exists (select from supaqueue.job j where j.queue_id = q.id and j.status in ('pending', 'in_progress', 'waiting')) then
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

-- Cancels the pending and waiting jobs of a queue, all of them or those whose payload contains `payload_filter`
-- (jsonb @>), and the jobs waiting for them.
-- Calls already in flight finish. Returns the number of jobs cancelled.
create function supaqueue.cancel_jobs(queue_name text, payload_filter jsonb default null) returns integer
language plpgsql security definer set search_path = '' as $$
declare ids uuid[];
begin
  if not exists (select from supaqueue.queue q where q.name = queue_name) then
    raise exception 'supaqueue: queue "%" does not exist', queue_name;
  end if;
  with gone as (
    update supaqueue.job j set status = 'cancelled', finished_at = now()
    from supaqueue.queue q
    where q.name = queue_name and j.queue_id = q.id and j.status in ('pending', 'waiting')
      and (payload_filter is null or j.payload @> payload_filter)
    returning j.id
  )
  select array_agg(g.id) into ids from gone g;
  perform supaqueue._after_finished(ids, false, now());
  return coalesce(cardinality(ids), 0);
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
  with retried_jobs as (
    update supaqueue.job j set status = 'pending', attempts = 0, run_at = now(), finished_at = null
    where j.queue_id = qid and j.status = 'failed' and (since is null or j.finished_at >= since)
    returning j.id
  ), released as (
    update supaqueue.job_key jk set held_by = null
    where jk.queue_id = qid and jk.held_by in (select r.id from retried_jobs r)
  )
  select count(*) into retried from retried_jobs;
  perform supaqueue._dispatch_free_workers(array[qid]);
  return retried;
end $$;

-- Sets a new HMAC-SHA256 signing key for a queue (32 random bytes unless given) and returns it. The previous key
-- stays valid for `overlap`: calls are signed with both until then, so targets can switch keys without failures.
-- Keys live in Vault as 'supaqueue:signing:<queue>' and 'supaqueue:signing:<queue>:previous'.
create function supaqueue.rotate_signing_key(queue_name text, new_key text default null,
                                             overlap interval default '1 day')
returns text
language plpgsql security definer set search_path = '' as $$
declare
  q supaqueue.queue;
  current_name text := supaqueue._signing_key_name(queue_name);
  previous_name text := supaqueue._signing_key_name(queue_name, true);
  old_key text;
  key text := coalesce(new_key, encode(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()), 'base64'));
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
  d.p95_ms,
  q.rate_limit_per_second,
  -- While the target has said slow down: the calls per second the queue may start now, and until when it starts
  -- none (Retry-After with honor_retry_after = 'queue'); null otherwise.
  (select supaqueue._throttled_rate(t, now()) from supaqueue.throttle t where t.queue_id = q.id) as slowed_to_per_second,
  (select t.paused_until from supaqueue.throttle t where t.queue_id = q.id and t.paused_until > now()) as held_until,
  -- Jobs waiting for others (enqueue's after) before they can be due.
  count(*) filter (where j.status = 'waiting') as waiting,
  -- Calls in flight that the target took on with a 202 (callback_timeout): their workers wait for the callbacks.
  (select count(*) from supaqueue.current_job c join supaqueue.worker w on w.id = c.worker_id
   where w.queue_id = q.id and c.accepted_at is not null) as awaiting_callback
from supaqueue.queue q
left join supaqueue.job j on j.queue_id = q.id
left join lateral (
  select percentile_cont(0.5) within group (order by a.duration_ms) as p50_ms,
         percentile_cont(0.95) within group (order by a.duration_ms) as p95_ms
  from supaqueue.attempt a join supaqueue.job aj on aj.id = a.job_id
  where aj.queue_id = q.id and a.finished_at > now() - interval '1 hour' and a.duration_ms is not null
) d on true
group by q.id, q.name, q.paused, d.p50_ms, d.p95_ms, q.rate_limit_per_second;

-------------------------------------------------------------------------------------------------------------------
-- Alerts: a queue's failure rate, oldest due job and dead letters against its thresholds, once per episode
-------------------------------------------------------------------------------------------------------------------

-- An alert goes out as a job of the queue's alert queue (supaqueue.queue.alert_queue, which the installer makes from
-- supaqueue.yml: POST to the webhook, its URL in Vault), so it has what every call has: retries with backoff, the
-- URL read from Vault only when the call is claimed, the attempt history. Its payload is Slack's {"text": "..."}.
--
-- tick() measures every watched queue once every 5 seconds, with bounded queries on existing indexes only (a new
-- index on job would be written by every claim and completion):
--   oldest_due    the age of its oldest due job: one probe of job_pending_due_idx. A paused queue is not measured
--                 (its backlog waits on purpose).
--   failure_rate  jobs that failed for good among those that finished (successful or failed) in the last 5 minutes,
--                 once at least 10 did (fewer say little); read from job_finished_at_idx, newest first, at most the
--                 10,000 latest finished jobs of every queue together: on a busier database the window is shorter.
--   dead_letters  jobs that failed for good in the same window: what went to its dead-letter queue when it has one.
-- An episode opens when a value reaches its threshold (one alert) and closes when the value is back under it (one
-- "resolved" message); a value that cannot be measured (too few jobs, a paused queue) neither opens nor closes one.
-- Only open episodes are rows: the table stays as small as the number of alerts firing.
create table supaqueue.alert_episode (
  -- No foreign key: the linter would want an index on queue_id alone besides the primary key; _check_alerts deletes
  -- the episodes of a queue that is gone (identity ids are never reused).
  queue_id bigint not null,
  kind text not null constraint alert_episode_kind_is_known check (kind in ('failure_rate', 'oldest_due', 'dead_letters')),
  opened_at timestamptz not null,
  -- The value that opened it (a fraction, milliseconds or a count) and the threshold it reached.
  value double precision not null,
  threshold double precision not null,
  -- The job of the alert queue that carries the alert; null when the alert queue was missing.
  alert_job_id uuid,
  primary key (queue_id, kind)
);

-- Checks a queue's alert settings and says what to fix.
create function supaqueue._validate_alerts() returns trigger
language plpgsql set search_path = '' as $$
begin
  if new.alert_queue is not null and (new.alert_queue = new.name
     or not exists (select from supaqueue.queue a where a.name = new.alert_queue)) then
    raise exception 'supaqueue: queue "%" names alert_queue "%", which is not another existing queue', new.name, new.alert_queue
      using hint = 'Create the alert queue first (the installer makes "<queue>-alerts" from supaqueue.yml''s alerts:).';
  end if;
  if new.alert_failure_rate is not null and not (new.alert_failure_rate > 0 and new.alert_failure_rate <= 1) then
    raise exception 'supaqueue: queue "%" has alert_failure_rate %, it must be more than 0 and at most 1', new.name, new.alert_failure_rate
      using hint = 'It is a fraction of the jobs finished: 0.5 alerts when half of them failed.';
  end if;
  if new.alert_oldest_due_ms is not null and new.alert_oldest_due_ms < 1000 then
    raise exception 'supaqueue: queue "%" has alert_oldest_due_ms %, it must be at least 1000', new.name, new.alert_oldest_due_ms
      using hint = 'Alerts are checked every 5 seconds: a shorter age would fire on every busy moment.';
  end if;
  if new.alert_dead_letters is not null and new.alert_dead_letters < 1 then
    raise exception 'supaqueue: queue "%" has alert_dead_letters %, it must be at least 1', new.name, new.alert_dead_letters;
  end if;
  return new;
end $$;

create trigger queue_alerts_are_valid before insert or update on supaqueue.queue
  for each row execute function supaqueue._validate_alerts();

-- A measured value as people read it: a percentage, a duration or a count.
create function supaqueue._alert_value(kind text, value double precision) returns text
language sql immutable set search_path = '' as $$
  select case kind
    when 'failure_rate' then round(value * 100)::text || '%'
    when 'oldest_due' then case when value < 120000 then round(value / 1000)::text || 's'
                                when value < 7200000 then round(value / 60000)::text || 'm'
                                else round(value / 3600000)::text || 'h' end
    else round(value)::text end
$$;

-- The Slack-compatible payload of an alert ({"text": ...}), or of its episode's end when `resolved`: the queue, what
-- was measured, its value and the threshold, and a link to the queue's dashboard page when one is known.
create function supaqueue._alert_message(q supaqueue.queue, kind text, value double precision,
                                         threshold double precision, resolved boolean) returns jsonb
language sql immutable set search_path = '' as $$
  select jsonb_build_object('text', format('%s Supaqueue queue "%s": %s %s %s (threshold %s)%s',
    case when resolved then 'Resolved:' else 'Alert:' end,
    q.name,
    case kind when 'failure_rate' then 'failure rate over the last 5 minutes'
              when 'oldest_due' then 'oldest due job''s age'
              else 'dead letters in the last 5 minutes' end,
    case when resolved then 'is back under its threshold, at' else 'reached' end,
    supaqueue._alert_value(kind, value),
    supaqueue._alert_value(kind, threshold),
    case when q.alert_link is not null then format(' <%s|Open the queue>', q.alert_link) else '' end))
$$;

-- Once every 5 seconds of `at` (ticks within the same 5 seconds as the last one skip it): measures every watched
-- queue, opens an episode and enqueues one alert for each threshold newly reached, and closes the episodes whose
-- value is back under its threshold with a "resolved" message. Two ticks at once cannot alert twice: the episode's
-- row is inserted (or deleted) first and only the one that did so enqueues. Returns the number of messages enqueued.
create function supaqueue._check_alerts(at timestamptz) returns integer
language plpgsql security definer set search_path = '' as $$
declare
  last_run timestamptz := (select t.last_run_at from supaqueue.ticker t);
  m record;
  job_id uuid;
  sent integer := 0;
begin
  if floor(extract(epoch from last_run) / 5) = floor(extract(epoch from at) / 5) then
    return 0;
  end if;
  -- Episodes of queues that are gone or no longer watch that value end without a message.
  delete from supaqueue.alert_episode e
  where not exists (select from supaqueue.queue q where q.id = e.queue_id and q.alert_queue is not null
                    and case e.kind when 'failure_rate' then q.alert_failure_rate
                                    when 'oldest_due' then q.alert_oldest_due_ms
                                    else q.alert_dead_letters end is not null);
  if not exists (select from supaqueue.queue q where q.alert_queue is not null) then
    return 0;
  end if;
  for m in
    with recent as (
      select j.queue_id, j.status from supaqueue.job j
      where j.finished_at > at - interval '5 minutes' and j.finished_at <= at
      order by j.finished_at desc limit 10000
    ),
    counts as (
      select r.queue_id, count(*) filter (where r.status in ('successful', 'failed')) as finished,
             count(*) filter (where r.status = 'failed') as failed
      from recent r
      where r.queue_id in (select q.id from supaqueue.queue q where q.alert_queue is not null)
      group by r.queue_id
    )
    select w as q, v.kind, v.value, v.threshold, e.queue_id is not null as open
    from supaqueue.queue w
    left join counts c on c.queue_id = w.id
    cross join lateral (values
      ('failure_rate', case when c.finished >= 10 then c.failed::double precision / c.finished end,
       w.alert_failure_rate),
      ('oldest_due', case when not w.paused then coalesce((
         select extract(epoch from at - j.run_at) * 1000 from supaqueue.job j
         where j.queue_id = w.id and j.status = 'pending' and j.run_at <= at
         order by j.run_at limit 1), 0) end, w.alert_oldest_due_ms::double precision),
      ('dead_letters', coalesce(c.failed, 0)::double precision, w.alert_dead_letters::double precision)
    ) v(kind, value, threshold)
    left join supaqueue.alert_episode e on e.queue_id = w.id and e.kind = v.kind
    where w.alert_queue is not null and v.threshold is not null and v.value is not null
      and (v.value >= v.threshold) <> (e.queue_id is not null)
    order by w.id, v.kind
  loop
    if m.open then
      delete from supaqueue.alert_episode e where e.queue_id = (m.q).id and e.kind = m.kind;
    else
      insert into supaqueue.alert_episode (queue_id, kind, opened_at, value, threshold)
      values ((m.q).id, m.kind, at, m.value, m.threshold) on conflict do nothing;
    end if;
    continue when not found;
    if not exists (select from supaqueue.queue a where a.name = (m.q).alert_queue) then
      raise warning 'supaqueue: alert queue "%" of queue "%" does not exist; its % alert was not sent',
        (m.q).alert_queue, (m.q).name, m.kind;
      continue;
    end if;
    job_id := supaqueue.enqueue((m.q).alert_queue,
                                supaqueue._alert_message(m.q, m.kind, m.value, m.threshold, m.open));
    if not m.open then
      update supaqueue.alert_episode e set alert_job_id = job_id where e.queue_id = (m.q).id and e.kind = m.kind;
    end if;
    sent := sent + 1;
  end loop;
  return sent;
end $$;

-------------------------------------------------------------------------------------------------------------------
-- The entry points in public (POST /rest/v1/rpc/<name> with the service-role key): execute_current_job's and the client's
-------------------------------------------------------------------------------------------------------------------

-- PostgREST exposes `public` by default, so these thin wrappers let the function and server code (src/client, on
-- supabase-js) call Supaqueue with no change to the project's API settings. They run with the caller's rights: only
-- service_role (and postgres) may execute them or what they call.

-- A wakeup's calls: see supaqueue.claim_current_jobs.
create function public.supaqueue_claim_current_jobs(ids bigint[], probe uuid default null)
returns jsonb
language sql volatile security invoker set search_path = '' as $$
  select supaqueue.claim_current_jobs(ids, probe)
$$;

-- A report, and the next calls: see supaqueue.complete_and_claim.
create function public.supaqueue_complete_and_claim(outcomes jsonb, claim_within_ms integer default 0)
returns jsonb
language sql volatile security invoker set search_path = '' as $$
  select supaqueue.complete_and_claim(outcomes, claim_within_ms)
$$;

-- A report without the next calls: see supaqueue.complete_current_jobs. Functions deployed before this version
-- report through it, so their calls in flight during an upgrade are recorded.
create function public.supaqueue_complete_current_jobs(outcomes jsonb)
returns bigint[]
language sql volatile security invoker set search_path = '' as $$
  select supaqueue.complete_current_jobs(outcomes)
$$;

-- The client's: see supaqueue.enqueue. `delay_ms` delays the job from the database's clock (not the caller's);
-- `run_at`, when given, wins.
create function public.supaqueue_complete_callback(token text, status_code integer, body text default null,
                                                   error text default null)
returns text
language sql volatile security invoker set search_path = '' as $$
  select supaqueue.complete_callback(token, status_code, body, error)
$$;

create function public.supaqueue_enqueue(queue_name text, payload jsonb default '{}', run_at timestamptz default null,
  delay_ms numeric default null, dedup_key text default null, headers jsonb default null, key text default null,
  after uuid[] default null)
returns uuid
language sql volatile security invoker set search_path = '' as $$
  select supaqueue.enqueue(queue_name, payload, coalesce(run_at, now() + delay_ms * interval '1 ms'), dedup_key, headers,
                           key, after)
$$;

-- The client's, many jobs in one round trip: see supaqueue.enqueue_many.
create function public.supaqueue_enqueue_many(queue_name text, jobs jsonb)
returns uuid[]
language sql volatile security invoker set search_path = '' as $$
  select supaqueue.enqueue_many(queue_name, jobs)
$$;

-- The client's: see supaqueue.get_job.
create function public.supaqueue_get_job(job_id uuid)
returns jsonb
language sql stable security invoker set search_path = '' as $$
  select supaqueue.get_job(job_id)
$$;

-- The client's: see supaqueue.cancel.
create function public.supaqueue_cancel(job_id uuid)
returns boolean
language sql volatile security invoker set search_path = '' as $$
  select supaqueue.cancel(job_id)
$$;

-- The client's: see supaqueue.retry.
create function public.supaqueue_retry(job_id uuid)
returns boolean
language sql volatile security invoker set search_path = '' as $$
  select supaqueue.retry(job_id)
$$;

-- The client's: see supaqueue.pause; false for an unknown queue.
create function public.supaqueue_pause(queue_name text)
returns boolean
language sql volatile security invoker set search_path = '' as $$
  select coalesce(supaqueue.pause(queue_name), false)
$$;

-- The client's: see supaqueue.resume; false for an unknown queue.
create function public.supaqueue_resume(queue_name text)
returns boolean
language sql volatile security invoker set search_path = '' as $$
  select coalesce(supaqueue.resume(queue_name), false)
$$;

-- The client's, to check payloads before it enqueues: see supaqueue.payload_schema.
create function public.supaqueue_payload_schema(queue_name text)
returns jsonb
language sql stable security invoker set search_path = '' as $$
  select supaqueue.payload_schema(queue_name)
$$;

-- The client's: the rows of supaqueue.queue_stats (one queue's, or every queue's) as a JSON array, by queue name.
create function public.supaqueue_queue_stats(queue_name text default null)
returns jsonb
language sql stable security invoker set search_path = '' as $$
  select coalesce(jsonb_agg(to_jsonb(s) order by s.queue), '[]')
  from supaqueue.queue_stats s where queue_name is null or s.queue = queue_name
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
alter table supaqueue.throttle enable row level security;
alter table supaqueue.job_key enable row level security;
alter table supaqueue.job_after enable row level security;
alter table supaqueue.schedule enable row level security;
alter table supaqueue.wakeup enable row level security;
alter table supaqueue.probe enable row level security;
alter table supaqueue.ticker enable row level security;
alter table supaqueue.alert_episode enable row level security;

-- Every function gets EXECUTE for PUBLIC when it is created, and `alter default privileges in schema ... revoke`
-- cannot take that back (that default is not per schema); a role-wide default would also close the project's own
-- functions. So each function is revoked here, one by one, from PUBLIC and the API roles (Supabase's default
-- privileges on `public` grant anon, authenticated and service_role everything new there); service_role then gets
-- exactly what the function and server code need. RLS with no policy already denies every role but the owner and
-- service_role (which bypasses RLS); the policies say so explicitly, for readers and for Supabase's linter.
do $$
declare
  f regprocedure;
  r text;
  t text;
begin
  for f in
    select p.oid::regprocedure from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace
    where n.nspname = 'supaqueue' or (n.nspname = 'public' and p.proname like 'supaqueue\_%')
  loop
    execute format('revoke all on function %s from public', f);
    foreach r in array array['anon', 'authenticated', 'service_role'] loop
      if exists (select from pg_catalog.pg_roles where rolname = r) then
        execute format('revoke all on function %s from %I', f, r);
      end if;
    end loop;
  end loop;

  revoke all on schema supaqueue from public;
  revoke all on all tables in schema supaqueue from public;
  revoke all on all sequences in schema supaqueue from public;
  foreach r in array array['anon', 'authenticated'] loop
    if exists (select from pg_catalog.pg_roles where rolname = r) then
      execute format('revoke all on schema supaqueue from %I', r);
      execute format('revoke all on all tables in schema supaqueue from %I', r);
      execute format('revoke all on all sequences in schema supaqueue from %I', r);
    end if;
  end loop;

  if exists (select from pg_catalog.pg_roles where rolname = 'service_role') then
    foreach t in array array['config', 'queue', 'job', 'worker', 'current_job', 'attempt', 'migration',
                             'rate_bucket', 'throttle', 'job_key', 'job_after', 'schedule', 'wakeup', 'probe', 'ticker',
                             'alert_episode'] loop
      execute format('create policy service_role_only on supaqueue.%I as permissive for all to service_role '
                     'using (true) with check (true)', t);
    end loop;
    grant usage on schema supaqueue to service_role;
    grant select, insert, update, delete on supaqueue.queue, supaqueue.job, supaqueue.worker to service_role;
    grant select on supaqueue.current_job, supaqueue.attempt, supaqueue.config, supaqueue.migration,
      supaqueue.rate_bucket, supaqueue.throttle, supaqueue.job_key, supaqueue.job_after, supaqueue.schedule, supaqueue.queue_stats, supaqueue.wakeup,
      supaqueue.probe, supaqueue.ticker, supaqueue.alert_episode to service_role;
    -- queue_stats runs as its reader and shows a throttled queue's rate through it (a pure function).
    grant execute on function supaqueue._throttled_rate(supaqueue.throttle, timestamptz) to service_role;
    -- Queue validation runs as whoever writes the queue (service_role may), and checks cycles through it.
    grant execute on function supaqueue._leads_back(text, text, boolean) to service_role;
    grant execute on function
      supaqueue.enqueue(text, jsonb, timestamptz, text, jsonb, text, uuid[]),
      supaqueue.enqueue_many(text, jsonb),
      supaqueue.get_job(uuid),
      supaqueue.payload_schema(text),
      supaqueue.cancel(uuid),
      supaqueue.retry(uuid),
      supaqueue.release_key(text, text),
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
      supaqueue.claim_current_jobs(bigint[], uuid),
      supaqueue.probe(),
      supaqueue.complete_current_jobs(jsonb),
      supaqueue.complete_and_claim(jsonb, integer),
      supaqueue.complete_callback(text, integer, text, text),
      public.supaqueue_claim_current_jobs(bigint[], uuid),
      public.supaqueue_complete_callback(text, integer, text, text),
      public.supaqueue_complete_and_claim(jsonb, integer),
      public.supaqueue_complete_current_jobs(jsonb),
      public.supaqueue_enqueue(text, jsonb, timestamptz, numeric, text, jsonb, text, uuid[]),
      public.supaqueue_enqueue_many(text, jsonb),
      public.supaqueue_get_job(uuid),
      public.supaqueue_cancel(uuid),
      public.supaqueue_retry(uuid),
      public.supaqueue_pause(text),
      public.supaqueue_resume(text),
      public.supaqueue_queue_stats(text),
      public.supaqueue_payload_schema(text)
    to service_role;
  end if;
end $$;

-- tick() is scheduled by the installer (src/install/tick.ts), which first makes sure pg_cron can run it, or leaves it
-- to a scheduler of the user's own when asked to: select supaqueue.schedule_tick() schedules it by hand.
