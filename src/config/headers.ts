// biome-ignore-all lint/suspicious/noTemplateCurlyInString: supaqueue.yml writes ${VAR} literally.
import { isMap, isScalar, type Node, Scalar } from "yaml";
import { findCharacter, isControl } from "./characters.ts";
import { type Report, scalar, show } from "./fields.ts";
import type { SecretHeader, ValidateOptions } from "./types.ts";
import { missingVariablesMessage, type Part, resolveVariables } from "./variables.ts";

// An HTTP header name is an RFC 9110 token.
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;

// A header value is one line of visible characters, spaces and tabs (RFC 9110 field-value). fetch refuses CR, LF
// and NUL and any character beyond U+00FF, and trims spaces and tabs at either end, so a value that breaks these
// rules is refused here: installed, it would fail every call of the queue, or send something other than written.
const ONE_LINE =
  "a header value is one line of visible characters, spaces and tabs (RFC 9110): a call carrying it would be refused, so every job of the queue would fail";
const BYTES =
  "header values are sent as bytes, and fetch refuses characters beyond U+00FF, so every job of the queue would fail: percent-encode it, or send it in the payload";

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
    const resolved = resolveVariables(value, options.env);
    if (resolved.missing) {
      report(valueNode, where, missingVariablesMessage(resolved.missing));
      continue;
    }
    const problem = headerValueProblem(resolved.parts, valueNode);
    if (problem) {
      report(valueNode, where, problem);
      continue;
    }
    if (resolved.variables.length === 0) headers[header] = value;
    else secretHeaders.push({ header, value: resolved.value, variables: resolved.variables });
  }
  return { headers, secretHeaders };
}

/**
 * What keeps a header value (written text and filled-in variables) from being sent as it is, or null. A fault in
 * a variable names the variable, never its value.
 */
function headerValueProblem(parts: Part[], node: Node | null): string | null {
  for (const part of parts) {
    const whose = whoseValue(part);
    const control = findCharacter(part.text, isControl);
    if (control) {
      const atEnd = control.index === part.text.length - 1 && control.codePoint === 0x0a;
      if (atEnd && part.variable) {
        return `${whose} contains ${control.what} (at its end: was it saved with a trailing newline?); ${ONE_LINE}`;
      }
      if (atEnd && isBlockScalar(node)) {
        return `${whose} ends with ${control.what}: a block scalar (| or >) keeps its last line break unless you write |- or >- (${ONE_LINE})`;
      }
      return `${whose} contains ${control.what}; ${ONE_LINE}`;
    }
    const wide = findCharacter(part.text, (c) => c > 0xff);
    if (wide) return `${whose} contains ${wide.what}; ${BYTES}`;
  }
  const filled = parts.filter((p) => p.text !== "");
  const first = filled[0];
  const last = filled.at(-1);
  const edge = (char: string | undefined) => (char === " " ? "a space" : char === "\t" ? "a tab" : null);
  const starts = edge(first?.text[0]);
  if (first && starts) return `${whoseValue(first)} starts with ${starts}, which HTTP would trim; remove it`;
  const ends = edge(last?.text.at(-1));
  if (last && ends) return `${whoseValue(last)} ends with ${ends}, which HTTP would trim; remove it`;
  return null;
}

/** "the value", or "the value of ${TOKEN}" for what a variable filled in. */
function whoseValue(part: Part): string {
  return part.variable ? `the value of \${${part.variable}}` : "the value";
}

function isBlockScalar(node: Node | null): boolean {
  return isScalar(node) && (node.type === Scalar.BLOCK_LITERAL || node.type === Scalar.BLOCK_FOLDED);
}
