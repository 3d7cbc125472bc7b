import * as core from "@actions/core";
import { ConfigError } from "./config/types.ts";
import { readInputs } from "./inputs.ts";
import { deploy } from "./install/deploy.ts";
import { type Logger, logProblems } from "./install/logger.ts";
import { failureMarkdown, summaryJson, summaryMarkdown } from "./install/present.ts";

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
    const result = await deploy(
      readInputs((name) => core.getInput(name), core.setSecret),
      actionLogger,
    );
    await core.summary.addRaw(summaryMarkdown(result)).write();
    core.setOutput("summary", JSON.stringify(summaryJson(result)));
    core.setOutput("schema-version", result.schemaVersion === null ? "" : String(result.schemaVersion));
    core.setOutput("function-url", result.functionUrl);
    core.info(result.changed ? "Done." : "Done: no changes.");
  } catch (error) {
    const problems = error instanceof ConfigError ? error.problems : [];
    logProblems(actionLogger, problems);
    const message =
      error instanceof ConfigError
        ? `supaqueue: ${problems.length} problem(s) in the queue file; nothing was changed (each is annotated above).`
        : error instanceof Error
          ? error.message
          : String(error);
    core.setFailed(message);
    await core.summary
      .addRaw(failureMarkdown(message, problems))
      .write()
      .catch(() => {});
  }
}
