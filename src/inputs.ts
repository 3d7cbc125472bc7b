import { isAbsolute, resolve } from "node:path";
import type { DeployOptions } from "./install/deploy.ts";
import { TICK_MODES, type TickMode } from "./install/tick.ts";

/** The action's inputs (see action.yml), checked and typed. */
export interface Inputs {
  projectRef: string;
  accessToken: string | undefined;
  dbUrl: string;
  supaqueueSecret: string | undefined;
  /** The config input as given (relative to the workspace), used in annotations. */
  config: string;
  /** Where the config file is read from. */
  configPath: string;
  functionsUrl: string | undefined;
  dryRun: boolean;
  /** Who runs tick() every second (input `tick`). */
  tick: TickMode;
  /** Prove the whole loop after installing (input `probe`). */
  probe: boolean;
}

/** An input that is missing or malformed; the message names the input and what it should be. */
export class InputError extends Error {
  constructor(input: string, problem: string) {
    super(`supaqueue: input "${input}" ${problem}`);
    this.name = "InputError";
  }
}

const TOKEN = /^sbp_(oauth_|v0_)?[a-f0-9]{40}$/;
const SECRET = /^[A-Za-z0-9._~+/=-]{16,256}$/;

/**
 * Reads the inputs through `get` (core.getInput in the action) and checks each one before anything is touched.
 * Secrets are handed to `mask` as soon as they are read.
 */
export function readInputs(
  get: (name: string) => string,
  mask: (value: string) => void,
  workspace: string = process.env.GITHUB_WORKSPACE || process.cwd(),
): Inputs {
  const value = (name: string) => get(name).trim() || undefined;
  const required = (name: string, what: string) => {
    const v = value(name);
    if (!v) throw new InputError(name, `is required: ${what}`);
    return v;
  };

  const accessToken = value("access-token");
  if (accessToken) mask(accessToken);
  const supaqueueSecret = value("supaqueue-secret");
  if (supaqueueSecret) mask(supaqueueSecret);
  const dbUrl = required("db-url", "the project's Postgres connection string, e.g. from a repository secret");
  mask(dbUrl);
  maskPassword(dbUrl, mask);

  const dryRun = booleanInput("dry-run", value("dry-run"));
  const projectRef = required("project-ref", "the Supabase project reference (Project Settings → General)");
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(projectRef)) {
    throw new InputError(
      "project-ref",
      "must be the project reference: lowercase letters and digits, e.g. abcdefghijklmnopqrst",
    );
  }
  if (!accessToken && !dryRun) {
    throw new InputError(
      "access-token",
      "is required (only a dry run can do without): a Supabase personal access token",
    );
  }
  if (accessToken && !TOKEN.test(accessToken)) {
    throw new InputError(
      "access-token",
      "is not a Supabase personal access token: it must be sbp_ followed by 40 hexadecimal characters (create one at https://supabase.com/dashboard/account/tokens)",
    );
  }
  if (!/^postgres(ql)?:\/\//.test(dbUrl)) {
    throw new InputError("db-url", "must be a postgres:// or postgresql:// connection string");
  }
  if (supaqueueSecret && !SECRET.test(supaqueueSecret)) {
    throw new InputError(
      "supaqueue-secret",
      "must be 16 to 256 characters from letters, digits and . _ ~ + / = - (leave it out to have one generated and kept in Vault)",
    );
  }
  const functionsUrl = value("functions-url");
  if (functionsUrl && !/^https?:\/\/[^/?#\s]+[^\s?#]*$/.test(functionsUrl)) {
    throw new InputError(
      "functions-url",
      "must be an http(s) URL such as https://<project-ref>.supabase.co/functions/v1",
    );
  }
  const tick = (value("tick") ?? "pg_cron") as TickMode;
  if (!TICK_MODES.includes(tick)) {
    throw new InputError(
      "tick",
      `must be pg_cron (the default: pg_cron runs supaqueue.tick() every second, enabled if missing) or external (you call it every second), not "${tick}"`,
    );
  }
  const probe = value("probe") === undefined ? true : booleanInput("probe", value("probe"));
  const config = value("config") ?? "supaqueue.yml";
  return {
    projectRef,
    accessToken,
    dbUrl,
    supaqueueSecret,
    config,
    configPath: isAbsolute(config) ? config : resolve(workspace, config),
    functionsUrl,
    dryRun,
    tick,
    probe,
  };
}

/** What deploy() needs, from the inputs and the environment (for `${VAR}` in supaqueue.yml). */
export function deployOptions(
  inputs: Inputs,
  env: Record<string, string | undefined> = process.env,
): DeployOptions {
  return {
    projectRef: inputs.projectRef,
    accessToken: inputs.accessToken,
    dbUrl: inputs.dbUrl,
    supaqueueSecret: inputs.supaqueueSecret,
    configPath: inputs.configPath,
    configFile: inputs.config,
    functionsUrl: inputs.functionsUrl,
    dryRun: inputs.dryRun,
    env,
    tick: inputs.tick,
    probe: inputs.probe,
  };
}

// The YAML 1.2 core schema booleans, as @actions/core's getBooleanInput accepts them.
function booleanInput(name: string, text: string | undefined): boolean {
  if (text === undefined) return false;
  if (["true", "True", "TRUE"].includes(text)) return true;
  if (["false", "False", "FALSE"].includes(text)) return false;
  throw new InputError(name, `must be true or false, not "${text}"`);
}

function maskPassword(url: string, mask: (value: string) => void): void {
  try {
    const password = new URL(url).password;
    if (password) {
      mask(password);
      mask(decodeURIComponent(password));
    }
  } catch {
    // Not a URL: readInputs reports it.
  }
}
