import { parseArgs } from "node:util";
import { databaseUrlProblem } from "../install/deploy-settings.ts";

/**
 * The command line of one subcommand, described once: parseArgs reads it, and --help is printed from it.
 */
export interface FlagSpec {
  type: "string" | "boolean";
  short?: string;
  multiple?: boolean;
  /** The value's placeholder in --help, e.g. "URL". */
  value?: string;
  description: string;
}

export interface CommandSpec {
  name: string;
  /** One line for the command list of `supaqueue --help`. */
  brief: string;
  summary: string;
  /** Positional arguments as shown in the usage line, e.g. "<queue> [json]". */
  args?: string;
  /** How many positional arguments are allowed at most (default 0). */
  maxArgs?: number;
  flags: Record<string, FlagSpec>;
  /** Lines printed after the flags: defaults, environment variables, examples. */
  notes?: string[];
}

/** A command line that cannot be run as given: printed with a pointer to --help, exit code 2. */
export class UsageError extends Error {
  constructor(
    readonly command: string,
    message: string,
  ) {
    super(`supaqueue${command ? ` ${command}` : ""}: ${message}`);
    this.name = "UsageError";
  }
}

const HELP_FLAG: FlagSpec = { type: "boolean", short: "h", description: "Show this help and exit." };

export interface Parsed {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

/** Parses `argv` against `spec`; an unknown flag, a missing value or an extra argument is a UsageError naming it. */
export function parseCommand(spec: CommandSpec, argv: string[]): Parsed {
  const options = Object.fromEntries(
    Object.entries({ ...spec.flags, help: HELP_FLAG }).map(([name, flag]) => [
      name,
      {
        type: flag.type,
        ...(flag.short ? { short: flag.short } : {}),
        ...(flag.multiple ? { multiple: true } : {}),
      },
    ]),
  );
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError(spec.name, describeParseError(error, spec));
  }
  if (!parsed.values.help && parsed.positionals.length > (spec.maxArgs ?? 0)) {
    const extra = parsed.positionals[spec.maxArgs ?? 0];
    throw new UsageError(
      spec.name,
      `unexpected argument "${extra}" (usage: supaqueue ${spec.name}${spec.args ? ` ${spec.args}` : ""} [flags]; see --help)`,
    );
  }
  return { values: parsed.values as Parsed["values"], positionals: parsed.positionals };
}

function describeParseError(error: unknown, spec: CommandSpec): string {
  const code = (error as { code?: string }).code;
  const message = error instanceof Error ? error.message : String(error);
  const flag = /'(-{1,2}[^' ]+)/.exec(message)?.[1] ?? "";
  const help = `see supaqueue ${spec.name} --help`;
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") return `unknown flag ${flag} (${help})`;
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
    const name = flag.replace(/^-+/, "");
    const spec1 = spec.flags[name] ?? Object.values(spec.flags).find((f) => f.short === name);
    return spec1?.type === "boolean"
      ? `flag ${flag} takes no value (${help})`
      : `flag ${flag} needs a value${spec1?.value ? ` (${spec1.value})` : ""} (${help})`;
  }
  return `${message} (${help})`;
}

/** The --help text of a command. */
export function helpText(spec: CommandSpec): string {
  const lines = [
    `supaqueue ${spec.name}: ${spec.summary}`,
    "",
    `Usage: supaqueue ${spec.name}${spec.args ? ` ${spec.args}` : ""} [flags]`,
    "",
    "Flags:",
  ];
  const rows = Object.entries({ ...spec.flags, help: HELP_FLAG }).map(([name, flag]) => {
    const short = flag.short ? `-${flag.short}, ` : "    ";
    const value = flag.type === "string" ? ` <${flag.value ?? "value"}>` : "";
    return [`  ${short}--${name}${value}`, flag.description + (flag.multiple ? " Repeatable." : "")] as const;
  });
  const width = Math.max(...rows.map(([left]) => left.length)) + 2;
  for (const [left, right] of rows) lines.push(left.padEnd(width) + right);
  if (spec.notes?.length) lines.push("", ...spec.notes);
  return lines.join("\n");
}

/** A string flag, or the first environment variable that is set, or undefined. */
export function stringFlag(
  values: Parsed["values"],
  name: string,
  env: Record<string, string | undefined> = {},
  envNames: string[] = [],
): string | undefined {
  const value = values[name];
  if (typeof value === "string" && value.trim() !== "") return value.trim();
  for (const envName of envNames) {
    const fromEnv = env[envName]?.trim();
    if (fromEnv) return fromEnv;
  }
  return undefined;
}

/** The database URL from --db-url, DATABASE_URL or SUPABASE_DB_URL; a UsageError naming all three when absent. */
export function requireDbUrl(
  command: string,
  values: Parsed["values"],
  env: Record<string, string | undefined>,
): string {
  const url = stringFlag(values, "db-url", env, ["DATABASE_URL", "SUPABASE_DB_URL"]);
  if (!url) {
    throw new UsageError(
      command,
      "no database given: pass --db-url postgres://... or set DATABASE_URL (the project's connection string)",
    );
  }
  const problem = databaseUrlProblem(url);
  if (problem) throw new UsageError(command, `--db-url ${problem}`);
  return url;
}

export const DB_URL_FLAG: FlagSpec = {
  type: "string",
  value: "URL",
  description: "Postgres connection string of the project (default: $DATABASE_URL, then $SUPABASE_DB_URL).",
};
