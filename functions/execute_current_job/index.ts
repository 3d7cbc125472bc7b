/**
 * execute_current_job: Deno wiring only. Reads the environment, builds the reporter that sends outcomes to
 * PostgREST in batches (reporter.ts), and serves the pure handler (handler.ts). Deploy with `--no-verify-jwt`: pg_net
 * authenticates with the `supaqueue-secret` header instead of a JWT. It imports nothing outside this folder and
 * _shared, so it deploys as it is.
 */
import { createHandler } from "./handler.ts";
import { createBatchReporter, postgrestSender } from "./reporter.ts";

interface EdgeRuntimeApi {
  waitUntil(promise: Promise<unknown>): void;
}

/** The service-role key: the classic JWT key, or the default of the newer secret keys. */
function serviceRoleKey(): string | undefined {
  const key = Deno.env.get("SUPABASE_SERVICE_ROLE_KEY");
  if (key) return key;
  try {
    const value = JSON.parse(Deno.env.get("SUPABASE_SECRET_KEYS") ?? "null")?.default;
    return typeof value === "string" && value !== "" ? value : undefined;
  } catch {
    return undefined;
  }
}

function errorResponse(status: number, error: string): Response {
  return new Response(JSON.stringify({ error }), { status, headers: { "Content-Type": "application/json" } });
}

/** The handler, or one that answers 500 naming what is missing, so a misconfigured deploy says why at once. */
function wire(): (request: Request) => Promise<Response> {
  const secret = Deno.env.get("SUPAQUEUE_SECRET");
  const supabaseUrl = Deno.env.get("SUPABASE_URL");
  const key = serviceRoleKey();
  const missing = [
    ...(secret ? [] : ["SUPAQUEUE_SECRET"]),
    ...(supabaseUrl ? [] : ["SUPABASE_URL"]),
    ...(key ? [] : ['SUPABASE_SERVICE_ROLE_KEY (or SUPABASE_SECRET_KEYS with a "default" key)']),
  ];
  if (!secret || !supabaseUrl || !key) {
    const message = `execute_current_job is not configured: missing environment variable ${missing.join(", ")}`;
    console.error(message);
    return () => Promise.resolve(errorResponse(500, message));
  }

  const edgeRuntime = (globalThis as { EdgeRuntime?: EdgeRuntimeApi }).EdgeRuntime;
  const fetchFn: typeof fetch = (input, init) => fetch(input, init);
  // Outcomes that finish while a report is on its way go together in the next one (see reporter.ts).
  const reporter = createBatchReporter({
    send: postgrestSender({ fetch: fetchFn, supabaseUrl, key }),
  });

  return createHandler({
    secret,
    serviceRoleKey: key,
    fetch: fetchFn,
    now: () => Date.now(),
    waitUntil: edgeRuntime ? (promise) => edgeRuntime.waitUntil(promise) : undefined,
    report: reporter.report,
  });
}

const handler = wire();

Deno.serve(async (request) => {
  try {
    return await handler(request);
  } catch (error) {
    console.error(`execute_current_job: ${error instanceof Error ? error.message : String(error)}`);
    return errorResponse(500, "internal error");
  }
});
