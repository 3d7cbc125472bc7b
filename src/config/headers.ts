// biome-ignore-all lint/suspicious/noTemplateCurlyInString: supaqueue.yml writes ${VAR} literally.
import { isMap, isScalar, type Node } from "yaml";
import { type Report, scalar, show } from "./fields.ts";
import type { SecretHeader } from "./types.ts";
import type { ValidateOptions } from "./validate.ts";

// An HTTP header name is an RFC 9110 token.
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;
export const VARIABLE = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/**
 * Checks a queue's headers. A value holding ${VAR} is resolved from the environment and becomes a secret header
 * (stored in Vault); any other value is a plain header. Header names are compared ignoring case.
 */
export function validateHeaders(
  node: Node | undefined,
  field: string,
  report: Report,
  options: ValidateOptions,
): { headers: Record<string, string>; secretHeaders: SecretHeader[] } {
  const headers: Record<string, string> = {};
  const secretHeaders: SecretHeader[] = [];
  if (node === undefined) return { headers, secretHeaders };
  if (!isMap(node)) {
    report(node, field, 'must be a mapping of header name to value, e.g. "X-Api-Key: ${EMAIL_API_KEY}"');
    return { headers, secretHeaders };
  }
  const seen = new Set<string>();
  for (const pair of node.items) {
    const header = isScalar(pair.key) ? String(pair.key.value) : "";
    const where = `${field}.${header}`;
    if (!HEADER_NAME.test(header)) {
      report(
        pair.key as Node,
        where,
        `invalid header name "${header}"; allowed: letters, digits and !#$%&'*+.^_\`|~-`,
      );
      continue;
    }
    if (seen.has(header.toLowerCase())) {
      report(pair.key as Node, where, "this header appears twice (header names ignore case); keep one");
      continue;
    }
    seen.add(header.toLowerCase());
    const valueNode = pair.value as Node | null;
    const value = scalar(valueNode);
    if (typeof value !== "string") {
      report(
        valueNode ?? (pair.key as Node),
        where,
        `must be a string, not ${show(value)}; quote it, e.g. "2"`,
      );
      continue;
    }
    const variables = [...value.matchAll(VARIABLE)].map((m) => m[1] as string);
    if (variables.length === 0) {
      headers[header] = value;
      continue;
    }
    const missing = variables.filter((v) => !options.env[v]);
    if (missing.length > 0) {
      report(
        valueNode,
        where,
        `${missing.map((v) => `\${${v}}`).join(", ")} ${missing.length === 1 ? "is" : "are"} not set (or empty) in the action's environment; pass ${missing.length === 1 ? "it" : "them"} with "env:" on the step, e.g. ${missing[0]}: \${{ secrets.${missing[0]} }}`,
      );
      continue;
    }
    const resolved = value.replace(VARIABLE, (_, v: string) => options.env[v] ?? "");
    secretHeaders.push({ header, value: resolved, variables });
  }
  return { headers, secretHeaders };
}
