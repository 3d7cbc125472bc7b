import { createSupaqueue } from "../src/client/index.ts";
import { type PostgrestStandin, startPostgrest } from "../test/support/postgrest.ts";
import { supabaseClient } from "../test/support/supabase-client.ts";
import { type BenchServer, log, median, smallPool, withClient, withInstalledDatabase } from "./support.ts";

/**
 * The client's overhead (src/client on supabase-js, through the PostgREST stand-in that runs each RPC as service_role
 * on the same database):
 * - enqueueMany of N jobs in one call, against the same supaqueue.enqueue_many over a direct connection, and against
 *   a plain `insert into supaqueue.job ... select` of N jobs over a direct connection (what bulk enqueue measures);
 * - one enqueue: its round trip through the client (payload checked against a schema it has read before) against the
 *   raw supabase.rpc("supaqueue_enqueue") through the same stand-in, alternating, median of each.
 * The stand-in is a Node server, not PostgREST: per call it reads the function's signature (one more query, as
 * PostgREST's schema cache does not) and opens a transaction, so the "through the API" figures are the stand-in's.
 */
export interface ClientResult {
  jobs: number;
  /** Jobs per second of every repeat: "client" (enqueueMany through the stand-in), "direct", "insert". */
  runs: Record<string, number[]>;
  median: Record<string, number>;
  /** One enqueue's round trip in ms, median per repeat, keyed "client" and "rpc". */
  roundTrip: Record<string, number[]>;
  roundTripMedian: Record<string, number>;
  roundTrips: number;
}

const KEY = "bench-service-role-key";

export async function measureClient(
  bench: BenchServer,
  repeats: number,
  jobs: number,
  roundTrips: number,
): Promise<ClientResult> {
  const runs: Record<string, number[]> = { client: [], direct: [], insert: [] };
  const roundTrip: Record<string, number[]> = { client: [], rpc: [] };
  const batch = Array.from({ length: jobs }, (_, n) => ({ payload: { n } }));
  for (let r = 0; r < repeats; r++) {
    await withInstalledDatabase(bench, async (db) => {
      await withClient(db.url, async (c) => {
        for (const name of ["many-client", "many-direct", "many-insert", "one"]) {
          await c.query("insert into supaqueue.queue (name, url, payload_schema) values ($1, $2, $3)", [
            name,
            "https://target.example/hook",
            JSON.stringify({ type: "object", required: ["n"], properties: { n: { type: "integer" } } }),
          ]);
          await c.query("select supaqueue.set_workers($1, 10)", [name]);
        }
      });
      const pool = smallPool(db.url, 4);
      let postgrest: PostgrestStandin | undefined;
      try {
        postgrest = await startPostgrest({ pool, serviceRoleKey: KEY });
        const supabase = supabaseClient(postgrest.url, KEY);
        const queue = createSupaqueue(supabase);
        await queue.enqueue("one", { n: 0 }); // reads the schema once, warms the connections
        const order = ["client", "direct", "insert"];
        for (let k = 0; k < r % order.length; k++) order.push(order.shift() as string);
        for (const way of order) {
          const started = performance.now();
          if (way === "client") await queue.enqueueMany("many-client", batch);
          else if (way === "direct")
            await withClient(db.url, (c) =>
              c.query("select supaqueue.enqueue_many('many-direct', $1::jsonb)", [JSON.stringify(batch)]),
            );
          else
            await withClient(db.url, (c) =>
              c.query(
                `insert into supaqueue.job (queue_id, payload)
                 select q.id, jsonb_build_object('n', g) from generate_series(1, $1::int) g, supaqueue.queue q
                 where q.name = 'many-insert'`,
                [jobs],
              ),
            );
          const rate = jobs / ((performance.now() - started) / 1000);
          runs[way]?.push(rate);
          log(`client enqueueMany ${way} repeat ${r + 1}: ${rate.toFixed(0)} jobs/s`);
        }
        const times: Record<string, number[]> = { client: [], rpc: [] };
        for (let i = 0; i < roundTrips; i++) {
          for (const way of i % 2 === 0 ? ["client", "rpc"] : ["rpc", "client"]) {
            const started = performance.now();
            if (way === "client") await queue.enqueue("one", { n: i });
            else {
              const { error } = await supabase.rpc("supaqueue_enqueue", {
                queue_name: "one",
                payload: { n: i },
              });
              if (error) throw new Error(error.message);
            }
            times[way]?.push(performance.now() - started);
          }
        }
        for (const way of ["client", "rpc"]) roundTrip[way]?.push(median(times[way] ?? []));
        log(
          `client enqueue round trip repeat ${r + 1}: client ${median(times.client ?? []).toFixed(2)} ms, rpc ${median(times.rpc ?? []).toFixed(2)} ms`,
        );
      } finally {
        await postgrest?.stop();
        await pool.end();
      }
    });
  }
  return {
    jobs,
    runs,
    median: Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, median(v)])),
    roundTrip,
    roundTripMedian: Object.fromEntries(Object.entries(roundTrip).map(([k, v]) => [k, median(v)])),
    roundTrips,
  };
}
