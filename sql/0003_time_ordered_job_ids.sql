-- Supaqueue 0003: job ids in time order (RFC 9562 version 7), so an enqueue costs the same with a large backlog as
-- with none (bench/RESULTS.md, claim cost).

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
