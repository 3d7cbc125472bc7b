-- Stand-in for pg_net 0.20: the `net` schema with the same tables, functions, signatures, defaults and grants.
-- A request is a row in net.http_request_queue; it becomes visible to the sender only when the calling
-- transaction commits, exactly like pg_net. The sender is a Node process (src/standins/pgnet-worker.ts) that
-- deletes the rows it takes, sends them with their timeout and writes net._http_response.
--
-- It is as harsh as the real extension on purpose (a kinder stand-in hides bugs users would hit): every role may
-- read and write both tables, http_post refuses any Content-Type but application/json, headers may be null.
-- Its objects always live in schema `net`, whatever `create extension ... with schema` names (as upstream's).

create schema net;

-- Upstream compares case-insensitively, so 'post' queued by hand is a valid method.
create domain net.http_method as text
  check (value ilike 'get' or value ilike 'post' or value ilike 'delete');

-- Headers are nullable as upstream's: a request queued with null headers is sent without any.
create unlogged table net.http_request_queue (
  id bigserial,
  method net.http_method not null,
  url text not null,
  headers jsonb,
  body bytea,
  timeout_milliseconds integer not null
);

create unlogged table net._http_response (
  id bigint,
  status_code integer,
  content_type text,
  headers jsonb,
  content text,
  timed_out boolean,
  error_msg text,
  created timestamptz not null default now()
);
create index _http_response_created_idx on net._http_response (created);

create function net._urlencode(value text) returns text language sql immutable strict as $$
  select string_agg(
    case when ch ~ '[A-Za-z0-9_.~-]' then ch
         else (select string_agg('%' || upper(lpad(to_hex(b), 2, '0')), '')
               from (select get_byte(convert_to(ch, 'UTF8'), i) as b
                     from generate_series(0, octet_length(convert_to(ch, 'UTF8')) - 1) i) bytes)
    end, '' order by n)
  from regexp_split_to_table(value, '') with ordinality as t(ch, n)
$$;

create function net._url_with_params(url text, params jsonb) returns text language sql immutable as $$
  select case when params is null or params = '{}'::jsonb then url
    else url || case when url like '%?%' then '&' else '?' end || (
      select string_agg(net._urlencode(key) || '=' || net._urlencode(value), '&')
      from jsonb_each_text(params))
  end
$$;

-- The headers http_post sends: a Content-Type found case-insensitively must be exactly application/json, and
-- one is added when there is none. As upstream, null headers stay null (null || anything is null).
create function net._json_content_type(headers jsonb) returns jsonb
language plpgsql immutable set search_path = '' as $$
declare content_type text;
begin
  select h.value into content_type
  from jsonb_each_text(coalesce(headers, '{}'::jsonb)) h
  where lower(h.key) = 'content-type'
  limit 1;
  if content_type is null then
    return headers || '{"Content-Type": "application/json"}'::jsonb;
  end if;
  if content_type <> 'application/json' then
    raise exception 'Content-Type header must be "application/json"';
  end if;
  return headers;
end $$;

-- Queues one request (the shared body of http_get, http_post and http_delete). Nothing wakes the sender: it polls
-- often. (A NOTIFY here would take a database-wide lock at every commit that queues a call, serializing them, which
-- real pg_net, waking its worker by latch, does not do.) src/local/stack.ts recognizes the stand-in by this function.
create function net._enqueue(method text, url text, headers jsonb, body bytea, timeout_milliseconds integer)
returns bigint language plpgsql volatile set search_path = '' as $$
declare request_id bigint;
begin
  insert into net.http_request_queue (method, url, headers, body, timeout_milliseconds)
  values (method, url, headers, body, timeout_milliseconds)
  returning id into request_id;
  return request_id;
end $$;

-- The three calls keep pg_net 0.20's signatures and defaults. They run with their owner's rights and a pinned
-- search_path, as Supabase's grant_pg_net_access event trigger sets them; that grants nothing the tables'
-- grants below do not already give every role.
create function net.http_get(
  url text,
  params jsonb default '{}'::jsonb,
  headers jsonb default '{}'::jsonb,
  timeout_milliseconds integer default 5000
) returns bigint language sql volatile security definer set search_path = '' as $$
  select net._enqueue('GET', net._url_with_params(url, params), headers, null, timeout_milliseconds)
$$;

create function net.http_post(
  url text,
  body jsonb default '{}'::jsonb,
  params jsonb default '{}'::jsonb,
  headers jsonb default '{"Content-Type": "application/json"}'::jsonb,
  timeout_milliseconds integer default 5000
) returns bigint language sql volatile security definer set search_path = '' as $$
  select net._enqueue('POST', net._url_with_params(url, params), net._json_content_type(headers),
                      convert_to(body::text, 'UTF8'), timeout_milliseconds)
$$;

create function net.http_delete(
  url text,
  params jsonb default '{}'::jsonb,
  headers jsonb default '{}'::jsonb,
  timeout_milliseconds integer default 5000,
  body jsonb default null
) returns bigint language sql volatile security definer set search_path = '' as $$
  select net._enqueue('DELETE', net._url_with_params(url, params), headers, convert_to(body::text, 'UTF8'),
                      timeout_milliseconds)
$$;

-------------------------------------------------------------------------------------------------------------------
-- Grants
-------------------------------------------------------------------------------------------------------------------

-- Upstream's: every role may use the schema and read and write both tables, so the headers and body of a queued
-- request (and every response) are readable by anyone who can connect while they wait. Functions keep Postgres's
-- default, EXECUTE for PUBLIC.
grant usage on schema net to public;
grant all on all sequences in schema net to public;
grant all on all tables in schema net to public;

-- Supabase's: USAGE on net for its API roles by name (migration pg_net_perms_fix), when they exist here.
do $$
declare r text;
begin
  foreach r in array array['anon', 'authenticated', 'service_role'] loop
    if exists (select from pg_roles where rolname = r) then
      execute format('grant usage on schema net to %I', r);
    end if;
  end loop;
end $$;
