/**
 * The `supaqueue` command: the action's install code for a laptop or another CI (deploy, plan), day-to-day
 * operations (status, dashboard, doctor, enqueue, pause, resume, purge, cancel, retry, rotate-key, uninstall), payload types (gen
 * types), the schema as Supabase migrations (migrations) and a local stack (dev). Exit codes: 0 done, 1 failed, 2 bad usage.
 */

import { type CommandSpec, helpText, type Parsed, parseCommand, UsageError } from "./cli/args.ts";
import { DASHBOARD, runDashboard } from "./cli/dashboard.ts";
import { DEPLOY, PLAN, runDeploy } from "./cli/deploy.ts";
import { DEV, runDev } from "./cli/dev.ts";
import { DOCTOR, runDoctorCommand } from "./cli/doctor.ts";
import { ENQUEUE, runEnqueue } from "./cli/enqueue.ts";
import { GEN, runGen } from "./cli/gen-types.ts";
import { CANCEL, RETRY, runCancel, runRetry } from "./cli/job-ops.ts";
import { terminalLogger } from "./cli/logger.ts";
import { MIGRATIONS, runMigrations } from "./cli/migrations.ts";
import { PAUSE, PURGE, RESUME, runQueueOperation } from "./cli/queue-ops.ts";
import { ROTATE_KEY, runRotateKey } from "./cli/rotate-key.ts";
import { runStatus, STATUS } from "./cli/status.ts";
import { runUninstall, UNINSTALL } from "./cli/uninstall.ts";
import { ConfigError, formatProblem } from "./config/types.ts";

type Env = Record<string, string | undefined>;
type Run = (parsed: Parsed, env: Env, log: ReturnType<typeof terminalLogger>) => Promise<number>;

const COMMANDS: [CommandSpec, Run][] = [
  [DEV, runDev],
  [DEPLOY, (parsed, env, log) => runDeploy(DEPLOY, parsed, env, log)],
  [PLAN, (parsed, env, log) => runDeploy(PLAN, parsed, env, log)],
  [STATUS, (parsed, env) => runStatus(parsed, env)],
  [DASHBOARD, (parsed, env) => runDashboard(parsed, env)],
  [DOCTOR, (parsed, env) => runDoctorCommand(parsed, env)],
  [ENQUEUE, (parsed, env) => runEnqueue(parsed, env)],
  ...[PAUSE, RESUME, PURGE].map((operation): [CommandSpec, Run] => [
    operation.spec,
    (parsed, env) => runQueueOperation(operation, parsed, env),
  ]),
  [CANCEL, (parsed, env) => runCancel(parsed, env)],
  [RETRY, (parsed, env) => runRetry(parsed, env)],
  [ROTATE_KEY, (parsed, env) => runRotateKey(parsed, env)],
  [GEN, async (parsed, env) => runGen(parsed, env)],
  [MIGRATIONS, async (parsed) => runMigrations(parsed)],
  [UNINSTALL, runUninstall],
];

export function mainHelp(): string {
  const width = Math.max(...COMMANDS.map(([spec]) => spec.name.length)) + 4;
  return [
    "supaqueue: durable HTTP-call queues for Supabase.",
    "",
    "Usage: supaqueue <command> [flags]",
    "",
    "Commands:",
    ...COMMANDS.map(([spec]) => `  ${spec.name.padEnd(width)}${spec.brief}`),
    "",
    "Run supaqueue <command> --help for its flags. `npm start` runs `supaqueue dev --demo`.",
  ].join("\n");
}

export async function main(argv: string[], env: Env = process.env): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(`${mainHelp()}\n`);
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS.find(([spec]) => spec.name === name);
  const log = terminalLogger();
  try {
    if (!command) {
      throw new UsageError(
        "",
        `unknown command "${name}"; commands: ${COMMANDS.map(([spec]) => spec.name).join(", ")} (see supaqueue --help)`,
      );
    }
    const [spec, run] = command;
    const parsed = parseCommand(spec, rest);
    if (parsed.values.help) {
      process.stdout.write(`${helpText(spec)}\n`);
      return 0;
    }
    return await run(parsed, env, log);
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`${log.mask(error.message)}\n`);
      return 2;
    }
    if (error instanceof ConfigError) {
      process.stderr.write(`${log.mask(error.problems.map(formatProblem).join("\n"))}\n`);
      return 1;
    }
    process.stderr.write(`${log.mask(failureLine(error, env))}\n`);
    return 1;
  }
}

/**
 * What an unexpected failure prints: one line starting with `supaqueue:` that says what went wrong, never a stack
 * trace, unless SUPAQUEUE_DEBUG=1 asks for it (printed above the line, so the line stays the last).
 */
export function failureLine(error: unknown, env: Env = process.env): string {
  const message = (error instanceof Error ? error.message : String(error)).trim() || "failed, saying nothing";
  const line = message.startsWith("supaqueue") ? message : `supaqueue: ${message}`;
  const stack = env.SUPAQUEUE_DEBUG && error instanceof Error ? `${error.stack}\n` : "";
  return `${stack}${line}`;
}

/** Ends the process with exit code `code` once everything written has been flushed. */
function exit(code: number): void {
  process.stdout.write("", () => process.stderr.write("", () => process.exit(code)));
}

// A failure no command caught (an error event nobody listens to, a promise nobody awaits) ends in the same one line.
for (const event of ["uncaughtException", "unhandledRejection"] as const) {
  process.on(event, (error: unknown) => {
    process.stderr.write(`${failureLine(error)}\n`);
    exit(1);
  });
}

// An explicit exit: a handle left open (a pool, a timer) must not keep a finished command running.
exit(await main(process.argv.slice(2)));
