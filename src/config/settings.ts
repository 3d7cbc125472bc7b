import { isCollection, type Node } from "yaml";
import { type JsonSchema, schemaProblems } from "../client/payload.ts";
import { formatDuration } from "./duration.ts";
import { boolean, duration, integer, NAME, type Report, rate, scalar, show, statusCodes } from "./fields.ts";
import { LIMITS, type Limit } from "./limits.ts";
import { formatRate } from "./rate.ts";
import {
  DEFAULT_MAX_CALL_TIMEOUT_MS,
  HTTP_METHODS,
  type HttpMethod,
  type OnSuccessPayload,
  type QueueSpec,
  type RetryAfterScope,
  type ValidateOptions,
} from "./types.ts";
import { validateUrl } from "./url.ts";

// The settings of a queue, one entry each: its key in supaqueue.yml, the QueueSpec field it fills, its column of
// supaqueue.queue, its label in the plan's change lines, its default, how it is read (with its bounds) and how it is
// shown. The validator, the installed-state reader, the plan's diff and reconcile are all derived from this list, so
// adding a setting is one entry here (with its QueueSpec field) plus its column in the SQL. Where to call (url or
// function) and the headers are not settings of this kind: each of them fills two columns and is read by its own
// module (url.ts, headers.ts).

/** What reading one setting may need besides its node: the queue's name, the run's options, where to report. */
export interface SettingContext {
  queue: string;
  options: ValidateOptions;
  report: Report;
}

export interface Setting<
  F extends keyof QueueSpec = keyof QueueSpec,
  C extends string | null = string | null,
> {
  /** The key in supaqueue.yml; "group.key" for a key inside a mapping (backoff.base). */
  key: string;
  field: F;
  /** Its column of supaqueue.queue; null when it is kept elsewhere (workers are rows, a signing key is in Vault). */
  column: C;
  /** How the plan's change lines name it. */
  label: string;
  default: QueueSpec[F];
  /** Reads a node that is present: its value, with problems reported at the node (the value then is unused). */
  read(node: Node, field: string, context: SettingContext): QueueSpec[F];
  /** The value in the plan's change lines (null is shown as "none" before this is asked). */
  format(value: NonNullable<QueueSpec[F]>): string;
}

/** Keeps each entry's field and column as literal types, so the row type below can be derived from the list. */
function setting<F extends keyof QueueSpec, C extends string | null>(entry: Setting<F, C>): Setting<F, C> {
  return entry;
}

/** A true/false setting, false unless the file says otherwise. */
function flag<
  F extends "slowDown" | "ordered" | "holdKeyOnFailure" | "signed" | "paused" | "fanOut",
  C extends string | null,
>(key: string, field: F, column: C): Setting<F, C> {
  return setting({
    key,
    field,
    column,
    label: key,
    default: false,
    read: (node, at, { report }) => boolean(node, at, false, report),
    format: String,
  });
}

const codes = (value: number[]) => `[${value.join(", ")}]`;

/** An optional duration from 1s up to `limit`; below 1s the message says why (`tooShort`). */
function secondsOrMore(
  node: Node | undefined,
  field: string,
  report: Report,
  limit: Limit,
  tooShort: string,
): number | null {
  const ms = duration(node, field, 0, report, limit);
  if (ms === null || ms >= 1000) return ms;
  report(node, field, `${formatDuration(ms)} is ${tooShort}; allowed: from 1s to ${limit.label}`);
  return null;
}

/** A setting naming another queue (dead_letter_queue, on_success.queue); `role` says what that queue is for. */
function otherQueue<F extends "deadLetterQueue" | "onSuccessQueue", C extends string>(
  key: string,
  field: F,
  column: C,
  role: string,
): Setting<F, C> {
  return setting({
    key,
    field,
    column,
    label: key,
    default: null,
    read(node, at, { queue, report }) {
      const value = scalar(node);
      if (typeof value !== "string" || !NAME.test(value))
        report(node, at, `${show(value)} is not a queue name; allowed: the name of another queue`);
      else if (value === queue)
        report(node, at, `a queue cannot be its own ${role}; allowed: the name of another queue`);
      else return value;
      return null;
    },
    format: String,
  });
}

/**
 * A queue's `payload:`, a JSON Schema of what the client and `supaqueue enqueue` accept: each problem (a keyword the
 * checker does not support, a value of the wrong shape, a top-level type that is no JSON object or array) reported
 * at its own line.
 */
function payloadSchema(node: Node, field: string, report: SettingContext["report"]): JsonSchema | null {
  const schema = node.toJSON() as unknown;
  const problems = schemaProblems(schema);
  const types = typeof schema === "object" && schema !== null ? (schema as JsonSchema).type : undefined;
  if (types !== undefined && [types].flat().some((t) => t !== "object" && t !== "array"))
    problems.push({ path: "/type", problem: "must be object or array: a payload is a JSON object or array" });
  for (const { path, problem } of problems) {
    const keys =
      path === ""
        ? []
        : path
            .slice(1)
            .split("/")
            .map((k) => k.replaceAll("~1", "/").replaceAll("~0", "~"));
    const at = isCollection(node)
      ? (node.getIn(
          keys.map((k) => (/^\d+$/.test(k) ? Number(k) : k)),
          true,
        ) as Node)
      : node;
    report(at ?? node, [field, ...keys].join("."), problem);
  }
  return problems.length === 0 ? (schema as JsonSchema) : null;
}

/** A schema in the plan's change lines: its JSON, cut short. */
function showSchema(schema: JsonSchema): string {
  const json = JSON.stringify(schema);
  return json.length > 60 ? `${json.slice(0, 57)}...` : json;
}

export const SETTINGS = [
  setting({
    key: "method",
    field: "method",
    column: "method",
    label: "method",
    default: "POST" as HttpMethod,
    read(node, field, { report }) {
      const value = scalar(node);
      const upper = typeof value === "string" ? value.toUpperCase() : "";
      if ((HTTP_METHODS as readonly string[]).includes(upper)) return upper as HttpMethod;
      report(node, field, `invalid method ${show(value)}; allowed values: ${HTTP_METHODS.join(", ")}`);
      return "POST";
    },
    format: String,
  }),
  setting({
    key: "workers",
    field: "workers",
    column: null,
    label: "workers",
    default: 1,
    read: (node, field, { report }) => integer(node, field, 0, LIMITS.workers, 1, report) ?? 1,
    format: String,
  }),
  setting({
    key: "max_attempts",
    field: "maxAttempts",
    column: "max_attempts",
    label: "max_attempts",
    default: 3,
    read: (node, field, { report }) => integer(node, field, 1, LIMITS.maxAttempts, 3, report) ?? 3,
    format: String,
  }),
  setting({
    key: "timeout",
    field: "timeoutMs",
    column: "timeout_ms",
    label: "timeout",
    default: 30_000,
    read(node, field, { options, report }) {
      const ms = duration(node, field, 30_000, report);
      const max = options.maxCallTimeoutMs ?? DEFAULT_MAX_CALL_TIMEOUT_MS;
      const range = `allowed: from 1ms to ${formatDuration(max)} (supaqueue.config.max_call_timeout_ms, below the edge wall clock)`;
      if (ms !== null && ms < 1)
        report(node, field, `${formatDuration(ms)} is too short: a call needs at least 1ms; ${range}`);
      else if (ms !== null && ms > max)
        report(node, field, `${formatDuration(ms)} is beyond what an edge function can wait; ${range}`);
      return ms ?? 30_000;
    },
    format: formatDuration,
  }),
  setting({
    key: "callback_timeout",
    field: "callbackTimeoutMs",
    column: "callback_timeout_ms",
    label: "callback_timeout",
    default: null,
    read: (node, field, { report }) =>
      secondsOrMore(node, field, report, LIMITS.callbackTimeoutMs, "too short for work that outlives a call"),
    format: formatDuration,
  }),
  setting({
    key: "backoff.base",
    field: "backoffBaseMs",
    column: "backoff_base_ms",
    label: "backoff.base",
    default: 10_000,
    read: (node, field, { report }) => duration(node, field, 10_000, report, LIMITS.backoffMs) ?? 10_000,
    format: formatDuration,
  }),
  setting({
    key: "backoff.max",
    field: "backoffMaxMs",
    column: "backoff_max_ms",
    label: "backoff.max",
    default: 3_600_000,
    read: (node, field, { report }) =>
      duration(node, field, 3_600_000, report, LIMITS.backoffMs) ?? 3_600_000,
    format: formatDuration,
  }),
  setting({
    key: "success_codes",
    field: "successCodes",
    column: "success_codes",
    label: "success_codes",
    default: null,
    read: (node, field, { report }) => statusCodes(node, field, report),
    format: codes,
  }),
  setting({
    key: "retry_codes",
    field: "retryCodes",
    column: "retry_codes",
    label: "retry_codes",
    default: null,
    read: (node, field, { report }) => statusCodes(node, field, report),
    format: codes,
  }),
  setting({
    key: "rate_limit",
    field: "rateLimitPerSecond",
    column: "rate_limit_per_second",
    label: "rate_limit",
    default: null,
    read: (node, field, { report }) => rate(node, field, report),
    format: formatRate,
  }),
  flag("slow_down", "slowDown", "slow_down"),
  setting({
    key: "per_key_concurrency",
    field: "perKeyConcurrency",
    column: "per_key_concurrency",
    label: "per_key_concurrency",
    default: null,
    read: (node, field, { report }) => integer(node, field, 1, LIMITS.perKeyConcurrency, 1, report),
    format: String,
  }),
  flag("ordered", "ordered", "ordered"),
  flag("hold_key_on_failure", "holdKeyOnFailure", "hold_key_on_failure"),
  setting({
    key: "key_field",
    field: "keyField",
    column: "key_field",
    label: "key_field",
    default: null,
    read(node, field, { report }) {
      const value = scalar(node);
      if (typeof value === "string" && /^[A-Za-z0-9_.-]{1,63}$/.test(value)) return value;
      report(
        node,
        field,
        `${show(value)} is not a payload field name; allowed: 1 to 63 letters, digits, "_", "-" and "."`,
      );
      return null;
    },
    format: String,
  }),
  setting({
    key: "honor_retry_after",
    field: "honorRetryAfter",
    column: "honor_retry_after",
    label: "honor_retry_after",
    default: "job" as RetryAfterScope,
    read(node, field, { report }) {
      const value = scalar(node);
      if (value === "job" || value === "queue") return value;
      report(
        node,
        field,
        `${show(value)} is not allowed; allowed values: job (a Retry-After delays only its job), queue (it also holds the queue's new calls until then)`,
      );
      return "job";
    },
    format: String,
  }),
  otherQueue("dead_letter_queue", "deadLetterQueue", "dead_letter_queue", "dead-letter queue"),
  // on_success: a mapping like backoff. Each successful job enqueues a job into on_success.queue (the database
  // refuses a cycle of on_success queues, as it refuses one of dead-letter queues).
  otherQueue("on_success.queue", "onSuccessQueue", "on_success_queue", "on_success queue"),
  setting({
    key: "on_success.payload",
    field: "onSuccessPayload",
    column: "on_success_payload",
    label: "on_success.payload",
    default: "response" as OnSuccessPayload,
    read(node, field, { report }) {
      const value = scalar(node);
      if (value === "response" || value === "payload" || value === "merged") return value;
      report(
        node,
        field,
        `${show(value)} is not allowed; allowed values: response (the JSON response, or its field), payload (the original payload), merged (the original payload with the response object's fields)`,
      );
      return "response";
    },
    format: String,
  }),
  setting({
    key: "on_success.field",
    field: "onSuccessField",
    column: "on_success_field",
    label: "on_success.field",
    default: null,
    read(node, field, { report }) {
      const value = scalar(node);
      if (typeof value === "string" && value !== "" && value.length <= 256) return value;
      report(node, field, `${show(value)} is not allowed; allowed: the name of a field of the JSON response`);
      return null;
    },
    format: String,
  }),
  flag("on_success.fan_out", "fanOut", "fan_out"),
  setting({
    key: "on_success.fan_out_max",
    field: "fanOutMax",
    column: "fan_out_max",
    label: "on_success.fan_out_max",
    default: 100,
    read: (node, field, { report }) => integer(node, field, 1, LIMITS.fanOut, 100, report) ?? 100,
    format: String,
  }),
  // alerts: a mapping like backoff. The webhook is no column of its own: the installer makes the queue
  // "<queue>-alerts" that calls it (its URL in Vault when it holds ${VAR}, as any queue's), and this queue's
  // alert_queue names that queue (validate.ts adds it to the file's queues, plan.ts fills the column).
  setting({
    key: "alerts.webhook",
    field: "alertWebhook",
    column: null,
    label: "alerts.webhook",
    default: null,
    read: (node, field, { options, report }) => validateUrl(node, field, report, options.env),
    format: (webhook) => webhook.url,
  }),
  setting({
    key: "alerts.failure_rate",
    field: "alertFailureRate",
    column: "alert_failure_rate",
    label: "alerts.failure_rate",
    default: null,
    read(node, field, { report }) {
      const value = scalar(node);
      const match = typeof value === "string" ? /^\s*(\d+(\.\d+)?)\s*%\s*$/.exec(value) : null;
      const percent = match ? Number(match[1]) : Number.NaN;
      if (percent > 0 && percent <= 100) return percent / 100;
      report(
        node,
        field,
        `${show(value)} is not allowed; allowed: a percentage of the jobs finished in the last 5 minutes that failed for good, more than 0% and at most 100%, e.g. 50%`,
      );
      return null;
    },
    format: (fraction) => `${Math.round(fraction * 1000) / 10}%`,
  }),
  setting({
    key: "alerts.oldest_due",
    field: "alertOldestDueMs",
    column: "alert_oldest_due_ms",
    label: "alerts.oldest_due",
    default: null,
    read: (node, field, { report }) =>
      secondsOrMore(
        node,
        field,
        report,
        LIMITS.alertOldestDueMs,
        "too short: alerts are checked every 5 seconds",
      ),
    format: formatDuration,
  }),
  setting({
    key: "alerts.dead_letters",
    field: "alertDeadLetters",
    column: "alert_dead_letters",
    label: "alerts.dead_letters",
    default: null,
    read: (node, field, { report }) => integer(node, field, 1, LIMITS.alertDeadLetters, 1, report),
    format: String,
  }),
  setting({
    key: "payload",
    field: "payloadSchema",
    column: "payload_schema",
    label: "payload",
    default: null,
    read: (node, field, { report }) => payloadSchema(node, field, report),
    format: showSchema,
  }),
  flag("signed", "signed", null),
  flag("paused", "paused", "paused"),
] as const;

type Settings = (typeof SETTINGS)[number];

/** The settings kept in a column of supaqueue.queue, with the type of their value. */
export type SettingColumns = {
  [S in Settings as S["column"] extends string ? S["column"] : never]: QueueSpec[S["field"]];
};

/** The settings kept in a column, with it. */
export const COLUMN_SETTINGS = SETTINGS.filter(
  (s): s is Extract<Settings, { column: string }> => s.column !== null,
);

/** The setting after which a queue's headers are read and listed (validate.ts reads them in headers.ts). */
export const HEADERS_AFTER = "method";

/** The keys of a queue in supaqueue.yml, as messages list them (a group such as backoff once). */
export const QUEUE_KEYS = [
  "function",
  "url",
  ...new Set(
    SETTINGS.flatMap((s) => (s.key === HEADERS_AFTER ? [s.key, "headers"] : [s.key.split(".")[0] as string])),
  ),
];

/** The keys inside a group ("backoff" → ["base", "max"]). */
export function groupKeys(group: string): string[] {
  return SETTINGS.filter((s) => s.key.startsWith(`${group}.`)).map((s) => s.key.slice(group.length + 1));
}
