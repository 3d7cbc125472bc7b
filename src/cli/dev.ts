import { existsSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { loadConfig } from "../config/load.ts";
import { ConfigError, type QueueFile } from "../config/types.ts";
import type { Dashboard } from "../dashboard/server.ts";
import { httpUrlProblem } from "../install/deploy-settings.ts";
import { logProblems } from "../install/logger.ts";
import { demoConfig, enqueueDemoJobs, readReport, reportTable, waitForDemo } from "../local/demo.ts";
import { demoTarget } from "../local/demo-target.ts";
import { forwardTo } from "../local/functions-server.ts";
import { type LocalStack, startLocalStack } from "../local/stack.ts";
import { stallLine } from "../local/stall.ts";
import { type CommandSpec, type Parsed, stringFlag, UsageError } from "./args.ts";
import { dashboardFromFlags, openInBrowser } from "./dashboard.ts";
import type { TerminalLogger } from "./logger.ts";

export const DEV: CommandSpec = {
  name: "dev",
  brief: "run Supaqueue locally (embedded Postgres, no account); --demo runs the demo",
  summary:
    "run Supaqueue on this machine with no Supabase account and no Postgres install: an embedded Postgres, the schema, your queues, the pg_net stand-in and the real edge-function handler in process. Runs until Ctrl-C.",
  flags: {
    "db-url": {
      type: "string",
      value: "URL",
      description:
        "Use this Postgres instead of an embedded one (default: $DATABASE_URL). As a superuser, dev creates its own database there and drops it on exit; otherwise (e.g. a `supabase start` stack) it installs into the given database.",
    },
    config: {
      type: "string",
      value: "FILE",
      description: "The queue file (default: supaqueue.yml, if there is one).",
    },
    demo: {
      type: "boolean",
      description:
        "Run the demo instead: queues calling endpoints served by this process, a few hundred jobs, a final table; exits when every job has finished.",
    },
    port: {
      type: "string",
      value: "PORT",
      description: "Port of the local functions server on 127.0.0.1 (default: any free port).",
    },
    "functions-url": {
      type: "string",
      value: "URL",
      description:
        "The functions URL given to pg_net, when it cannot reach 127.0.0.1 here (pg_net in Docker: http://host.docker.internal:PORT/functions/v1 with --port).",
    },
    "forward-functions": {
      type: "string",
      value: "URL",
      description:
        "Send calls to other edge functions (queues with function:) there, e.g. `supabase functions serve` at http://127.0.0.1:54321/functions/v1.",
    },
    "service-role-key": {
      type: "string",
      value: "KEY",
      description:
        "Bearer token sent to function targets (default: $SUPABASE_SERVICE_ROLE_KEY, else a placeholder).",
    },
    timeout: {
      type: "string",
      value: "SECONDS",
      description: "With --demo: give up (exit 1) after this long (default 120).",
    },
    "dashboard-port": {
      type: "string",
      value: "PORT",
      description: "Port of the dashboard on 127.0.0.1 (default: any free port).",
    },
    "no-dashboard": { type: "boolean", description: "Do not serve the dashboard." },
    keep: {
      type: "boolean",
      description:
        "With --demo: keep running (and serving the dashboard) once every demo job has finished, until Ctrl-C.",
    },
    stall: {
      type: "string",
      value: "SECONDS",
      description:
        "With --demo: when no job has finished for this long, name the link that holds the jobs up (default 10); after 120 s without one the demo gives up (exit 1).",
    },
  },
  notes: [
    "npm start runs `supaqueue dev --demo`.",
    'Enqueue from another terminal: npx supaqueue enqueue <queue> \'{"hello":"world"}\' --db-url <the printed URL>',
  ],
};

/** `dev` and `dev --demo`. */
export async function runDev(
  parsed: Parsed,
  env: Record<string, string | undefined>,
  log: TerminalLogger,
): Promise<number> {
  const v = parsed.values;
  const port = v.port === undefined ? 0 : Number(v.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new UsageError("dev", `--port must be a port number from 0 to 65535, not "${v.port}"`);
  }
  const seconds = (flag: "timeout" | "stall", fallback: number) => {
    const value = v[flag] === undefined ? fallback : Number(v[flag]);
    if (!Number.isFinite(value) || value <= 0) {
      throw new UsageError("dev", `--${flag} must be a number of seconds, not "${v[flag]}"`);
    }
    return value;
  };
  const timeoutS = seconds("timeout", 120);
  const stallS = seconds("stall", 10);
  for (const flag of ["functions-url", "forward-functions"]) {
    const value = v[flag];
    const problem = typeof value === "string" && httpUrlProblem(value, "http://127.0.0.1:54321/functions/v1");
    if (problem) throw new UsageError("dev", `--${flag} ${problem}`);
  }
  const demo = Boolean(v.demo);
  if (demo && (v.config || v["forward-functions"])) {
    throw new UsageError(
      "dev",
      `--demo runs its own queues: leave out --${v.config ? "config" : "forward-functions"}`,
    );
  }
  const dbUrl = stringFlag(v, "db-url", env, ["DATABASE_URL"]);
  if (dbUrl && !/^postgres(ql)?:\/\//.test(dbUrl)) {
    throw new UsageError("dev", "--db-url must be a postgres:// or postgresql:// connection string");
  }
  const config = demo ? undefined : readDevConfig(v.config as string | undefined, env, log);
  const forward = v["forward-functions"] as string | undefined;
  const print = (line: string) => log.info(line);

  let stack: LocalStack | undefined;
  let dashboard: Dashboard | undefined;
  let interrupted = false;
  let finish: (() => void) | undefined;
  const interruptedPromise = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const onSignal = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    print("\nStopping (Ctrl-C again to quit at once)...");
    finish?.();
  };
  // This command stops everything itself, in order: the database is dropped and the data folder removed.
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    stack = await startLocalStack({
      dbUrl,
      port,
      functionsUrl: v["functions-url"] as string | undefined,
      config: demo ? demoConfig : config,
      requireOwnDatabase: demo,
      fallback: demo ? demoTarget() : forward ? forwardTo(forward) : undefined,
      serviceRoleKey: stringFlag(v, "service-role-key", env, ["SUPABASE_SERVICE_ROLE_KEY"]),
      fetch: demo ? undefined : loggingFetch(print),
      log: print,
    });
    if (interrupted) return 0;
    if (!v["no-dashboard"]) {
      dashboard = await dashboardFromFlags(parsed, "dev", stack.dbUrl);
      print(`Dashboard: ${dashboard.url}`);
      if (openInBrowser(dashboard.url, env)) print("Opened the dashboard in $BROWSER.");
    }

    if (demo) {
      const jobs = await enqueueDemoJobs(stack.pool);
      print(
        `Enqueued ${jobs} jobs on 4 queues: fast (5 workers), slow (2 workers, 1 s timeout), flaky (503 on ~30% of calls, retried), rate-limited (20 calls/s).`,
      );
      const started = Date.now();
      const outcome = await Promise.race([
        waitForDemo(stack.pool, {
          timeoutMs: timeoutS * 1000,
          stallMs: stallS * 1000,
          tty: Boolean(process.stdout.isTTY),
          write: (text) => process.stdout.write(text),
        }),
        interruptedPromise.then(() => null),
      ]);
      const report = await readReport(stack.pool);
      print("");
      print(reportTable(report));
      const total = report.reduce((n, q) => n + q.jobs, 0);
      const failed = report.reduce((n, q) => n + q.failed, 0);
      if (!outcome) {
        print("Interrupted before every demo job finished.");
        return 130;
      }
      if (!outcome.finished) {
        // Thrown, so that it is the run's last line, after the stack has stopped.
        const stuck = outcome.diagnosis ? stallLine(outcome.diagnosis, outcome.stalledMs) : null;
        throw new Error(
          outcome.why === "stalled"
            ? `supaqueue: the demo gave up. ${stuck}`
            : `supaqueue: not every demo job finished within ${timeoutS} s.${stuck ? ` ${stuck}` : ""}`,
        );
      }
      print(
        `All ${total} demo jobs finished in ${((Date.now() - started) / 1000).toFixed(1)} s: ${total - failed} successful, ${failed} failed (failed on purpose: 422 answers, or 503 on every attempt).`,
      );
      if (v.keep) {
        print("Still running (--keep): Ctrl-C stops everything.");
        await interruptedPromise;
      }
      return 0;
    }

    printReady(stack, print);
    await interruptedPromise;
    return 0;
  } catch (error) {
    if (error instanceof ConfigError) {
      logProblems(log, error.problems);
      return 1;
    }
    throw error;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await dashboard?.stop();
    await stack?.stop();
  }
}

function readDevConfig(
  given: string | undefined,
  env: Record<string, string | undefined>,
  log: TerminalLogger,
): QueueFile | undefined {
  const file = given ?? "supaqueue.yml";
  const path = isAbsolute(file) ? file : resolve(process.cwd(), file);
  if (!given && !existsSync(path)) {
    log.info("No supaqueue.yml here: starting with no queues (pass --config FILE, or --demo to see one).");
    return undefined;
  }
  const config = loadConfig(path, file, { env });
  if (config.schedules.length === 0) return config;
  // Schedules are pg_cron jobs, which an embedded Postgres does not have and a throwaway database should not get.
  const names = config.schedules.map((s) => s.name).join(", ");
  log.info(
    `Schedules (${names}) are not run locally: they become pg_cron jobs when deployed. Enqueue by hand meanwhile: npx supaqueue enqueue <queue> '<payload>'.`,
  );
  return { ...config, schedules: [] };
}

function printReady(stack: LocalStack, print: (line: string) => void): void {
  const queues =
    stack.plan?.queues.map((q) => `${q.name} (${q.workers.to} worker${q.workers.to === 1 ? "" : "s"})`) ?? [];
  // A URL the user gave may hold their password: shown masked, and the hints then name it instead of repeating it.
  const hasPassword = new URL(stack.dbUrl).password !== "";
  const shown = hasPassword ? withoutPassword(stack.dbUrl) : stack.dbUrl;
  const url = hasPassword ? '"$DATABASE_URL"' : stack.dbUrl;
  print("");
  print("Supaqueue is running locally.");
  print(`  database   ${shown}`);
  print(`  functions  ${stack.functionsUrl}`);
  print(`  queues     ${queues.length > 0 ? queues.join(", ") : "none"}`);
  print("");
  print(`Enqueue:  npx supaqueue enqueue <queue> '{"hello":"world"}' --db-url ${url}`);
  print(`Status:   npx supaqueue status --db-url ${url}`);
  print(`SQL:      psql ${url}`);
  print(`Ctrl-C stops everything${stack.createdDatabase ? ` and removes ${stack.createdDatabase}` : ""}.`);
}

function withoutPassword(url: string): string {
  const u = new URL(url);
  u.password = "***";
  return u.toString();
}

/** The edge function's fetch, logging each call to a target and its answer (what `dev` shows as calls happen). */
function loggingFetch(print: (line: string) => void): typeof fetch {
  return async (input, init) => {
    const started = Date.now();
    const headers = new Headers(init?.headers);
    const what = `${init?.method ?? "GET"} ${String(input)} (job ${headers.get("supaqueue-job-id")}, attempt ${headers.get("supaqueue-attempt")})`;
    try {
      const response = await fetch(input, init);
      print(`${what} → ${response.status} in ${Date.now() - started} ms`);
      return response;
    } catch (error) {
      print(
        `${what} → ${(error as Error).name === "AbortError" ? "timed out" : `failed: ${(error as Error).message}`} after ${Date.now() - started} ms`,
      );
      throw error;
    }
  };
}
