// The client in real Deno, as an edge function of the user's would run it. The package is not published, so this
// imports the built JavaScript (lib/, which the test setup builds) by a relative path, and supabase-js from the
// repository's node_modules (`deno run --node-modules-dir=manual`): what `npm:supaqueue` and
// `npm:@supabase/supabase-js@2` give an edge function once published. Prints one JSON line per step; test/client-deno.test.ts
// completes the job's call meanwhile.
import { createClient } from "@supabase/supabase-js";
import { createSupaqueue, SupaqueueError } from "../../lib/src/client/index.js";

const env = (name: string): string => Deno.env.get(name) ?? "";
const queue = createSupaqueue<{ mail: { to: string } }>(
  createClient(env("SUPABASE_URL"), env("SUPABASE_SERVICE_ROLE_KEY")),
);
const say = (step: string, value: unknown) => console.log(JSON.stringify({ step, value }));

const id = await queue.enqueue("mail", { to: "deno@example.com" }, { dedupKey: "deno" });
say("enqueued", id);
say(
  "many",
  await queue.enqueueMany("mail", [
    { payload: { to: "a@example.com" } },
    { payload: { to: "b@example.com" }, delay: 60_000 },
  ]),
);
const job = await queue.wait(id, { intervalMs: 20, timeoutMs: 20_000 });
say("finished", { status: job.status, history: job.history.map((a) => a.statusCode) });
try {
  await createSupaqueue(createClient(env("SUPABASE_URL"), env("SUPABASE_SERVICE_ROLE_KEY"))).enqueue(
    "nope",
    {},
  );
} catch (error) {
  if (!(error instanceof SupaqueueError)) throw error;
  say("error", { message: error.message, code: error.code, hint: error.hint });
}
say("stats", (await queue.stats("mail"))?.successful);
