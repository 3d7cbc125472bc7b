/**
 * execute_current_job: Deno wiring only. Reads the environment, reaches the database through PostgREST (rpc.ts) and
 * serves the pure handler (handler.ts). Deploy with `--no-verify-jwt`: pg_net's wakeups carry an HMAC made with the
 * shared secret (wakeup.ts), not a JWT. It imports nothing outside this folder and _shared, so it deploys as it is.
 */
import process from "node:process";
import { json } from "./body.ts";
import { createHandler } from "./handler.ts";
import type { ProjectKey } from "./request.ts";
import { postgrestDatabase } from "./rpc.ts";

interface EdgeRuntimeApi {
  waitUntil(promise: Promise<unknown>): void;
}

/**
 * The project's key: the default of the new secret keys (`sb_secret_...`, preferred when present, sent as `apikey`
 * only since it is not a JWT), else the legacy service_role JWT.
 */
function projectKey(): ProjectKey | undefined {
  try {
    const value = JSON.parse(Deno.env.get("SUPABASE_SECRET_KEYS") ?? "null")?.default;
    if (typeof value === "string" && value !== "") return { value, kind: "secret" };
  } catch {
    // Not JSON: fall back to the legacy key.
  }
  const legacy = Deno.env.get("SUPABASE_SERVICE_ROLE_KEY");
  return legacy ? { value: legacy, kind: "jwt" } : undefined;
}

/** The origins of the project's functions: SUPABASE_URL's (http://kong:8000 inside `supabase start`), and a custom one. */
function functionsOrigins(supabaseUrl: string): string[] {
  const origins = new Set<string>();
  for (const url of [supabaseUrl, Deno.env.get("SUPAQUEUE_FUNCTIONS_URL")]) {
    if (url && URL.canParse(url)) origins.add(new URL(url).origin);
  }
  return [...origins];
}

/** CPU time of this process in ms, when the runtime tells it (it bounds how long one instance goes on). */
function cpuMs(): (() => number) | undefined {
  try {
    const start = process.cpuUsage();
    return () => {
      const used = process.cpuUsage(start);
      return (used.user + used.system) / 1000;
    };
  } catch {
    return undefined;
  }
}

/** A positive number from the environment, or undefined (the handler's default) when unset or not one. */
function positive(name: string): number | undefined {
  const value = Number(Deno.env.get(name) ?? "");
  return value > 0 ? value : undefined;
}

/** The handler, or one that answers 500 naming what is missing, so a misconfigured deploy says why at once. */
function wire(): (request: Request) => Promise<Response> {
  const secret = Deno.env.get("SUPAQUEUE_SECRET");
  const supabaseUrl = Deno.env.get("SUPABASE_URL");
  const key = projectKey();
  const missing = [
    ...(secret ? [] : ["SUPAQUEUE_SECRET"]),
    ...(supabaseUrl ? [] : ["SUPABASE_URL"]),
    ...(key ? [] : ['SUPABASE_SECRET_KEYS (with a "default" key) or SUPABASE_SERVICE_ROLE_KEY']),
  ];
  if (!secret || !supabaseUrl || !key) {
    const message = `execute_current_job is not configured: missing environment variable ${missing.join(", ")}`;
    console.error(message);
    return () => Promise.resolve(json(500, { error: "function_not_configured", message }));
  }

  const edgeRuntime = (globalThis as { EdgeRuntime?: EdgeRuntimeApi }).EdgeRuntime;
  const fetchFn: typeof fetch = (input, init) => fetch(input, init);
  const handler = createHandler({
    secret,
    db: postgrestDatabase({ fetch: fetchFn, supabaseUrl, key }),
    fetch: fetchFn,
    projectKey: key,
    functionsOrigins: functionsOrigins(supabaseUrl),
    now: () => Date.now(),
    waitUntil: edgeRuntime ? (promise) => edgeRuntime.waitUntil(promise) : undefined,
    // A paid plan's wall clock (400 s), or a self-hosted runtime's limits, can be given; the defaults are the free plan's.
    lifetime: {
      wallClockMs: positive("SUPAQUEUE_WALL_CLOCK_MS"),
      maxCalls: positive("SUPAQUEUE_MAX_CALLS"),
      maxCpuMs: positive("SUPAQUEUE_MAX_CPU_MS"),
      cpuMs: cpuMs(),
    },
  });
  // The runtime announces that it is about to retire this worker (its wall clock, CPU or memory is spent, or it is
  // idle): the calls still running are released at once rather than cut off and found only when their lease ends.
  addEventListener("beforeunload", (event) => {
    const reason = (event as CustomEvent<{ reason?: string }>).detail?.reason;
    handler.shutdown(typeof reason === "string" ? reason : "unknown");
  });
  return handler;
}

const handler = wire();

Deno.serve(async (request) => {
  try {
    return await handler(request);
  } catch (error) {
    console.error(`execute_current_job: ${error instanceof Error ? error.message : String(error)}`);
    return json(500, { error: "internal_error" });
  }
});
