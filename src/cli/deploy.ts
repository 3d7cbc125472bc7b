import { ConfigError } from "../config/types.ts";
import { deployOptions, InputError, readInputs } from "../inputs.ts";
import { deploy } from "../install/deploy.ts";
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

// The action's input names, which readInputs checks, and the CLI flags that carry them.
const INPUT_OF_FLAG: Record<string, string> = {
  "db-url": "db-url",
  "project-ref": "project-ref",
  "access-token": "access-token",
  config: "config",
  "functions-url": "functions-url",
  secret: "supaqueue-secret",
  tick: "tick",
};
const ENV_OF_FLAG: Record<string, string[]> = {
  "db-url": ["DATABASE_URL", "SUPABASE_DB_URL"],
  "project-ref": ["SUPABASE_PROJECT_REF"],
  "access-token": ["SUPABASE_ACCESS_TOKEN"],
  secret: ["SUPAQUEUE_SECRET"],
  tick: ["SUPAQUEUE_TICK"],
};

/** `deploy` and `plan`: the action's install code with flags and environment variables in place of inputs. */
export async function runDeploy(
  spec: CommandSpec,
  parsed: Parsed,
  env: Record<string, string | undefined>,
  log: TerminalLogger,
): Promise<number> {
  const dryRun = spec === PLAN;
  const byInput = new Map<string, string>();
  for (const [flag, input] of Object.entries(INPUT_OF_FLAG)) {
    const value = stringFlag(parsed.values, flag, env, ENV_OF_FLAG[flag]);
    if (value !== undefined) byInput.set(input, value);
  }
  byInput.set("dry-run", String(dryRun));
  if (parsed.values["skip-probe"]) byInput.set("probe", "false");
  let inputs: ReturnType<typeof readInputs>;
  try {
    inputs = readInputs(
      (name) => byInput.get(name) ?? "",
      (value) => log.secret(value),
      process.cwd(),
    );
  } catch (error) {
    if (error instanceof InputError) throw new UsageError(spec.name, flagMessage(error.message));
    throw error;
  }
  try {
    const result = await deploy(deployOptions(inputs, env), log);
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
      for (const problem of error.problems)
        log.error(`${problem.field}: ${problem.message}`, problem.position);
      log.error(`${error.problems.length} problem(s) in ${inputs.config}; nothing was changed.`);
      return 1;
    }
    throw error;
  }
}

/** The action's message names its input (`input "project-ref"`); on a command line the flag is what to fix. */
function flagMessage(message: string): string {
  return message.replace(/^supaqueue: /, "").replace(/input "([a-z-]+)"/, (_, input: string) => {
    const flag = Object.entries(INPUT_OF_FLAG).find(([, name]) => name === input)?.[0] ?? input;
    const envs = ENV_OF_FLAG[flag];
    return `--${flag}${envs ? ` (or $${envs[0]})` : ""}`;
  });
}
