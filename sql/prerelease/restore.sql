-- Supaqueue: replacing a pre-release install, step 2 of 2 (after save.sql and the migrations, in the same
-- transaction). Puts every row back with its ids, continues the id sequences after them, moves the Vault secrets to
-- today's collision-free names, and wakes the calls whose pre-release request was still waiting in pg_net.
-- Triggers are off while the rows go back: they are not new jobs to dispatch nor new calls to send.

alter table supaqueue.queue disable trigger user;
alter table supaqueue.job disable trigger user;
alter table supaqueue.worker disable trigger user;
alter table supaqueue.current_job disable trigger user;

update supaqueue.config c set
  functions_url = p.functions_url, request_timeout_ms = p.request_timeout_ms, lease_grace_ms = p.lease_grace_ms,
  max_call_timeout_ms = p.max_call_timeout_ms, max_response_chars = p.max_response_chars, retention = p.retention
from prerelease_config p;

insert into supaqueue.queue (id, name, url, function_name, method, headers, secret_headers, max_attempts, timeout_ms,
                             backoff_base_ms, backoff_max_ms, success_codes, retry_codes, rate_limit_per_second,
                             dead_letter_queue, signing_key_secret, previous_signing_key_secret,
                             previous_signing_key_until, paused, managed_by, created_at, updated_at)
overriding system value
select id, name, url, function_name, method, headers, secret_headers, max_attempts, timeout_ms, backoff_base_ms,
       backoff_max_ms, success_codes, retry_codes, rate_limit_per_second, dead_letter_queue, signing_key_secret,
       previous_signing_key_secret, previous_signing_key_until, paused, managed_by, created_at, updated_at
from prerelease_queue;

insert into supaqueue.job (id, seq, queue_id, payload, headers, status, attempts, run_at, dedup_key,
                           last_status_code, last_error, created_at, finished_at)
overriding system value
select id, seq, queue_id, payload, headers, status::supaqueue.job_status, attempts, run_at, dedup_key,
       last_status_code, last_error, created_at, finished_at
from prerelease_job;

insert into supaqueue.worker (id, queue_id, locked, retiring, created_at)
overriding system value
select id, queue_id, locked, retiring, created_at from prerelease_worker;

-- A call whose request left pg_net's queue was delivered to the function of the time, which reports it: it counts as
-- claimed, so it is never sent twice. The others wait for the wakeup below.
insert into supaqueue.current_job (id, worker_id, job_id, attempt, started_at, lease_until, claimed_at)
overriding system value
select c.id, c.worker_id, c.job_id, c.attempt, c.started_at, c.lease_until,
       case when exists (select from prerelease_unsent u where u.current_job_id = c.id) then null else c.started_at end
from prerelease_current_job c;

insert into supaqueue.rate_bucket (queue_id, tokens, refilled_at)
select queue_id, tokens, refilled_at from prerelease_rate_bucket;

insert into supaqueue.schedule (name, cron, queue_name, payload, managed_by, created_at)
select name, cron, queue_name, payload, managed_by, created_at from prerelease_schedule;

insert into supaqueue.attempt (id, job_id, attempt, worker_id, started_at, finished_at, succeeded, status_code,
                               response_body, error, duration_ms)
overriding system value
select id, job_id, attempt, worker_id, started_at, finished_at, succeeded, status_code, response_body, error,
       duration_ms
from prerelease_attempt;

select pg_catalog.setval(pg_catalog.pg_get_serial_sequence(s.tab, s.col), coalesce(s.max, 0) + 1, false)
from (values ('supaqueue.queue', 'id', (select max(id) from supaqueue.queue)),
             ('supaqueue.job', 'seq', (select max(seq) from supaqueue.job)),
             ('supaqueue.worker', 'id', (select max(id) from supaqueue.worker)),
             ('supaqueue.current_job', 'id', (select max(id) from supaqueue.current_job)),
             ('supaqueue.attempt', 'id', (select max(id) from supaqueue.attempt))) s(tab, col, max);

-- Vault: the pre-release names 'supaqueue_header_<queue>_<header>' and 'supaqueue_signing_<queue>[_previous]' could
-- collide ('a' + 'B_C' and 'a_b' + 'C'; 'x' previous and 'x_previous' current). Each queue's secrets are copied to
-- today's names and the old ones deleted. Where two queues shared an old name, both get the value it held (the other
-- was already lost): the next deploy writes each queue's own value from supaqueue.yml.
do $$
declare
  q record;
  h record;
  moved text[] := '{}';
  renamed jsonb;
  value text;
begin
  for q in select * from supaqueue.queue order by id loop
    renamed := '{}';
    for h in select * from jsonb_each_text(q.secret_headers) loop
      if h.value = 'supaqueue_header_' || q.name || '_' || lower(h.key) then
        value := (select s.decrypted_secret from vault.decrypted_secrets s where s.name = h.value);
        if value is not null then
          perform supaqueue._put_secret(supaqueue._header_secret_name(q.name, h.key), value);
        end if;
        renamed := renamed || jsonb_build_object(h.key, supaqueue._header_secret_name(q.name, h.key));
        moved := moved || h.value;
      end if;
    end loop;
    if q.signing_key_secret = 'supaqueue_signing_' || q.name then
      value := (select s.decrypted_secret from vault.decrypted_secrets s where s.name = q.signing_key_secret);
      if value is not null then
        perform supaqueue._put_secret(supaqueue._signing_key_name(q.name), value);
      end if;
      moved := moved || q.signing_key_secret;
    end if;
    if q.previous_signing_key_secret = 'supaqueue_signing_' || q.name || '_previous' then
      value := (select s.decrypted_secret from vault.decrypted_secrets s where s.name = q.previous_signing_key_secret);
      if value is not null then
        perform supaqueue._put_secret(supaqueue._signing_key_name(q.name, true), value);
      end if;
      moved := moved || q.previous_signing_key_secret;
    end if;
    update supaqueue.queue set
      secret_headers = secret_headers || renamed,
      signing_key_secret = case when signing_key_secret = 'supaqueue_signing_' || name
                                then supaqueue._signing_key_name(name) else signing_key_secret end,
      previous_signing_key_secret = case when previous_signing_key_secret = 'supaqueue_signing_' || name || '_previous'
                                         then supaqueue._signing_key_name(name, true) else previous_signing_key_secret end
    where id = q.id;
  end loop;
  delete from vault.secrets s where s.name = any (moved);
end $$;

alter table supaqueue.queue enable trigger user;
alter table supaqueue.job enable trigger user;
alter table supaqueue.worker enable trigger user;
alter table supaqueue.current_job enable trigger user;

-- The calls whose pre-release request was taken out of pg_net's queue by save.sql: woken the new way now.
select supaqueue._wake(array(select c.id from supaqueue.current_job c where c.claimed_at is null order by c.id),
                       pg_catalog.clock_timestamp());
