import * as core from "@actions/core";
import { ConfigError } from "./config/types.ts";
import { deployOptions, readInputs } from "./inputs.ts";
import { deploy } from "./install/deploy.ts";
import type { Logger } from "./install/logger.ts";
import { summaryJson, summaryMarkdown } from "./install/summary.ts";

/** The install modules' logger, on top of @actions/core: groups, masks and file annotations. */
const actionLogger: Logger = {
  info: (message) => core.info(message),
  warning: (message) => core.warning(message),
  error: (message, position) =>
    core.error(
      message,
      position ? { file: position.file, startLine: position.line, startColumn: position.column } : undefined,
    ),
  group: (title, fn) => core.group(title, fn),
  secret: (value) => core.setSecret(value),
};

/** The action: inputs → deploy → job summary and outputs. The only place that fails the step. */
export async function run(): Promise<void> {
  try {
    const inputs = readInputs((name) => core.getInput(name), core.setSecret);
    const result = await deploy(deployOptions(inputs), actionLogger);
    await core.summary.addRaw(summaryMarkdown(result)).write();
    core.setOutput("summary", JSON.stringify(summaryJson(result)));
    core.setOutput("schema-version", result.schemaVersion === null ? "" : String(result.schemaVersion));
    core.setOutput("function-url", result.functionUrl);
    core.info(result.changed ? "Done." : "Done: no changes.");
  } catch (error) {
    if (error instanceof ConfigError) {
      for (const problem of error.problems) {
        actionLogger.error(`${problem.field}: ${problem.message}`, problem.position);
      }
      core.setFailed(
        `supaqueue: ${error.problems.length} problem(s) in the queue file; nothing was changed (each is annotated above).`,
      );
    } else {
      core.setFailed(error instanceof Error ? error.message : String(error));
    }
  }
}
