// biome-ignore-all lint/suspicious/noTemplateCurlyInString: supaqueue.yml writes ${VAR} literally.

// `${VAR}` in supaqueue.yml (header values and URLs): filled in from the environment of the deploy, which is the
// action's env: or the shell of `supaqueue deploy`. The result is a secret: messages name the variables, never
// their values.

const VARIABLE = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/** A piece of a value: text written in the file, or what one variable was filled in with. */
export interface Part {
  text: string;
  /** The variable this text came from; null for text written in the file. */
  variable: string | null;
}

export type Resolution =
  | { missing: string[] }
  | { value: string; parts: Part[]; variables: string[]; missing?: undefined };

/** The variables a value names, each once, in order. */
function variablesIn(text: string): string[] {
  return [...new Set([...text.matchAll(VARIABLE)].map((m) => m[1] as string))];
}

/** Fills in every `${VAR}`; an unset or empty variable is missing. */
export function resolveVariables(text: string, env: Record<string, string | undefined>): Resolution {
  const variables = variablesIn(text);
  const missing = variables.filter((v) => !env[v]);
  if (missing.length > 0) return { missing };
  const parts: Part[] = [];
  let last = 0;
  for (const match of text.matchAll(VARIABLE)) {
    const name = match[1] as string;
    parts.push({ text: text.slice(last, match.index), variable: null });
    parts.push({ text: env[name] as string, variable: name });
    last = match.index + match[0].length;
  }
  parts.push({ text: text.slice(last), variable: null });
  return { value: parts.map((p) => p.text).join(""), parts, variables };
}

/** What to do about unset variables, in words that fit the action and the command line alike. */
export function missingVariablesMessage(missing: string[]): string {
  const first = missing[0] as string;
  return `${missing.map((v) => `\${${v}}`).join(", ")} ${missing.length === 1 ? "is" : "are"} not set (or empty); set ${listOf(missing)} in the environment (the action's env:, e.g. ${first}: \${{ secrets.${first} }}, or your shell)`;
}

/** "${A}", "${A} and ${B}", "${A}, ${B} and ${C}". */
export function variableList(variables: string[]): string {
  return listOf(variables.map((v) => `\${${v}}`));
}

function listOf(items: string[]): string {
  return items.length <= 1 ? (items[0] ?? "") : `${items.slice(0, -1).join(", ")} and ${items.at(-1)}`;
}
