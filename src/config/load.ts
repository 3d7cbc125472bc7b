import { readFileSync } from "node:fs";
import { ConfigError, type ConfigProblem, type QueueFile, type ValidateOptions } from "./types.ts";
import { decodeUtf8 } from "./utf8.ts";
import { validateConfigText } from "./validate.ts";

/**
 * Reads and checks supaqueue.yml. `path` is where to read it; `file` is the name to show in messages and
 * annotations (relative to the repository, as GitHub wants it). Throws ConfigError listing every problem.
 */
export function loadConfig(path: string, file: string, options: ValidateOptions): QueueFile {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (error) {
    const code = (error as { code?: string }).code;
    const problem: ConfigProblem = {
      position: { file, line: 1, column: 1 },
      field: "(file)",
      message:
        code === "ENOENT"
          ? `the queue file does not exist (looked for ${path}); create it or set the "config" input to its path`
          : `cannot read the queue file: ${(error as Error).message}`,
    };
    throw new ConfigError([problem]);
  }
  const decoded = decodeUtf8(bytes, file);
  if ("problem" in decoded) throw new ConfigError([decoded.problem]);
  const { config, problems } = validateConfigText(decoded.text, file, options);
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}
