import { isAbsolute, resolve } from "node:path";
import type { DeployOptions } from "./model.ts";
import { TICK_MODES, type TickMode } from "./tick.ts";

// The deploy's settings, checked once for both front ends: the action (inputs, src/inputs.ts) and the CLI (flags and
// environment variables, src/cli/deploy.ts). A problem names the setting; each front end says it in its own words
// (input "db-url", or --db-url (or $DATABASE_URL)).

/** The deploy's settings by their neutral names. */
export type DeploySetting =
  | "projectRef"
  | "accessToken"
  | "dbUrl"
  | "secret"
  | "config"
  | "functionsUrl"
  | "tick"
  | "probe"
  | "dryRun";

/** A setting that is missing or malformed: `problem` says what it should be, without naming where it was given. */
export class SettingError extends Error {
  constructor(
    readonly setting: DeploySetting,
    readonly problem: string,
  ) {
    super(`supaqueue: ${setting} ${problem}`);
    this.name = "SettingError";
  }
}

/** The settings as given (empty values left out), before any check. */
export interface GivenSettings {
  projectRef?: string;
  accessToken?: string;
  dbUrl?: string;
  secret?: string;
  config?: string;
  functionsUrl?: string;
  tick?: string;
  probe: boolean;
  dryRun: boolean;
}

const PROJECT_REF = /^[a-z0-9][a-z0-9-]{0,62}$/;
const TOKEN = /^sbp_(oauth_|v0_)?[a-f0-9]{40}$/;
const SECRET = /^[A-Za-z0-9._~+/=-]{16,256}$/;
const FUNCTIONS_URL = /^https?:\/\/[^/?#\s]+[^\s?#]*$/;

/** What is wrong with a database URL, or null when it is a postgres:// connection string. */
export function databaseUrlProblem(url: string): string | null {
  return /^postgres(ql)?:\/\//.test(url) ? null : "must be a postgres:// or postgresql:// connection string";
}

/** What is wrong with a functions URL (or another base URL of an http server), or null. */
export function httpUrlProblem(url: string, example: string): string | null {
  return FUNCTIONS_URL.test(url) ? null : `must be an http(s) URL such as ${example}`;
}

/** A functions URL without its trailing slashes, so `${url}/<function>` has one. */
export function trimFunctionsUrl(url: string): string {
  return url.replace(/\/+$/, "");
}

/** https://<project-ref>.supabase.co/functions/v1 */
const FUNCTIONS_URL_EXAMPLE = "https://<project-ref>.supabase.co/functions/v1";

/**
 * Checks the settings before anything is touched and returns what deploy() needs. Secrets are handed to `mask` as
 * soon as they are seen, before any check could print them.
 */
export function checkDeploySettings(
  given: GivenSettings,
  context: { workspace: string; env: Record<string, string | undefined>; mask: (value: string) => void },
): DeployOptions {
  const { mask } = context;
  if (given.accessToken) mask(given.accessToken);
  if (given.secret) mask(given.secret);
  if (given.dbUrl) {
    mask(given.dbUrl);
    maskPassword(given.dbUrl, mask);
  }
  const dbUrl = given.dbUrl;
  if (!dbUrl) throw new SettingError("dbUrl", "is required: the project's Postgres connection string");
  const projectRef = given.projectRef;
  if (!projectRef)
    throw new SettingError(
      "projectRef",
      "is required: the Supabase project reference (Project Settings → General)",
    );
  if (!PROJECT_REF.test(projectRef)) {
    throw new SettingError(
      "projectRef",
      "must be the project reference: lowercase letters and digits, e.g. abcdefghijklmnopqrst",
    );
  }
  if (!given.accessToken && !given.dryRun) {
    throw new SettingError(
      "accessToken",
      "is required (only a dry run can do without): a Supabase personal access token",
    );
  }
  if (given.accessToken && !TOKEN.test(given.accessToken)) {
    throw new SettingError(
      "accessToken",
      "is not a Supabase personal access token: it must be sbp_ followed by 40 hexadecimal characters (create one at https://supabase.com/dashboard/account/tokens)",
    );
  }
  const dbProblem = databaseUrlProblem(dbUrl);
  if (dbProblem) throw new SettingError("dbUrl", dbProblem);
  if (given.secret && !SECRET.test(given.secret)) {
    throw new SettingError(
      "secret",
      "must be 16 to 256 characters from letters, digits and . _ ~ + / = - (leave it out to have one generated and kept in Vault)",
    );
  }
  const urlProblem = given.functionsUrl && httpUrlProblem(given.functionsUrl, FUNCTIONS_URL_EXAMPLE);
  if (urlProblem) throw new SettingError("functionsUrl", urlProblem);
  const tick = (given.tick ?? "pg_cron") as TickMode;
  if (!TICK_MODES.includes(tick)) {
    throw new SettingError(
      "tick",
      `must be pg_cron (the default: pg_cron runs supaqueue.tick() every second, enabled if missing) or external (you call it every second), not "${tick}"`,
    );
  }
  const config = given.config ?? "supaqueue.yml";
  return {
    projectRef,
    accessToken: given.accessToken,
    dbUrl,
    supaqueueSecret: given.secret,
    configPath: isAbsolute(config) ? config : resolve(context.workspace, config),
    configFile: config,
    functionsUrl: given.functionsUrl && trimFunctionsUrl(given.functionsUrl),
    dryRun: given.dryRun,
    env: context.env,
    tick,
    probe: given.probe,
  };
}

function maskPassword(url: string, mask: (value: string) => void): void {
  try {
    const password = new URL(url).password;
    if (password) {
      mask(password);
      mask(decodeURIComponent(password));
    }
  } catch {
    // Not a URL: the check reports it.
  }
}
