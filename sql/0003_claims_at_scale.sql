-- Supaqueue 0003: a dispatch costs the same with a large backlog as with none (bench/RESULTS.md, claim cost).
--
-- 1. Cached claim plans. _dispatch (0002) claims with `limit wanted` and `limit cardinality(worker_ids)` and starts
-- the calls with `= any (job_ids)`. PL/pgSQL keeps a generic plan for a statement only while it looks no dearer than
-- a plan made for the actual values, and a generic plan knows neither its LIMIT (it assumes 10% of the rows) nor
-- the length of an array (10). With 1,000,000 pending jobs (or 10,000 free workers) the generic plans then cost
-- many times the custom ones, so the claim and the update were planned afresh at every dispatch: about 130 µs of a
-- 270 µs dispatch, while a small queue kept its generic plans. A dispatch for one worker (one enqueue, one
-- completion) now uses a constant `limit 1` and scalars, whose generic plans are kept; a dispatch for several
-- workers plans for their number as before, once a batch.
--
-- 2. Job ids in time order (RFC 9562 version 7), at the end of this file.

create or replace function supaqueue._dispatch(queue_id bigint, wanted integer, own_workers bigint[] default null,
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

-- Replacing a function keeps its privileges (none but the owner's, since 0002); said again for a clean slate.
revoke all on function supaqueue._dispatch(bigint, integer, bigint[], timestamptz) from public;
do $$
declare r text;
begin
  foreach r in array array['anon', 'authenticated', 'service_role'] loop
    if exists (select from pg_roles where rolname = r) then
      execute format('revoke all on function supaqueue._dispatch(bigint, integer, bigint[], timestamptz) from %I', r);
    end if;
  end loop;
end $$;

-- Job ids in time order: RFC 9562 version 7, 48 bits of Unix milliseconds, then the version, the variant and random
-- bits (gen_random_uuid()'s, its version nibble turned from 4 into 7 by setting bits 52 and 53). A random (version 4)
-- id puts each new job's primary-key entry on a random leaf page: once the job table outgrows shared_buffers, an
-- enqueue reads and dirties a page that no other statement needs (measured with 1,000,000 pending jobs: one read and
-- one dirtied buffer per enqueue, enqueue 1.11 times the small state's time; 1.02 with these ids). New entries now
-- go to the right edge of the index, and the oldest jobs, the next to be claimed, have theirs side by side.
-- An expression, not a function: a function must pin its search_path, which keeps PostgreSQL from inlining it, and
-- calling one per row took a quarter of bulk enqueue's throughput; this expression about 3%.
alter table supaqueue.job alter column id set default
  pg_catalog.encode(pg_catalog.set_bit(pg_catalog.set_bit(
    overlay(pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
            placing substring(pg_catalog.int8send(
              pg_catalog.floor(extract(epoch from pg_catalog.clock_timestamp()) * 1000)::bigint) from 3)
            from 1 for 6),
    52, 1), 53, 1), 'hex')::uuid;
