import { join } from "node:path";
import pg from "pg";
import { describe, expect, test } from "vitest";
import { checksumOf, loadMigrations, type Migration, migrate } from "../src/db/migrate.ts";
import { installSchema } from "../src/install/schema.ts";
import { projectRoot } from "../src/paths.ts";
import { emptyDatabase, installedDatabase } from "./support/db.ts";
import { schemaOf } from "./support/schema-of.ts";

function migration(version: number, name: string, sql: string): Migration {
  return { version, name, sql, checksum: checksumOf(sql) };
}

async function client(url: string) {
  const c = new pg.Client({ connectionString: url });
  // The database is dropped (and its sessions ended) after the file, whatever a test left open.
  c.on("error", () => {});
  await c.connect();
  return c;
}

describe("the migration runner", () => {
  test("installs as a non-superuser, records versions, and does nothing on a rerun", async () => {
    const db = await emptyDatabase();
    const c = await client(db.url);
    const {
      rows: [me],
    } = await c.query("select rolsuper from pg_roles where rolname = current_user");
    expect(me.rolsuper).toBe(false);
    const first = await installSchema(c, { functionsUrl: "https://abc.supabase.co/functions/v1" });
    expect(first.applied).toEqual(loadMigrations().map((m) => m.name));
    expect(first.secretCreated).toBe(true);
    expect(first.secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const again = await installSchema(c, { functionsUrl: "https://abc.supabase.co/functions/v1" });
    expect(again).toMatchObject({
      applied: [],
      version: first.version,
      secret: first.secret,
      secretCreated: false,
    });
    const { rows } = await c.query("select functions_url from supaqueue.config");
    expect(rows[0].functions_url).toBe("https://abc.supabase.co/functions/v1");
    const { rows: secrets } = await c.query(
      "select count(*)::int as n from vault.decrypted_secrets where name = 'supaqueue_secret'",
    );
    expect(secrets[0].n).toBe(1);
    await c.end();
  });

  test("two installers started at once both succeed and leave one correct schema", async () => {
    const db = await emptyDatabase();
    const [a, b] = [await client(db.url), await client(db.url)];
    const results = await Promise.all([
      installSchema(a, { functionsUrl: "https://abc.supabase.co/functions/v1", secret: "s1" }),
      installSchema(b, { functionsUrl: "https://abc.supabase.co/functions/v1", secret: "s1" }),
    ]);
    expect(results.map((r) => r.applied.length).sort()).toEqual([0, loadMigrations().length]);
    const { rows } = await a.query("select count(*)::int as n from supaqueue.migration");
    expect(rows[0].n).toBe(loadMigrations().length);
    await Promise.all([a.end(), b.end()]);
  });

  test("a failing migration is rolled back whole and named in the error", async () => {
    const db = await emptyDatabase();
    const c = await client(db.url);
    const good = loadMigrations();
    const bad = migration(9999, "9999_broken", "create table supaqueue.half (id int); select 1/0;");
    await expect(migrate(c, [...good, bad])).rejects.toThrow(
      /migration 9999_broken failed and was rolled back: division by zero/,
    );
    const { rows } = await c.query(
      "select to_regclass('supaqueue.half') as half, max(version) as v from supaqueue.migration",
    );
    expect(rows[0]).toEqual({ half: null, v: good.at(-1)!.version });
    await c.end();
  });

  test("a first migration that fails leaves no trace", async () => {
    const db = await emptyDatabase();
    const c = await client(db.url);
    await expect(migrate(c, [migration(1, "0001_broken", "select 1/0")])).rejects.toThrow(/0001_broken/);
    const { rows } = await c.query("select to_regnamespace('supaqueue') as ns");
    expect(rows[0].ns).toBeNull();
    await c.end();
  });
});

describe("the recorded history is checked before anything changes", () => {
  test("a recorded migration whose file differs is refused with what to do; so is one this version does not ship", async () => {
    const db = await emptyDatabase();
    const c = await client(db.url);
    await installSchema(c, { functionsUrl: "https://abc.supabase.co/functions/v1" });
    await c.query("update supaqueue.migration set checksum = 'edited-elsewhere' where version = 1");
    await expect(installSchema(c, { functionsUrl: "https://abc.supabase.co/functions/v1" })).rejects.toThrow(
      /records migration 0001_supaqueue with checksum edited-elsew, but this version ships 0001_supaqueue\.sql with checksum [0-9a-f]{12}: the two differ/,
    );
    await c.query("update supaqueue.migration set checksum = $1 where version = 1", [
      loadMigrations()[0]!.checksum,
    ]);
    await c.query(
      "insert into supaqueue.migration (version, name, checksum) values (2, '0002_from_the_future', 'x')",
    );
    await expect(installSchema(c, { functionsUrl: "https://abc.supabase.co/functions/v1" })).rejects.toThrow(
      /records migration 0002_from_the_future, which this version of Supaqueue does not ship: it was installed by a newer Supaqueue/,
    );
    await c.end();
  });
});

/**
 * An install made before the first release (test/fixtures/prerelease: the three files that landed, applied as that
 * runner did, without checksums), with queues, secrets, history and calls in flight, is replaced by today's schema
 * in one transaction: every row kept, no call dropped or sent twice, no secret left in pg_net's table, Vault
 * secrets under today's names, and a schema identical to a fresh install's.
 */
describe("an install over the pre-release version", () => {
  const FIXTURES = join(projectRoot(), "test", "fixtures", "prerelease");

  async function prereleaseDatabase() {
    const db = await emptyDatabase();
    const c = await client(db.url);
    await c.query(
      "create schema supaqueue; create table supaqueue.migration (version integer primary key, name text not null, applied_at timestamptz not null default now())",
    );
    for (const m of loadMigrations(FIXTURES)) {
      await c.query("begin");
      await c.query("insert into supaqueue.migration (version, name) values ($1, $2)", [m.version, m.name]);
      await c.query(m.sql);
      await c.query("commit");
    }
    await c.query(`
      select supaqueue.configure(functions_url => 'http://127.0.0.1:9/functions/v1');
      select vault.create_secret('shared-secret-prerelease', 'supaqueue_secret');
      -- The collision the old names allowed: queue a + header B_C, as the old installer named it.
      select vault.create_secret('value-of-a', 'supaqueue_header_a_b_c');
      insert into supaqueue.queue (name, url, secret_headers)
        values ('a', 'https://a.example/hook', '{"B_C": "supaqueue_header_a_b_c"}');
      insert into supaqueue.queue (name, url) values ('mail', 'https://mail.example/send');
      select supaqueue.rotate_signing_key('mail', 'mail-old-signing-key-1');
      select supaqueue.rotate_signing_key('mail', 'mail-new-signing-key-2');
      select supaqueue.set_workers('mail', 2);
      select supaqueue.enqueue('mail', jsonb_build_object('n', n)) from generate_series(1, 4) n;`);
    // pg_net takes the first call's request and the call finishes (history); then it takes the request of one of
    // the two calls in flight now, and the other's request still waits in its queue.
    const take = (currentJob: string) =>
      c.query(
        "delete from net.http_request_queue where convert_from(body, 'UTF8')::jsonb ->> 'current_job_id' = $1 returning id",
        [currentJob],
      );
    const first = String((await c.query("select min(id) as id from supaqueue.current_job")).rows[0].id);
    await take(first);
    await c.query("select supaqueue.complete_current_job($1, true, 200, 'ok')", [first]);
    const delivered = String((await c.query("select min(id) as id from supaqueue.current_job")).rows[0].id);
    expect((await take(delivered)).rowCount).toBe(1);
    return { db, c, delivered: Number(delivered) };
  }

  test("keeps every row, sends no call twice, leaves no secret in pg_net, and ends as a fresh install", async () => {
    const { db, c, delivered } = await prereleaseDatabase();
    const before = await c.query(
      "select (select json_agg(j order by seq) from (select id, seq, status, attempts, payload from supaqueue.job) j) as jobs, (select json_agg(a order by id) from (select id, job_id, status_code, response_body from supaqueue.attempt) a) as attempts, (select json_agg(w order by id) from supaqueue.worker w) as workers",
    );
    const queued = await c.query(
      "select count(*)::int as n from net.http_request_queue where headers ? 'supaqueue-secret'",
    );
    expect(queued.rows[0].n).toBe(1);
    const inFlight = await c.query("select id from supaqueue.current_job order by id");
    const unsent = inFlight.rows.map((r) => Number(r.id)).find((id) => id !== delivered);

    const result = await installSchema(c, { functionsUrl: "http://127.0.0.1:9/functions/v1" });
    expect(result).toMatchObject({ applied: ["0001_supaqueue"], version: 1, upgradedPrerelease: true });
    expect(result.secret).toBe("shared-secret-prerelease");

    const after = await c.query(
      "select (select json_agg(j order by seq) from (select id, seq, status, attempts, payload from supaqueue.job) j) as jobs, (select json_agg(a order by id) from (select id, job_id, status_code, response_body from supaqueue.attempt) a) as attempts, (select json_agg(w order by id) from supaqueue.worker w) as workers",
    );
    expect(after.rows[0]).toEqual(before.rows[0]);
    const { rows: recorded } = await c.query("select version, name, checksum from supaqueue.migration");
    expect(recorded).toEqual([
      { version: 1, name: "0001_supaqueue", checksum: loadMigrations()[0]!.checksum },
    ]);

    // pg_net's queue, readable by every role: the old request (the whole call, the shared secret) is gone, and the
    // call it carried is woken the new way. The call already delivered counts as claimed: never sent twice.
    const net = await c.query(
      "select headers, convert_from(body, 'UTF8') as body from net.http_request_queue",
    );
    expect(JSON.stringify(net.rows)).not.toMatch(
      /shared-secret-prerelease|supaqueue-secret|signing-key|mail\.example/,
    );
    expect(net.rows.map((r) => JSON.parse(r.body))).toEqual([{ v: 2, ids: [unsent] }]);
    const { rows: calls } = await c.query(
      "select id, claimed_at is not null as claimed from supaqueue.current_job order by id",
    );
    expect(calls).toEqual(
      [
        { id: String(delivered), claimed: true },
        { id: String(unsent), claimed: false },
      ].sort((x, y) => Number(x.id) - Number(y.id)),
    );

    // The function deployed before the upgrade reports the call it has as it always did, and the worker goes on.
    const reported = await db.as(
      "service_role",
      "select public.supaqueue_complete_current_jobs($1::jsonb) as finished",
      [JSON.stringify([{ current_job_id: delivered, succeeded: true, status_code: 200 }])],
    );
    expect(reported.rows[0].finished.map(Number)).toEqual([delivered]);
    const claimed = await db.as(
      "service_role",
      "select public.supaqueue_claim_current_jobs($1::bigint[]) as calls",
      [[unsent]],
    );
    expect(
      claimed.rows[0].calls.map((x: { queue: { signing_keys: string[] } }) => x.queue.signing_keys),
    ).toEqual([["mail-new-signing-key-2", "mail-old-signing-key-1"]]);

    // Vault: today's names, the same values, the old names gone.
    const { rows: vault } = await c.query(
      "select name, decrypted_secret from vault.decrypted_secrets where name <> 'supaqueue_secret' order by name",
    );
    expect(vault).toEqual([
      { name: "supaqueue:header:a:b_c", decrypted_secret: "value-of-a" },
      { name: "supaqueue:signing:mail", decrypted_secret: "mail-new-signing-key-2" },
      { name: "supaqueue:signing:mail:previous", decrypted_secret: "mail-old-signing-key-1" },
    ]);
    const { rows: queues } = await c.query(
      "select name, secret_headers, signing_key_secret, previous_signing_key_secret from supaqueue.queue order by name",
    );
    expect(queues).toEqual([
      {
        name: "a",
        secret_headers: { B_C: "supaqueue:header:a:b_c" },
        signing_key_secret: null,
        previous_signing_key_secret: null,
      },
      {
        name: "mail",
        secret_headers: {},
        signing_key_secret: "supaqueue:signing:mail",
        previous_signing_key_secret: "supaqueue:signing:mail:previous",
      },
    ]);

    // New jobs and ids go on after the old ones.
    const next = await c.query("select supaqueue.enqueue('a') as id");
    const seq = await c.query("select seq from supaqueue.job where id = $1", [next.rows[0].id]);
    expect(Number(seq.rows[0].seq)).toBe(5);

    const fresh = await installedDatabase();
    expect(await schemaOf(db.pool)).toEqual(await schemaOf(fresh.pool));
    expect((await installSchema(c, { functionsUrl: "http://127.0.0.1:9/functions/v1" })).applied).toEqual([]);
    await c.end();
  });

  test("an object of the project that depends on Supaqueue's stops the upgrade, naming it, and nothing changes", async () => {
    const { c } = await prereleaseDatabase();
    await c.query("create view public.my_jobs as select id, status from supaqueue.job");
    const before = await c.query("select count(*)::int as n from net.http_request_queue");
    await expect(installSchema(c, { functionsUrl: "http://127.0.0.1:9/functions/v1" })).rejects.toThrow(
      /migration prerelease\/save failed and was rolled back: supaqueue: cannot replace the pre-release schema: objects of this project depend on it: .*view my_jobs/,
    );
    // Still the pre-release install, as the old runner left it (no checksum column either).
    const { rows } = await c.query("select version from supaqueue.migration order by version");
    expect(rows).toEqual([{ version: 1 }, { version: 2 }, { version: 3 }]);
    expect(
      (
        await c.query(
          "select to_regprocedure('supaqueue.complete_current_job(bigint, boolean, integer, text, text, integer, boolean, integer)') is not null as old",
        )
      ).rows[0].old,
    ).toBe(true);
    expect((await c.query("select count(*)::int as n from net.http_request_queue")).rows[0]).toEqual(
      before.rows[0],
    );
    await c.end();
  });
});
