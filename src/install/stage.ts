import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { projectRoot } from "../paths.ts";

export const FUNCTION_NAME = "execute_current_job";

export interface StagedWorkdir {
  /** A folder holding supabase/functions/execute_current_job/ (and _shared/), for `supabase --workdir`. */
  dir: string;
  /** Writes an env file readable only by this user, for `supabase secrets set --env-file`, and returns its path. */
  envFile(values: Record<string, string>): string;
  remove(): void;
}

/**
 * The Supabase CLI deploys supabase/functions/<name>/ under its working directory, and Supaqueue ships its function
 * in functions/: this copies the function (and functions/_shared/ when there is one) into a fresh temporary folder
 * laid out the way the CLI wants.
 */
export function stageWorkdir(root: string = projectRoot()): StagedWorkdir {
  const source = join(root, "functions", FUNCTION_NAME);
  if (!existsSync(join(source, "index.ts"))) {
    throw new Error(`supaqueue: the edge function is missing: ${join(source, "index.ts")} does not exist`);
  }
  const dir = mkdtempSync(join(tmpdir(), "supaqueue-deploy-"));
  const functions = join(dir, "supabase", "functions");
  mkdirSync(functions, { recursive: true });
  cpSync(source, join(functions, FUNCTION_NAME), { recursive: true });
  const shared = join(root, "functions", "_shared");
  if (existsSync(shared)) cpSync(shared, join(functions, "_shared"), { recursive: true });
  return {
    dir,
    envFile(values) {
      const path = join(dir, "secrets.env");
      // Single quotes keep the value literal for the CLI's dotenv parser (no $-expansion, no escapes).
      const text = Object.entries(values)
        .map(([name, value]) => `${name}='${value}'\n`)
        .join("");
      writeFileSync(path, text, { mode: 0o600 });
      chmodSync(path, 0o600);
      return path;
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
