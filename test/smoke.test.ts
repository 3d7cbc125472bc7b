import { expect, test } from "vitest";
import { installedDatabase } from "./support/db.ts";

test("seed usage", async () => {
  const db = await installedDatabase();
  const { rows: [q] } = await db.pool.query("insert into supaqueue.queue (name, url) values ('q1', 'https://example.com/x') returning id");
  await db.pool.query("insert into supaqueue.worker (queue_id) values ($1), ($1)", [q.id]);
  await db.pool.query("insert into supaqueue.job (queue_id, payload) values ($1, '{\"a\":1}'), ($1, '{}'), ($1, '{}')", [q.id]);
  const r = await db.pool.query("select status, attempts from supaqueue.job order by seq");
  console.log(r.rows);
  const n = await db.pool.query("select url, headers, convert_from(body,'utf8') as body from net.http_request_queue");
  console.log(n.rows);
});
