-- Stand-in for Supabase Vault: vault.secrets, vault.decrypted_secrets, vault.create_secret, vault.update_secret,
-- with Supabase's grants (select and delete for postgres and service_role, writes only through the functions).
-- The real Vault encrypts `secret` with pgsodium; this stand-in stores it base64-encoded so that a plain
-- `select secret` never shows the value, while decrypted_secrets shows it as the real view does.

create schema vault;

create table vault.secrets (
  id uuid primary key default gen_random_uuid(),
  name text,
  description text not null default '',
  secret text not null,
  key_id uuid,
  nonce bytea default decode(md5(random()::text), 'hex'),
  created_at timestamptz not null default current_timestamp,
  updated_at timestamptz not null default current_timestamp
);
create unique index secrets_name_idx on vault.secrets (name) where name is not null;

create view vault.decrypted_secrets as
  select id, name, description, secret,
         convert_from(decode(secret, 'base64'), 'UTF8') as decrypted_secret,
         key_id, nonce, created_at, updated_at
  from vault.secrets;

create function vault.create_secret(
  new_secret text,
  new_name text default null,
  new_description text default '',
  new_key_id uuid default null
) returns uuid language plpgsql security definer set search_path = '' as $$
declare rec record;
begin
  insert into vault.secrets (secret, name, description, key_id)
  values (encode(convert_to(new_secret, 'UTF8'), 'base64'), new_name, coalesce(new_description, ''), new_key_id)
  returning * into rec;
  return rec.id;
end $$;

create function vault.update_secret(
  secret_id uuid,
  new_secret text default null,
  new_name text default null,
  new_description text default null,
  new_key_id uuid default null
) returns void language plpgsql security definer set search_path = '' as $$
begin
  update vault.secrets s set
    secret = coalesce(encode(convert_to(new_secret, 'UTF8'), 'base64'), s.secret),
    name = coalesce(new_name, s.name),
    description = coalesce(new_description, s.description),
    key_id = coalesce(new_key_id, s.key_id),
    updated_at = current_timestamp
  where s.id = secret_id;
end $$;

revoke all on all functions in schema vault from public;
revoke all on all tables in schema vault from public;
do $$
declare r text;
begin
  foreach r in array array['@extowner@', 'service_role'] loop
    if exists (select from pg_roles where rolname = r) then
      execute format('grant usage on schema vault to %I', r);
      execute format('grant select, delete on vault.secrets, vault.decrypted_secrets to %I', r);
      execute format('grant execute on function vault.create_secret(text, text, text, uuid), vault.update_secret(uuid, text, text, text, uuid) to %I', r);
    end if;
  end loop;
end $$;
