-- Stand-in for pg_net 0.20: the `net` schema with the same tables, functions, signatures and defaults.
-- A request is a row in net.http_request_queue; it becomes visible to the sender only when the calling
-- transaction commits, exactly like pg_net. The sender is a Node process that deletes the rows it takes,
-- sends them with their timeout and writes net._http_response.

create schema net;

create domain net.http_method as text check (value in ('GET', 'POST', 'DELETE'));

create unlogged table net.http_request_queue (
  id bigserial,
  method net.http_method not null,
  url text not null,
  headers jsonb not null,
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

-- Queues one request (the shared body of http_get, http_post and http_delete). Nothing wakes the sender: it polls
-- often. (A NOTIFY here would take a database-wide lock at every commit that queues a call, serializing them, which
-- real pg_net, waking its worker by latch, does not do.)
create function net._enqueue(method text, url text, headers jsonb, body bytea, timeout_milliseconds integer)
returns bigint language plpgsql volatile set search_path = '' as $$
declare request_id bigint;
begin
  insert into net.http_request_queue (method, url, headers, body, timeout_milliseconds)
  values (method, url, headers, body, timeout_milliseconds)
  returning id into request_id;
  return request_id;
end $$;

create function net.http_get(
  url text,
  params jsonb default '{}'::jsonb,
  headers jsonb default '{}'::jsonb,
  timeout_milliseconds integer default 5000
) returns bigint language sql volatile security definer set search_path = '' as $$
  select net._enqueue('GET', case when params is null or params = '{}'::jsonb then url else net._url_with_params(url, params) end, headers, null, timeout_milliseconds)
$$;

create function net.http_post(
  url text,
  body jsonb default '{}'::jsonb,
  params jsonb default '{}'::jsonb,
  headers jsonb default '{"Content-Type": "application/json"}'::jsonb,
  timeout_milliseconds integer default 5000
) returns bigint language sql volatile security definer set search_path = '' as $$
  select net._enqueue('POST', case when params is null or params = '{}'::jsonb then url else net._url_with_params(url, params) end, headers, convert_to(body::text, 'UTF8'), timeout_milliseconds)
$$;

create function net.http_delete(
  url text,
  params jsonb default '{}'::jsonb,
  headers jsonb default '{}'::jsonb,
  timeout_milliseconds integer default 5000,
  body jsonb default null
) returns bigint language sql volatile security definer set search_path = '' as $$
  select net._enqueue('DELETE', case when params is null or params = '{}'::jsonb then url else net._url_with_params(url, params) end, headers, convert_to(body::text, 'UTF8'), timeout_milliseconds)
$$;

-- Supabase grants pg_net to its API roles; the installing role (the extension owner) gets it too.
revoke all on all functions in schema net from public;
do $$
declare r text;
begin
  foreach r in array array['@extowner@', 'service_role'] loop
    if exists (select from pg_roles where rolname = r) then
      execute format('grant usage on schema net to %I', r);
      execute format('grant execute on all functions in schema net to %I', r);
      execute format('grant select, insert, update, delete on all tables in schema net to %I', r);
      execute format('grant usage on all sequences in schema net to %I', r);
    end if;
  end loop;
end $$;
