// biome-ignore-all lint/suspicious/noTemplateCurlyInString: supaqueue.yml writes ${VAR} literally.
import type { Node } from "yaml";
import { findCharacter } from "./characters.ts";
import { type Report, scalar, show } from "./fields.ts";
import type { UrlSecret } from "./types.ts";
import { missingVariablesMessage, resolveVariables, variableList } from "./variables.ts";

// A queue's `url`. It may hold ${VAR} (a token in the query, or the whole URL of a webhook whose path is its
// secret): the URL as written is safe to store and print, the filled-in one is a secret for Vault. Either way the
// URL that is called must be an absolute http(s) URL without a user name or password, which fetch refuses.

const URL_FORMS =
  "an absolute http:// or https:// URL, which may hold ${VAR} (e.g. ?token=${HOOK_TOKEN}), or ${VAR} for the whole URL";
const CREDENTIALS =
  'send them in a header instead, e.g. "Authorization: Basic ${BASIC_AUTH}", or keep a token in the environment and write it in the URL as ${VAR}, e.g. "?token=${HOOK_TOKEN}"';

// As written: http(s) with a host and no user name or password, or starting with a variable. Whitespace never.
// schema/supaqueue.schema.json has the same pattern.
const WRITTEN = /^(https?:\/\/[^/?#\s@]+([/?#]\S*)?|\$\{[A-Za-z_][A-Za-z0-9_]*\}\S*)$/;
const HAS_CREDENTIALS = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*@/;

/** The URL as written and, when it holds ${VAR}, the filled-in URL; null when it is unusable (reported). */
export function validateUrl(
  node: Node,
  field: string,
  report: Report,
  env: Record<string, string | undefined>,
): { url: string; urlSecret: UrlSecret | null } | null {
  const value = scalar(node);
  if (typeof value === "string" && HAS_CREDENTIALS.test(value)) {
    // Not echoed: the password is in it.
    report(
      node,
      field,
      `a URL may not carry a user name or password (fetch refuses such a URL, so every call would fail, and the URL as written is stored and printed); ${CREDENTIALS}`,
    );
    return null;
  }
  if (typeof value !== "string" || !WRITTEN.test(value)) {
    report(node, field, `invalid URL ${show(value)}; allowed: ${URL_FORMS}`);
    return null;
  }
  const resolved = resolveVariables(value, env);
  if (resolved.missing) {
    report(node, field, missingVariablesMessage(resolved.missing));
    return null;
  }
  if (resolved.variables.length === 0) {
    if (isHttpUrl(value)) return { url: value, urlSecret: null };
    report(node, field, `invalid URL ${show(value)}; allowed: ${URL_FORMS}`);
    return null;
  }
  // From here on the filled-in URL is a secret: messages name the variables, never what they hold.
  for (const part of resolved.parts) {
    const bad = part.variable ? findCharacter(part.text, isSpaceOrControl) : null;
    if (bad) {
      const atEnd =
        bad.index === part.text.length - 1 ? " (at its end: was it saved with a trailing newline?)" : "";
      report(
        node,
        field,
        `the value of \${${part.variable}} contains ${bad.what}${atEnd}; a URL cannot hold spaces or control characters: fix the variable's value`,
      );
      return null;
    }
  }
  const once = `once ${variableList(resolved.variables)} ${resolved.variables.length === 1 ? "is" : "are"} filled in`;
  if (HAS_CREDENTIALS.test(resolved.value)) {
    report(
      node,
      field,
      `${once}, the URL carries a user name or password, which fetch refuses (every call would fail); ${CREDENTIALS}`,
    );
    return null;
  }
  if (!isHttpUrl(resolved.value)) {
    report(
      node,
      field,
      `${once}, the URL is not an absolute http:// or https:// URL; check the variable${resolved.variables.length === 1 ? "'s value" : "s' values"} in the environment (its value is not shown)`,
    );
    return null;
  }
  return { url: value, urlSecret: { value: resolved.value, variables: resolved.variables } };
}

function isSpaceOrControl(codePoint: number): boolean {
  return codePoint <= 0x20 || codePoint === 0x7f || /\s/u.test(String.fromCodePoint(codePoint));
}

function isHttpUrl(value: string): boolean {
  if (!/^https?:\/\/[^/?#\s]+[^\s]*$/.test(value)) return false;
  try {
    const url = new URL(value);
    return (url.protocol === "http:" || url.protocol === "https:") && !url.username && !url.password;
  } catch {
    return false;
  }
}
