import type pg from "pg";

/**
 * Proves the whole loop on a project: database → pg_net → execute_current_job → its RPC → database. A probe is a
 * wakeup naming no call (supaqueue.probe()); the function claims with the probe's id, which marks it reached. When it
 * does not come back, the evidence names the broken link: pg_net's recorded answer to the probe's wakeup (the
 * function's short code, the gateway's 404 for a missing function, a connection error), or its absence.
 */

export interface ProbeOptions {
  /** How long to keep trying (a fresh deploy can take a while to serve, a new secret to reach the workers). */
  timeoutMs?: number;
  /** How long one probe is given before another is sent. */
  attemptMs?: number;
  /** How often the database is looked at while waiting. */
  pollMs?: number;
}

export type ProbeResult =
  | { ok: true; ms: number; probes: number }
  | { ok: false; link: string; message: string; probes: number };

/** pg_net's record of one wakeup, and whether the request still waits in its queue. */
interface Evidence {
  reached: boolean;
  queued: boolean;
  status: number | null;
  content: string | null;
  timedOut: boolean | null;
  error: string | null;
  answered: boolean;
}

/** Sends probes until one comes back or the time is up; says which link is broken when none did. */
export async function runProbe(client: pg.ClientBase, options: ProbeOptions = {}): Promise<ProbeResult> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const attemptMs = options.attemptMs ?? 10_000;
  const pollMs = options.pollMs ?? 250;
  const started = Date.now();
  const { rows: cfg } = await client.query<{ url: string | null }>(
    "select functions_url as url from supaqueue.config",
  );
  const url = `${cfg[0]?.url ?? "(no functions URL)"}/execute_current_job`;
  let probes = 0;
  let last: Evidence | null = null;
  while (Date.now() - started < timeoutMs) {
    const { rows } = await client.query<{ id: string }>("select supaqueue.probe() as id");
    const id = rows[0]?.id as string;
    probes++;
    const sent = Date.now();
    while (Date.now() - sent < attemptMs && Date.now() - started < timeoutMs) {
      await new Promise((r) => setTimeout(r, pollMs));
      last = await evidence(client, id);
      if (last.reached) return { ok: true, ms: Date.now() - started, probes };
      if (last.answered) break;
    }
    // Answered without reaching (or not answered in time): a fresh deploy or secret may still be on its way.
    if (last?.answered) await new Promise((r) => setTimeout(r, Math.min(2_000, attemptMs)));
  }
  const { link, message } = diagnose(last, url);
  return { ok: false, link, message, probes };
}

async function evidence(client: pg.ClientBase, probe: string): Promise<Evidence> {
  const { rows } = await client.query<Evidence>(
    `select p.reached_at is not null as reached,
            exists (select from net.http_request_queue q where q.id = p.wakeup_id) as queued,
            r.status_code as status, left(r.content, 500) as content, r.timed_out as "timedOut",
            r.error_msg as error, r.id is not null as answered
     from supaqueue.probe p left join net._http_response r on r.id = p.wakeup_id
     where p.id = $1`,
    [probe],
  );
  return rows[0] as Evidence;
}

/** The function's short code in an answer ({"error": "claim_rpc_404"}), when it is one of its answers. */
function codeOf(content: string | null): string | null {
  if (!content) return null;
  try {
    const body = JSON.parse(content) as { error?: unknown; code?: unknown };
    if (typeof body.error === "string") return body.error;
    if (typeof body.code === "string") return body.code;
  } catch {
    // Not JSON: a gateway's page.
  }
  return null;
}

/**
 * What a wakeup's recorded answer says about the loop, in the words a user needs: which link is broken and what to
 * do. Shared by the probe and `supaqueue doctor`.
 */
export function diagnose(e: Evidence | null, url: string): { link: string; message: string } {
  if (!e || (!e.answered && e.queued)) {
    return {
      link: "pg_net",
      message:
        "pg_net has not sent the probe's wakeup: its background worker is not running, or is far behind (select net.check_worker_is_up(); on Supabase, pg_net restarts with the database). Nothing reaches the function until it does.",
    };
  }
  if (!e.answered) {
    return {
      link: "function",
      message: `pg_net sent the probe's wakeup to ${url} but has recorded no answer yet: the function does not answer within config.request_timeout_ms, or pg_net is behind.`,
    };
  }
  if (e.timedOut) {
    return {
      link: "function",
      message: `${url} did not answer the probe's wakeup within config.request_timeout_ms: is the functions URL right, and is execute_current_job deployed?`,
    };
  }
  if (e.status === null) {
    return {
      link: "functions URL",
      message: `pg_net could not reach ${url}: ${e.error ?? "no answer"}. Check the functions URL (the action's functions-url, supaqueue.config.functions_url).`,
    };
  }
  const code = codeOf(e.content);
  const known: Record<string, [string, string]> = {
    wakeup_bad_mac: [
      "shared secret",
      "execute_current_job refused the database's wakeup: its SUPAQUEUE_SECRET differs from the Vault secret supaqueue_secret. Run the deploy again (it sets both), or set the function secret to the Vault value.",
    ],
    wakeup_unauthenticated: [
      "shared secret",
      "execute_current_job received the wakeup without its signature header: something between pg_net and the function drops the Supaqueue-Wakeup header.",
    ],
    wakeup_stale: [
      "clock",
      "execute_current_job refused the wakeup as too old: pg_net sent it late (its queue is backed up) or the database's and the function's clocks differ by more than config.clock_skew_ms.",
    ],
    wakeup_hop_version_unsupported: [
      "function version",
      "the deployed execute_current_job speaks another hop version than this database: deploy the function of this Supaqueue version.",
    ],
    function_not_configured: [
      "function environment",
      "execute_current_job is missing an environment variable (its answer names it): set it with supabase secrets set, or run the deploy again.",
    ],
    claim_rpc_404: [
      "Data API",
      "execute_current_job cannot reach Supaqueue's RPCs: the Data API is off, or the public schema is not exposed (Project Settings → Data API → Exposed schemas must include public).",
    ],
    claim_rpc_401: [
      "project key",
      "PostgREST refused execute_current_job's key: check SUPABASE_SECRET_KEYS / SUPABASE_SERVICE_ROLE_KEY of the function (legacy keys disabled?).",
    ],
    claim_rpc_403: [
      "project key",
      "PostgREST refused execute_current_job's key the rights it needs: the key is not the service_role (or sb_secret_) key.",
    ],
    claim_rpc_unreachable: [
      "REST API",
      "execute_current_job cannot reach the project's REST API at SUPABASE_URL.",
    ],
    claim_rpc_timeout: ["REST API", "the project's REST API did not answer execute_current_job in time."],
    worker_shutting_down: [
      "function",
      "every worker of execute_current_job that answered was shutting down.",
    ],
  };
  if (code && known[code]) {
    const [link, message] = known[code];
    return { link, message: `${message} (answer: HTTP ${e.status} ${code})` };
  }
  if (e.status === 404) {
    return {
      link: "function",
      message: `${url} answered 404: execute_current_job is not deployed there (supabase functions deploy execute_current_job --no-verify-jwt, or run the deploy again).`,
    };
  }
  if (e.status === 401) {
    return {
      link: "function",
      message: `${url} answered 401 before the function ran: execute_current_job was deployed with JWT verification on; deploy it with --no-verify-jwt.`,
    };
  }
  if (e.status === 200) {
    return {
      link: "function version",
      message:
        "execute_current_job answered the probe's wakeup without confirming it: the deployed function predates probes; deploy the function of this Supaqueue version.",
    };
  }
  return {
    link: "function",
    message: `${url} answered the probe's wakeup with HTTP ${e.status}${code ? ` ${code}` : ""}: ${(e.content ?? "").slice(0, 200)}`,
  };
}
