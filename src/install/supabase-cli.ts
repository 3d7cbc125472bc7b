import { existsSync } from "node:fs";
import { delimiter, join } from "node:path";
import { getExecOutput } from "@actions/exec";
import type { Logger } from "./logger.ts";
import { FUNCTION_NAME, type StagedWorkdir } from "./stage.ts";

/** The CLI fetched through npx when none is on PATH: a release known to work with --use-api deploys. */
const PINNED_CLI = "supabase@2.117.0";

export interface SupabaseCli {
  command: string;
  /** Arguments that come before the subcommand (npx's). */
  prefix: string[];
  version: string;
  major: number;
}

/** The project's access token was refused, by the CLI (wrong format) or by the Management API (401/403). */
class AccessTokenRejected extends Error {
  constructor(detail: string) {
    super(
      `supaqueue: Supabase rejected the access token (${detail}). Create a personal access token at ` +
        "https://supabase.com/dashboard/account/tokens, store it as a repository secret, and pass it as access-token.",
    );
    this.name = "AccessTokenRejected";
  }
}

function onPath(name: string, env: NodeJS.ProcessEnv): string | null {
  for (const dir of (env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    if (existsSync(candidate)) return candidate;
  }
  return null;
}

/** The `supabase` on PATH when there is one, otherwise the pinned release through npx; its version decides the flags. */
export async function findSupabaseCli(
  log: Logger,
  env: NodeJS.ProcessEnv = process.env,
): Promise<SupabaseCli> {
  const local = onPath(process.platform === "win32" ? "supabase.exe" : "supabase", env);
  const cli: SupabaseCli = local
    ? { command: local, prefix: [], version: "", major: 0 }
    : { command: "npx", prefix: ["--yes", PINNED_CLI], version: "", major: 0 };
  const out = await getExecOutput(cli.command, [...cli.prefix, "--version"], {
    silent: true,
    ignoreReturnCode: true,
  });
  const version = /(\d+)\.(\d+)\.(\d+)/.exec(out.stdout + out.stderr);
  if (out.exitCode !== 0 || !version) {
    throw new Error(
      `supaqueue: cannot run the Supabase CLI (${cli.command} ${[...cli.prefix, "--version"].join(" ")}): ${lastLines(out.stderr || out.stdout)}`,
    );
  }
  cli.version = version[0];
  cli.major = Number(version[1]);
  log.info(`Supabase CLI ${cli.version} (${local ? local : `npx ${PINNED_CLI}`})`);
  return cli;
}

/** How to name the project: CLI 3.x prefers --remote=<ref>; --yes answers the prompts 3.x asks off a terminal. */
export function projectArgs(cli: Pick<SupabaseCli, "major">, projectRef: string): string[] {
  return cli.major >= 3 ? [`--remote=${projectRef}`, "--yes"] : ["--project-ref", projectRef, "--yes"];
}

export interface CliContext {
  cli: SupabaseCli;
  projectRef: string;
  /** Passed to the CLI in its environment (SUPABASE_ACCESS_TOKEN), never on the command line. */
  accessToken: string;
  workdir: StagedWorkdir;
  log: Logger;
}

const REJECTED_TOKEN = /Invalid access token format|status 40[13]\b|Unauthorized|invalid.*access token/i;

async function runCli(ctx: CliContext, args: string[]): Promise<string> {
  const all = [
    ...ctx.cli.prefix,
    ...args,
    ...projectArgs(ctx.cli, ctx.projectRef),
    "--workdir",
    ctx.workdir.dir,
  ];
  ctx.log.info(`supabase ${args.join(" ")} ${projectArgs(ctx.cli, ctx.projectRef).join(" ")}`);
  const out = await getExecOutput(ctx.cli.command, all, {
    cwd: ctx.workdir.dir,
    env: {
      ...(process.env as Record<string, string>),
      SUPABASE_ACCESS_TOKEN: ctx.accessToken,
      SUPABASE_TELEMETRY_DISABLED: process.env.SUPABASE_TELEMETRY_DISABLED ?? "1",
    },
    silent: true,
    ignoreReturnCode: true,
  });
  const output = `${out.stdout}\n${out.stderr}`;
  if (out.exitCode !== 0) {
    const rejected = REJECTED_TOKEN.exec(output);
    if (rejected) throw new AccessTokenRejected(rejected[0]);
    if (/status 404\b|project.*not found/i.test(output)) {
      throw new Error(
        `supaqueue: Supabase has no project "${ctx.projectRef}" that this access token can reach: check project-ref (Project Settings → General) and that the token's account belongs to the project's organization`,
      );
    }
    throw new Error(
      `supaqueue: supabase ${args[0]} ${args[1] ?? ""} failed (exit ${out.exitCode}): ${lastLines(output)}`,
    );
  }
  for (const line of out.stdout.split("\n")) if (line.trim()) ctx.log.info(`  ${line.trim()}`);
  return out.stdout;
}

/** Checks the token and the project before anything changes: a read-only call to the Management API. */
export async function checkAccess(ctx: CliContext): Promise<void> {
  await runCli(ctx, ["functions", "list"]);
}

/** Sets the function's SUPAQUEUE_SECRET through an env file, so the value is never on a command line. */
export async function setFunctionSecret(
  ctx: CliContext,
  secret: string,
  functionsUrl: string,
): Promise<void> {
  // SUPAQUEUE_FUNCTIONS_URL: the functions origin the database calls (a custom domain, or a self-hosted gateway),
  // where the function may send the project's key besides SUPABASE_URL's origin.
  const file = ctx.workdir.envFile({ SUPAQUEUE_SECRET: secret, SUPAQUEUE_FUNCTIONS_URL: functionsUrl });
  await runCli(ctx, ["secrets", "set", "--env-file", file]);
}

/** Deploys execute_current_job from the staged workdir; pg_net's wakeups carry an HMAC made with the shared secret, not a JWT. */
export async function deployFunction(ctx: CliContext): Promise<void> {
  await runCli(ctx, ["functions", "deploy", FUNCTION_NAME, "--use-api", "--no-verify-jwt"]);
}

/** Unsets the function's secrets (uninstall). */
export async function unsetFunctionSecret(ctx: CliContext): Promise<void> {
  await runCli(ctx, ["secrets", "unset", "SUPAQUEUE_SECRET", "SUPAQUEUE_FUNCTIONS_URL"]);
}

/** Deletes execute_current_job from the project (uninstall). */
export async function deleteFunction(ctx: CliContext): Promise<void> {
  await runCli(ctx, ["functions", "delete", FUNCTION_NAME]);
}

function lastLines(text: string): string {
  return text.trim().split("\n").filter(Boolean).slice(-3).join(" / ") || "no output";
}
