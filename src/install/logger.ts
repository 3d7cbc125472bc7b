import type { Position } from "../config/types.ts";

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

/** A logger for scripts and tests: plain lines on stdout and stderr, groups as headings, nothing masked. */
export const consoleLogger: Logger = {
  info: (message) => console.log(message),
  warning: (message) => console.warn(`warning: ${message}`),
  error: (message, position) =>
    console.error(position ? `${position.file}:${position.line}:${position.column}: ${message}` : message),
  async group(title, fn) {
    console.log(`== ${title}`);
    return fn();
  },
  secret: () => {},
};
