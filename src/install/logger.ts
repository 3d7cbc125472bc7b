import type { ConfigProblem, Position } from "../config/types.ts";

/**
 * What install code needs from its host: the action maps it to @actions/core, a CLI to the terminal.
 * Domain modules log through this and never import @actions/core.
 */
export interface Logger {
  info(message: string): void;
  warning(message: string): void;
  /** An error, pointing at a line of a file when it has one (a GitHub annotation in the action). */
  error(message: string, position?: Position): void;
  /** Runs `fn` inside a collapsible log group. */
  group<T>(title: string, fn: () => Promise<T>): Promise<T>;
  /** Masks `value` in everything logged after this call. */
  secret(value: string): void;
}

/** Logs each problem of supaqueue.yml at its place in the file (an annotation in the action). */
export function logProblems(log: Logger, problems: ConfigProblem[]): void {
  for (const problem of problems) log.error(`${problem.field}: ${problem.message}`, problem.position);
}
