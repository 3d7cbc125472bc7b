import { randomBytes } from "node:crypto";
import pg from "pg";
import type { Completion } from "../../functions/execute_current_job/call.ts";
import { createHandler, type Handler } from "../../functions/execute_current_job/handler.ts";
import type { QueueFile } from "../config/types.ts";
import { connect, connectionConfig, describeConnectionError } from "../db/connect.ts";
import { reconcileQueues } from "../install/apply.ts";
import { trimFunctionsUrl } from "../install/deploy-settings.ts";
import type { Plan } from "../install/model.ts";
import { installSchema } from "../install/schema.ts";
import { FUNCTION_NAME } from "../install/stage.ts";
import { pgCronReady, type TickState } from "../install/tick.ts";
import { type PgNetWorker, startPgNetWorker } from "../standins/pgnet-worker.ts";
import {
  createProjectDatabase,
  databaseUrl,
  dropDatabase,
  ensureSupabaseRoles,
  INSTALLER_ROLE,
  installStandinExtensions,
} from "../standins/supabase.ts";
import { type PostgresServer, startEmbeddedPostgres } from "./embedded.ts";
import { type FunctionsServer, startFunctionsServer, type WebHandler } from "./functions-server.ts";
import { serviceRoleDatabase } from "./service-role-database.ts";

/** The key sent as `Authorization: Bearer` to function targets in local mode (there is no real project key). */
const LOCAL_SERVICE_ROLE_KEY = "local-service-role-key";

export interface LocalStackOptions {
  /** A Postgres to use; without it an embedded one is started (and deleted on stop). */
  dbUrl?: string;
  /** Queues to reconcile once installed (the action's reconcile code, as from supaqueue.yml). */
  config?: QueueFile | ((functionsOrigin: string) => QueueFile);
  /** Port of the local functions server (default: any free port). */
  port?: number;
  /** The functions URL pg_net is given, when it cannot reach 127.0.0.1 of this machine (pg_net in a container). */
  functionsUrl?: string;
  /** Answers /functions/v1/<name> for names other than execute_current_job, and every other path. */
  fallback?: WebHandler;
  /** Sent to function targets as their bearer token (default LOCAL_SERVICE_ROLE_KEY). */
  serviceRoleKey?: string;
  /** How often tick() runs when pg_cron does not run it (default 1000 ms, like Supaqueue's pg_cron schedule). */
  tickMs?: number;
  /** Refuse, before changing anything, a database this stack cannot create for itself (the demo needs its own). */
  requireOwnDatabase?: boolean;
  /** The fetch the edge function calls targets with (default: the global fetch). */
  fetch?: typeof fetch;
  /** Called with each outcome the edge function reports. */
  onCompletion?: (completion: Completion, recorded: boolean) => void;
  /** Progress lines (what is being started). */
  log?: (line: string) => void;
}

export interface LocalStack {
  /** Connection string of the project database as the installer role (what a project's `postgres` would be). */
  dbUrl: string;
  /** Name of the database this stack created (dropped on stop), or null when it installed into the given one. */
  createdDatabase: string | null;
  embedded: boolean;
  functionsUrl: string;
  /** Connected as the installer role; small, shared by the handler's reports and the caller's queries. */
  pool: pg.Pool;
  /** What reconciling the queues did (null without a config). */
  plan: Plan | null;
  handler: Handler;
  /** Stops everything this stack started; the created database and embedded data are removed. Safe to call twice. */
  stop(): Promise<void>;
}

/**
 * Starts Supaqueue on this machine with no Supabase account: Postgres (given or embedded), Supabase's roles and the
 * pg_net / Vault stand-ins where we are superuser, a database laid out like a project with Supaqueue installed by
 * the non-superuser installer role, the real execute_current_job handler served in process, the pg_net stand-in
 * worker, and a ticker in place of pg_cron. Everything started is stopped again if a later step fails.
 */
export async function startLocalStack(options: LocalStackOptions = {}): Promise<LocalStack> {
  const log = options.log ?? (() => {});
  const cleanups: (() => Promise<void>)[] = [];
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
  };

  try {
    let server: PostgresServer;
    if (options.dbUrl) {
      server = { adminUrl: options.dbUrl, embedded: false, stop: async () => {} };
    } else {
      log("Starting an embedded Postgres 15 (no install needed)...");
      const embedded = await startEmbeddedPostgres();
      server = embedded;
      cleanups.push(async () => {
        await embedded.stop();
        log("Stopped the embedded Postgres and deleted its data.");
      });
    }

    const probe = await connect(server.adminUrl);
    let superuser: boolean;
    try {
      const { rows } = await probe.query<{ superuser: boolean }>(
        "select rolsuper as superuser from pg_roles where rolname = current_user",
      );
      superuser = rows[0]?.superuser ?? false;
      if (superuser) {
        const available = await probe.query<{ n: number }>(
          "select count(*)::int as n from pg_available_extensions where name in ('pg_net', 'supabase_vault')",
        );
        if ((available.rows[0]?.n ?? 0) < 2 && !(await installStandinExtensions(probe))) {
          throw new Error(
            "supaqueue dev: this server has no pg_net and supabase_vault, and their stand-ins cannot be copied into its extension folder (is it on another machine?). Leave out --db-url to use an embedded Postgres.",
          );
        }
        await ensureSupabaseRoles(probe);
      }
    } finally {
      await probe.end().catch(() => {});
    }

    if (!superuser && options.requireOwnDatabase) {
      throw new Error(
        "supaqueue dev: the demo needs its own database, so it needs a superuser connection (or no --db-url, for an embedded Postgres); the given user is not a superuser, and nothing was changed.",
      );
    }

    // As superuser, a fresh database laid out like a project; otherwise (a Supabase stack's `postgres`) the one given.
    let dbUrl = server.adminUrl;
    let projectAdminUrl = server.adminUrl;
    let createdDatabase: string | null = null;
    if (superuser) {
      createdDatabase = `supaqueue_dev_${randomBytes(4).toString("hex")}`;
      await createProjectDatabase(server.adminUrl, createdDatabase);
      const name = createdDatabase;
      cleanups.push(async () => {
        await dropDatabase(server.adminUrl, name);
        log(`Removed database ${name}.`);
      });
      projectAdminUrl = databaseUrl(server.adminUrl, createdDatabase);
      dbUrl = databaseUrl(server.adminUrl, createdDatabase, INSTALLER_ROLE);
      log(`Created database ${createdDatabase} (removed when this stops).`);
    }

    const functions: FunctionsServer = await startFunctionsServer(options.port ?? 0);
    cleanups.push(() => functions.stop());
    functions.fallback = options.fallback;
    const functionsUrl = trimFunctionsUrl(options.functionsUrl ?? functions.functionsUrl);

    const pool = new pg.Pool({ ...connectionConfig(dbUrl), max: 4, application_name: "supaqueue dev" });
    pool.on("error", () => {});
    cleanups.push(() => pool.end());

    const client = await connect(dbUrl);
    let plan: Plan | null = null;
    let secret: string;
    let tick: TickState;
    let standinPgNet: boolean;
    try {
      log(
        `Installing Supaqueue as ${superuser ? INSTALLER_ROLE : "the given user"} (functions at ${functionsUrl})...`,
      );
      // pg_cron runs tick where it already can (a `supabase start` stack); otherwise this stack runs it itself.
      const installed = await installSchema(client, {
        functionsUrl,
        tick: (await pgCronReady(client)) ? "pg_cron" : "external",
      });
      secret = installed.secret;
      tick = installed.tick;
      if (options.config) {
        const config =
          typeof options.config === "function" ? options.config(functions.origin) : options.config;
        plan = await reconcileQueues(client, config);
      }
      const pgNet = await client.query<{ standin: boolean }>(
        "select to_regprocedure('net._enqueue(text, text, jsonb, bytea, integer)') is not null as standin",
      );
      standinPgNet = pgNet.rows[0]?.standin ?? false;
    } finally {
      await client.end().catch(() => {});
    }

    // The same handler as the deployed function, reaching the database as service_role (as through PostgREST).
    const db = serviceRoleDatabase(pool);
    const handler = createHandler({
      secret,
      db: {
        claim: (ids, probe) => db.claim(ids, probe),
        async completeAndClaim(outcomes, claimWithinMs) {
          const answer = await db.completeAndClaim(outcomes, claimWithinMs);
          const finished = new Set(answer.finished.map(String));
          for (const outcome of outcomes)
            options.onCompletion?.(outcome, finished.has(String(outcome.current_job_id)));
          return answer;
        },
        completeCallback: (report) => db.completeCallback(report),
      },
      projectKey: { value: options.serviceRoleKey ?? LOCAL_SERVICE_ROLE_KEY, kind: "jwt" },
      functionsOrigins: [...new Set([functions.origin, new URL(functionsUrl).origin])],
      fetch: options.fetch ?? ((input, init) => fetch(input, init)),
      logger: { info: () => {}, warn: (m) => log(m), error: (m) => log(m) },
      // This process is no edge worker: nothing retires it at a wall clock.
      lifetime: { wallClockMs: Number.POSITIVE_INFINITY },
    });
    functions.functions.set(FUNCTION_NAME, handler);
    cleanups.push(async () => {
      // Outcomes of calls still running are reported before the database goes; a stuck target is not waited for.
      await Promise.race([handler.idle(), new Promise((r) => setTimeout(r, 5000))]);
    });

    let worker: PgNetWorker | null = null;
    if (standinPgNet) {
      worker = await startPgNetWorker(projectAdminUrl);
      const w = worker;
      cleanups.push(() => w.stop());
    }

    if (tick.mode === "external") {
      const ticker = startTicker(dbUrl, options.tickMs ?? 1000, log);
      cleanups.push(() => ticker.stop());
    } else {
      log(`pg_cron runs supaqueue.tick() (${tick.schedule}).`);
    }

    return {
      dbUrl,
      createdDatabase,
      embedded: server.embedded,
      functionsUrl,
      pool,
      plan,
      handler,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** Runs supaqueue.tick() every `everyMs`, as pg_cron does on Supabase: leases, delayed jobs, backoffs, retention. */
function startTicker(dbUrl: string, everyMs: number, log: (line: string) => void): { stop(): Promise<void> } {
  const client = new pg.Client({ ...connectionConfig(dbUrl), application_name: "supaqueue dev (tick)" });
  client.on("error", () => {});
  const connected = client.connect().catch((error) => {
    log(describeConnectionError(dbUrl, error));
  });
  let running: Promise<unknown> = Promise.resolve();
  const timer = setInterval(() => {
    running = running.then(() =>
      connected
        .then(() => client.query("select supaqueue.tick()"))
        .catch((error) => log(`tick failed: ${(error as Error).message}`)),
    );
  }, everyMs);
  return {
    async stop() {
      clearInterval(timer);
      await running;
      await client.end().catch(() => {});
    },
  };
}
