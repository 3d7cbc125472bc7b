import type { Logger } from "../install/logger.ts";

export interface TerminalLogger extends Logger {
  /** `text` with every secret registered so far replaced by ***. */
  mask(text: string): string;
}

/**
 * The install modules' logger for a terminal: info on stdout, warnings and errors on stderr, each group as a
 * heading, and every value handed to secret() replaced by *** in whatever is printed after (as the action's log
 * masking does), so a token or a header secret never reaches a terminal or a CI log through the CLI.
 */
export function terminalLogger(
  out: (line: string) => void = (line) => process.stdout.write(`${line}\n`),
  err: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
): TerminalLogger {
  const secrets = new Set<string>();
  const mask = (text: string) => {
    let masked = text;
    // Longest first, so a secret that contains another is masked whole.
    for (const secret of [...secrets].sort((a, b) => b.length - a.length))
      masked = masked.split(secret).join("***");
    return masked;
  };
  return {
    mask,
    info: (message) => out(mask(message)),
    warning: (message) => err(mask(`warning: ${message}`)),
    error: (message, position) =>
      err(
        mask(
          position ? `${position.file}:${position.line}:${position.column}: ${message}` : `error: ${message}`,
        ),
      ),
    async group(title, fn) {
      out(mask(`▸ ${title}`));
      return fn();
    },
    secret(value) {
      // Very short values would mask ordinary words; the action's own masking has the same floor.
      if (value && value.length >= 4) secrets.add(value);
    },
  };
}
