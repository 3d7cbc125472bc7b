import { ConfigError } from "../config/types.ts";
import { deploy } from "../install/deploy.ts";
import { checkDeploySettings, type DeploySetting, SettingError } from "../install/deploy-settings.ts";
import { logProblems } from "../install/logger.ts";
import type { DeployOptions } from "../install/model.ts";
import { type CommandSpec, DB_URL_FLAG, type Parsed, stringFlag, UsageError } from "./args.ts";
import type { TerminalLogger } from "./logger.ts";

const FLAGS: CommandSpec["flags"] = {
  "db-url": DB_URL_FLAG,
  "project-ref": {
    type: "string",
    value: "REF",
    description:
      "The Supabase project reference, Project Settings > General (default: $SUPABASE_PROJECT_REF).",
  },
  "access-token": {
    type: "string",
    value: "TOKEN",
    description: "A Supabase personal access token, sbp_... (default: $SUPABASE_ACCESS_TOKEN).",
  },
  config: { type: "string", value: "FILE", description: "The queue file (default: supaqueue.yml)." },
  "functions-url": {
    type: "string",
    value: "URL",
    description: "Overrides https://<project-ref>.supabase.co/functions/v1 (self-hosted or local stacks).",
  },
  tick: {
    type: "string",
    value: "MODE",
    description:
      "Who runs supaqueue.tick() every second: pg_cron (default; enabled when missing) or external (a scheduler of your own) (default: $SUPAQUEUE_TICK).",
  },
  "skip-probe": {
    type: "boolean",
    description:
      "Do not prove the whole loop with a probe after installing (the probe sends one wakeup naming no call).",
  },
  secret: {
    type: "string",
    value: "SECRET",
    description:
      "The key of the HMAC on the database's wakeups to execute_current_job (default: $SUPAQUEUE_SECRET; when unset, the one in Vault is kept or one is generated).",
  },
};

export const DEPLOY: CommandSpec = {
  name: "deploy",
  brief: "install or upgrade Supaqueue on a project and reconcile supaqueue.yml",
  summary:
    "install or upgrade Supaqueue on a project (migrations, Vault secret, function secret, execute_current_job) and reconcile its queues with supaqueue.yml, as the GitHub Action does.",
  flags: FLAGS,
  notes: [
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the literal ${VAR} syntax of supaqueue.yml
    "Header values written ${VAR} in supaqueue.yml come from this process's environment and are stored in Vault.",
    'Example: supaqueue deploy --project-ref abcdefghijklmnopqrst --db-url "$SUPABASE_DB_URL"',
  ],
};

export const PLAN: CommandSpec = {
  name: "plan",
  brief: "show what deploy would change, changing nothing",
  summary: "show what deploy would change (migrations, queues, workers, header secrets), changing nothing.",
  flags: FLAGS,
  notes: ["plan needs no access token: it only reads the database."],
};

/** Each deploy setting's flag, and the environment variables that stand in for it. */
const FLAG_OF: Record<DeploySetting, { flag: string; env?: string[] }> = {
  projectRef: { flag: "project-ref", env: ["SUPABASE_PROJECT_REF"] },
  accessToken: { flag: "access-token", env: ["SUPABASE_ACCESS_TOKEN"] },
  dbUrl: { flag: "db-url", env: ["DATABASE_URL", "SUPABASE_DB_URL"] },
  secret: { flag: "secret", env: ["SUPAQUEUE_SECRET"] },
  config: { flag: "config" },
  functionsUrl: { flag: "functions-url" },
  tick: { flag: "tick", env: ["SUPAQUEUE_TICK"] },
  probe: { flag: "skip-probe" },
  dryRun: { flag: "dry-run" },
};

/** `deploy` and `plan`: the action's install code, its settings from flags and environment variables. */
export async function runDeploy(
  spec: CommandSpec,
  parsed: Parsed,
  env: Record<string, string | undefined>,
  log: TerminalLogger,
): Promise<number> {
  const dryRun = spec === PLAN;
  const given = (setting: DeploySetting) =>
    stringFlag(parsed.values, FLAG_OF[setting].flag, env, FLAG_OF[setting].env);
  let options: DeployOptions;
  try {
    options = checkDeploySettings(
      {
        projectRef: given("projectRef"),
        accessToken: given("accessToken"),
        dbUrl: given("dbUrl"),
        secret: given("secret"),
        config: given("config"),
        functionsUrl: given("functionsUrl"),
        tick: given("tick"),
        dryRun,
        probe: !parsed.values["skip-probe"],
      },
      { workspace: process.cwd(), env, mask: (value) => log.secret(value) },
    );
  } catch (error) {
    if (!(error instanceof SettingError)) throw error;
    const { flag, env: vars } = FLAG_OF[error.setting];
    throw new UsageError(spec.name, `--${flag}${vars ? ` (or $${vars[0]})` : ""} ${error.problem}`);
  }
  try {
    const result = await deploy(options, log);
    log.info(
      dryRun
        ? result.changed
          ? "Plan done: the changes above would be made by supaqueue deploy."
          : "Plan done: no changes."
        : result.changed
          ? `Done. ${result.functionUrl} is deployed.`
          : "Done: no changes.",
    );
    return 0;
  } catch (error) {
    if (error instanceof ConfigError) {
      logProblems(log, error.problems);
      log.error(`${error.problems.length} problem(s) in ${options.configFile}; nothing was changed.`);
      return 1;
    }
    throw error;
  }
}
