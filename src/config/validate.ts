// biome-ignore-all lint/suspicious/noTemplateCurlyInString: supaqueue.yml writes ${VAR} literally.
import { isMap, isScalar, isSeq, LineCounter, type Node, type Pair, parseDocument, type YAMLMap } from "yaml";
import { DURATION_FORMS, formatDuration, parseDuration } from "./duration.ts";
import {
  type ConfigProblem,
  DEFAULT_MAX_CALL_TIMEOUT_MS,
  HTTP_METHODS,
  type HttpMethod,
  type Position,
  QUEUE_DEFAULTS,
  type QueueFile,
  type QueueSpec,
  type SecretHeader,
} from "./types.ts";

export const QUEUE_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const FUNCTION_NAME = /^[A-Za-z0-9_-]{1,128}$/;
// An HTTP header name is an RFC 9110 token.
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;
const VARIABLE = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

export const TOP_LEVEL_KEYS = ["queues"];
export const QUEUE_KEYS = [
  "function",
  "url",
  "method",
  "headers",
  "workers",
  "max_attempts",
  "timeout",
  "backoff",
  "success_codes",
  "retry_codes",
  "rate_limit_per_second",
  "dead_letter_queue",
  "paused",
];
export const BACKOFF_KEYS = ["base", "max"];

export interface ValidateOptions {
  /** The environment that `${VAR}` is resolved from. */
  env: Record<string, string | undefined>;
  /** The longest timeout a queue may ask for (supaqueue.config.max_call_timeout_ms). */
  maxCallTimeoutMs?: number;
}

export interface Validated {
  config: QueueFile;
  problems: ConfigProblem[];
}

/**
 * Parses supaqueue.yml, checks it, fills in defaults and resolves `${VAR}` in header values. Every problem is
 * collected with its line and column (nothing stops at the first one), so one run shows them all.
 */
export function validateConfigText(text: string, file: string, options: ValidateOptions): Validated {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const problems: ConfigProblem[] = [];
  const at = (node: Node | Pair["key"] | null | undefined): Position => {
    const range = (node as { range?: [number, number, number] } | null | undefined)?.range;
    const offset = range ? range[0] : 0;
    const { line, col } = lines.linePos(offset);
    return { file, line, column: col };
  };
  const report = (node: Node | Pair["key"] | null | undefined, field: string, message: string) =>
    problems.push({ position: at(node), field, message });

  for (const error of doc.errors) {
    const { line, col } = error.linePos?.[0] ?? lines.linePos(error.pos[0]);
    const duplicate = error.code === "DUPLICATE_KEY";
    problems.push({
      position: { file, line, column: col },
      field: duplicate ? "queues" : "(yaml)",
      message: duplicate
        ? "this name appears twice; each queue name (and each key) may appear only once"
        : `not valid YAML: ${error.message.split("\n")[0]}`,
    });
  }
  if (problems.length > 0) return { config: { file, queues: [] }, problems };

  const root = doc.contents;
  if (!isMap(root)) {
    report(
      root,
      "(file)",
      'expected a mapping with a "queues" key, e.g. "queues:\\n  my-queue:\\n    url: https://..."',
    );
    return { config: { file, queues: [] }, problems };
  }
  checkKeys(root, "", TOP_LEVEL_KEYS, report);
  const queuesNode = root.get("queues", true) as Node | undefined;
  const queues: QueueSpec[] = [];
  if (queuesNode === undefined) {
    report(
      root,
      "queues",
      'is required: a mapping of queue name to its settings (use "queues: {}" for none)',
    );
  } else if (isScalar(queuesNode) && queuesNode.value === null) {
    // "queues:" with nothing under it: no queues.
  } else if (!isMap(queuesNode)) {
    report(queuesNode, "queues", "must be a mapping of queue name to its settings");
  } else {
    for (const pair of queuesNode.items) {
      const spec = validateQueue(pair, at, report, options, () => problems.length);
      if (spec) queues.push(spec);
    }
  }
  return { config: { file, queues }, problems };
}

type Report = (node: Node | Pair["key"] | null | undefined, field: string, message: string) => void;
type At = (node: Node | Pair["key"] | null | undefined) => Position;

function checkKeys(map: YAMLMap, prefix: string, allowed: string[], report: Report): void {
  for (const pair of map.items) {
    const key = isScalar(pair.key) ? pair.key.value : undefined;
    if (typeof key !== "string" || !allowed.includes(key)) {
      report(
        pair.key as Node,
        `${prefix}${String(key)}`,
        `unknown key "${String(key)}"; allowed keys: ${allowed.join(", ")}`,
      );
    }
  }
}

function validateQueue(
  pair: Pair,
  at: At,
  report: Report,
  options: ValidateOptions,
  problemsSoFar: () => number,
): QueueSpec | null {
  const keyNode = pair.key as Node;
  const name = isScalar(keyNode) ? String(keyNode.value) : "";
  const field = `queues.${name}`;
  const before = problemsSoFar();
  if (!QUEUE_NAME.test(name)) {
    report(
      keyNode,
      field,
      `invalid queue name "${name}"; allowed: 1 to 63 lowercase letters, digits, "-" and "_", starting with a letter or digit`,
    );
  }
  const node = pair.value as Node | null;
  if (!isMap(node)) {
    report(
      node ?? keyNode,
      field,
      'must be a mapping of settings, e.g. "url: https://..." or "function: my-function"',
    );
    return null;
  }
  checkKeys(node, `${field}.`, QUEUE_KEYS, report);
  const get = (key: string) => node.get(key, true) as Node | undefined;
  const sub = (key: string) => `${field}.${key}`;

  // Where to call: exactly one of function and url.
  const fn = get("function");
  const url = get("url");
  let functionName: string | null = null;
  let urlValue: string | null = null;
  if ((fn === undefined) === (url === undefined)) {
    report(
      fn ?? url ?? keyNode,
      field,
      fn
        ? 'has both "function" and "url"; set exactly one of them'
        : 'needs exactly one of "function" (an edge function of this project) and "url" (an http(s) URL)',
    );
  }
  if (fn !== undefined) {
    const value = scalar(fn);
    if (typeof value !== "string" || !FUNCTION_NAME.test(value)) {
      report(
        fn,
        sub("function"),
        `invalid edge function name ${show(value)}; allowed: letters, digits, "-" and "_"`,
      );
    } else functionName = value;
  }
  if (url !== undefined) {
    const value = scalar(url);
    if (typeof value !== "string" || !isHttpUrl(value)) {
      report(url, sub("url"), `invalid URL ${show(value)}; allowed: an absolute http:// or https:// URL`);
    } else if (VARIABLE.test(value)) {
      report(url, sub("url"), '"${VAR}" is only allowed in header values, which are stored in Vault');
    } else urlValue = value;
    VARIABLE.lastIndex = 0;
  }

  let method: HttpMethod = QUEUE_DEFAULTS.method;
  const methodNode = get("method");
  if (methodNode !== undefined) {
    const value = scalar(methodNode);
    const upper = typeof value === "string" ? value.toUpperCase() : "";
    if (!(HTTP_METHODS as readonly string[]).includes(upper)) {
      report(
        methodNode,
        sub("method"),
        `invalid method ${show(value)}; allowed values: ${HTTP_METHODS.join(", ")}`,
      );
    } else method = upper as HttpMethod;
  }

  const { headers, secretHeaders } = validateHeaders(get("headers"), sub("headers"), report, options);

  const workers = integer(
    get("workers"),
    sub("workers"),
    0,
    QUEUE_DEFAULTS.workers,
    report,
    "an integer, 0 or more",
  );
  const maxAttempts = integer(
    get("max_attempts"),
    sub("max_attempts"),
    1,
    QUEUE_DEFAULTS.maxAttempts,
    report,
    "an integer, 1 or more",
  );

  const maxTimeout = options.maxCallTimeoutMs ?? DEFAULT_MAX_CALL_TIMEOUT_MS;
  const timeoutNode = get("timeout");
  const timeoutMs = duration(timeoutNode, sub("timeout"), QUEUE_DEFAULTS.timeoutMs, report);
  if (timeoutMs !== null && (timeoutMs < 1 || timeoutMs > maxTimeout)) {
    report(
      timeoutNode,
      sub("timeout"),
      `${formatDuration(timeoutMs)} is beyond what an edge function can wait; allowed: from 1ms to ${formatDuration(maxTimeout)} (supaqueue.config.max_call_timeout_ms, below the edge wall clock)`,
    );
  }

  let backoffBaseMs: number | null = QUEUE_DEFAULTS.backoffBaseMs;
  let backoffMaxMs: number | null = QUEUE_DEFAULTS.backoffMaxMs;
  const backoff = get("backoff");
  if (backoff !== undefined) {
    if (!isMap(backoff)) {
      report(
        backoff,
        sub("backoff"),
        `must be a mapping with "base" and/or "max", e.g. "{ base: 10s, max: 1h }"`,
      );
    } else {
      checkKeys(backoff, `${sub("backoff")}.`, BACKOFF_KEYS, report);
      backoffBaseMs = duration(
        backoff.get("base", true) as Node | undefined,
        sub("backoff.base"),
        QUEUE_DEFAULTS.backoffBaseMs,
        report,
      );
      const maxNode = backoff.get("max", true) as Node | undefined;
      backoffMaxMs = duration(maxNode, sub("backoff.max"), QUEUE_DEFAULTS.backoffMaxMs, report);
      if (backoffBaseMs !== null && backoffMaxMs !== null && backoffMaxMs < backoffBaseMs) {
        report(
          maxNode ?? backoff,
          sub("backoff.max"),
          `${formatDuration(backoffMaxMs)} is shorter than backoff.base (${formatDuration(backoffBaseMs)}); allowed: at least the base`,
        );
      }
    }
  }

  const successCodes = statusCodes(get("success_codes"), sub("success_codes"), report);
  const retryCodes = statusCodes(get("retry_codes"), sub("retry_codes"), report);

  let rateLimitPerSecond: number | null = null;
  const rateNode = get("rate_limit_per_second");
  if (rateNode !== undefined) {
    const value = scalar(rateNode);
    if (typeof value !== "number" || !(value > 0) || !Number.isFinite(value)) {
      report(
        rateNode,
        sub("rate_limit_per_second"),
        `${show(value)} is not allowed; allowed: a number of calls per second, more than 0 (e.g. 10 or 0.5)`,
      );
    } else rateLimitPerSecond = value;
  }

  let deadLetterQueue: string | null = null;
  const deadLetterNode = get("dead_letter_queue");
  if (deadLetterNode !== undefined) {
    const value = scalar(deadLetterNode);
    if (typeof value !== "string" || !QUEUE_NAME.test(value)) {
      report(
        deadLetterNode,
        sub("dead_letter_queue"),
        `${show(value)} is not a queue name; allowed: the name of another queue`,
      );
    } else if (value === name) {
      report(
        deadLetterNode,
        sub("dead_letter_queue"),
        "a queue cannot be its own dead-letter queue; allowed: the name of another queue",
      );
    } else deadLetterQueue = value;
  }

  let paused = QUEUE_DEFAULTS.paused;
  const pausedNode = get("paused");
  if (pausedNode !== undefined) {
    const value = scalar(pausedNode);
    if (typeof value !== "boolean")
      report(pausedNode, sub("paused"), `${show(value)} is not allowed; allowed values: true, false`);
    else paused = value;
  }

  if (problemsSoFar() > before) return null;
  return {
    name,
    url: urlValue,
    functionName,
    method,
    headers,
    secretHeaders,
    workers: workers ?? QUEUE_DEFAULTS.workers,
    maxAttempts: maxAttempts ?? QUEUE_DEFAULTS.maxAttempts,
    timeoutMs: timeoutMs ?? QUEUE_DEFAULTS.timeoutMs,
    backoffBaseMs: backoffBaseMs ?? QUEUE_DEFAULTS.backoffBaseMs,
    backoffMaxMs: backoffMaxMs ?? QUEUE_DEFAULTS.backoffMaxMs,
    successCodes,
    retryCodes,
    rateLimitPerSecond,
    deadLetterQueue,
    deadLetterPosition: at(deadLetterNode ?? keyNode),
    paused,
    position: at(keyNode),
    timeoutPosition: at(timeoutNode ?? keyNode),
  };
}

function validateHeaders(
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

function integer(
  node: Node | undefined,
  field: string,
  min: number,
  fallback: number,
  report: Report,
  allowed: string,
): number | null {
  if (node === undefined) return fallback;
  const value = scalar(node);
  if (typeof value !== "number" || !Number.isInteger(value) || value < min) {
    report(node, field, `${show(value)} is not allowed; allowed: ${allowed}`);
    return null;
  }
  return value;
}

function duration(node: Node | undefined, field: string, fallback: number, report: Report): number | null {
  if (node === undefined) return fallback;
  const value = scalar(node);
  const ms = parseDuration(value);
  if (ms === null) report(node, field, `invalid duration ${show(value)}; allowed: ${DURATION_FORMS}`);
  return ms;
}

function statusCodes(node: Node | undefined, field: string, report: Report): number[] | null {
  if (node === undefined) return null;
  if (!isSeq(node)) {
    report(node, field, "must be a list of HTTP statuses, e.g. [200, 201]");
    return null;
  }
  const codes: number[] = [];
  for (const item of node.items) {
    const value = scalar(item as Node);
    if (typeof value !== "number" || !Number.isInteger(value) || value < 100 || value > 599) {
      report(item as Node, field, `${show(value)} is not an HTTP status; allowed: integers from 100 to 599`);
    } else codes.push(value);
  }
  return codes;
}

function scalar(node: Node | null | undefined): unknown {
  if (isScalar(node)) return node.value;
  if (isMap(node)) return { kind: "mapping" };
  if (isSeq(node)) return { kind: "list" };
  return null;
}

function show(value: unknown): string {
  if (value === null || value === undefined) return "(empty)";
  if (typeof value === "object" && "kind" in value) return `a ${(value as { kind: string }).kind}`;
  return JSON.stringify(value);
}

function isHttpUrl(value: string): boolean {
  if (!/^https?:\/\/[^/?#\s]+[^\s]*$/.test(value)) return false;
  try {
    const url = new URL(value);
    return url.protocol === "http:" || url.protocol === "https:";
  } catch {
    return false;
  }
}
