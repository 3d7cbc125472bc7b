import { checkDeploySettings, type DeploySetting, SettingError } from "./install/deploy-settings.ts";
import type { DeployOptions } from "./install/model.ts";

/** An input that is missing or malformed; the message names the input and what it should be. */
class InputError extends Error {
  constructor(input: string, problem: string) {
    super(`supaqueue: input "${input}" ${problem}`);
    this.name = "InputError";
  }
}

/** Each deploy setting's input in action.yml. */
const INPUT_OF: Record<DeploySetting, string> = {
  projectRef: "project-ref",
  accessToken: "access-token",
  dbUrl: "db-url",
  secret: "supaqueue-secret",
  config: "config",
  functionsUrl: "functions-url",
  tick: "tick",
  probe: "probe",
  dryRun: "dry-run",
};

/**
 * Reads the inputs through `get` (core.getInput in the action) and checks them (install/deploy-settings.ts) before anything
 * is touched; a problem names its input. Secrets are handed to `mask` as soon as they are read.
 */
export function readInputs(
  get: (name: string) => string,
  mask: (value: string) => void,
  workspace: string = process.env.GITHUB_WORKSPACE || process.cwd(),
  env: Record<string, string | undefined> = process.env,
): DeployOptions {
  const value = (setting: DeploySetting) => get(INPUT_OF[setting]).trim() || undefined;
  try {
    return checkDeploySettings(
      {
        projectRef: value("projectRef"),
        accessToken: value("accessToken"),
        dbUrl: value("dbUrl"),
        secret: value("secret"),
        config: value("config"),
        functionsUrl: value("functionsUrl"),
        tick: value("tick"),
        dryRun: booleanInput("dry-run", value("dryRun"), false),
        probe: booleanInput("probe", value("probe"), true),
      },
      { workspace, env, mask },
    );
  } catch (error) {
    if (error instanceof SettingError) throw new InputError(INPUT_OF[error.setting], error.problem);
    throw error;
  }
}

// The YAML 1.2 core schema booleans, as @actions/core's getBooleanInput accepts them.
function booleanInput(name: string, text: string | undefined, fallback: boolean): boolean {
  if (text === undefined) return fallback;
  if (["true", "True", "TRUE"].includes(text)) return true;
  if (["false", "False", "FALSE"].includes(text)) return false;
  throw new InputError(name, `must be true or false, not "${text}"`);
}
