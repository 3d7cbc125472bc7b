import { execFile } from "node:child_process";
import { join } from "node:path";
import { projectRoot } from "../../src/paths.ts";

/** The CLI is run the way users run it: `node bin/supaqueue.js ...` (what npx supaqueue runs) and `npm start`. */
export const ROOT = projectRoot();
export const BIN = join(ROOT, "bin", "supaqueue.js");

/** How a run of the CLI ended. */
export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

// A clean environment: no database URL, token, browser or debug switch from the machine leaks into what a test means to
// leave out.
export function cliEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of [
    "DATABASE_URL",
    "SUPABASE_DB_URL",
    "SUPABASE_ACCESS_TOKEN",
    "SUPABASE_PROJECT_REF",
    "SUPAQUEUE_SECRET",
    "SUPAQUEUE_DEBUG",
    // The dashboard opens its URL in $BROWSER: a test never starts a browser that way.
    "BROWSER",
  ]) {
    delete env[name];
  }
  return { ...env, NO_COLOR: "1", ...extra };
}

/** `command <args>` in `cwd`, in the clean environment plus `extraEnv`. */
export function run(
  command: string,
  args: string[],
  cwd: string,
  extraEnv: Record<string, string>,
  timeout: number,
): Promise<Run> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd, env: cliEnv(extraEnv), timeout }, (error, stdout, stderr) => {
      const code = error ? ((error as { code?: number }).code ?? 1) : 0;
      resolve({ code: typeof code === "number" ? code : 1, stdout, stderr });
    });
  });
}

/** `supaqueue <args>` from the project's root, in the clean environment plus `extraEnv`. */
export function cli(args: string[], extraEnv: Record<string, string> = {}, timeout = 60_000): Promise<Run> {
  return run("node", [BIN, ...args], ROOT, extraEnv, timeout);
}

/** `npm start --silent -- <args>` in `cwd` (a checkout), in the clean environment plus `extraEnv`. */
export function npmStart(
  cwd: string,
  args: string[],
  extraEnv: Record<string, string> = {},
  timeout = 150_000,
): Promise<Run> {
  return run("npm", ["start", "--silent", "--", ...args], cwd, extraEnv, timeout);
}
