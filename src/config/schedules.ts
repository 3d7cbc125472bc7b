import { isMap, isScalar, type Node, type Pair } from "yaml";
import { CRON_FORMS, cronProblem } from "./cron.ts";
import { type At, checkKeys, NAME, NAME_RULE, type Report, scalar, show } from "./fields.ts";
import { atMost, count, LIMITS } from "./limits.ts";
import type { ScheduleSpec } from "./types.ts";

const SCHEDULE_KEYS = ["cron", "queue", "payload"];

/**
 * Checks the `schedules:` section: schedule name → { cron, queue, payload }. Whether the queue exists is known
 * only against the database, so the plan checks that; here each schedule is checked on its own.
 */
export function validateSchedules(
  node: Node | undefined,
  keyNode: Node | undefined,
  at: At,
  report: Report,
  maxPayloadBytes: number,
): ScheduleSpec[] {
  if (node === undefined || (isScalar(node) && node.value === null)) return [];
  if (!isMap(node)) {
    report(
      node,
      "schedules",
      'must be a mapping of schedule name to its settings, e.g. "nightly-report: { cron: \\"0 3 * * *\\", queue: reports }"',
    );
    return [];
  }
  if (node.items.length > LIMITS.schedules.max) {
    report(
      keyNode ?? node,
      "schedules",
      `the file has ${count(node.items.length)} schedules; ${atMost(LIMITS.schedules)}`,
    );
  }
  const schedules: ScheduleSpec[] = [];
  for (const pair of node.items) {
    const spec = validateSchedule(pair, at, report, maxPayloadBytes);
    if (spec) schedules.push(spec);
  }
  return schedules;
}

function validateSchedule(pair: Pair, at: At, report: Report, maxPayloadBytes: number): ScheduleSpec | null {
  const keyNode = pair.key as Node;
  const name = isScalar(keyNode) ? String(keyNode.value) : "";
  const field = `schedules.${name}`;
  let ok = true;
  const problem: Report = (n, f, m) => {
    ok = false;
    report(n, f, m);
  };
  if (!NAME.test(name)) {
    problem(keyNode, field, `invalid schedule name "${name}"; allowed: ${NAME_RULE}`);
  }
  const node = pair.value as Node | null;
  if (!isMap(node)) {
    const empty = node === null || (isScalar(node) && node.value === null);
    problem(
      empty ? keyNode : node,
      field,
      'must be a mapping with "cron" and "queue" (and optionally "payload")',
    );
    return null;
  }
  checkKeys(node, `${field}.`, SCHEDULE_KEYS, problem);
  const get = (key: string) => node.get(key, true) as Node | undefined;

  const cronNode = get("cron");
  const cron = scalar(cronNode);
  if (cronNode === undefined) {
    problem(keyNode, `${field}.cron`, `is required; allowed: ${CRON_FORMS}`);
  } else if (typeof cron !== "string") {
    problem(cronNode, `${field}.cron`, `${show(cron)} is not a schedule; allowed: ${CRON_FORMS}`);
  } else {
    const wrong = cronProblem(cron);
    if (wrong) problem(cronNode, `${field}.cron`, `${wrong}; allowed: ${CRON_FORMS}`);
  }

  const queueNode = get("queue");
  const queue = scalar(queueNode);
  if (queueNode === undefined) {
    problem(keyNode, `${field}.queue`, "is required: the queue the schedule enqueues into");
  } else if (typeof queue !== "string" || !NAME.test(queue)) {
    problem(
      queueNode,
      `${field}.queue`,
      `${show(queue)} is not a queue name; allowed: a queue of this file or one that exists in the database`,
    );
  }

  const payloadNode = get("payload");
  let payload: unknown = {};
  if (payloadNode !== undefined) {
    payload = payloadNode.toJSON();
    if (typeof payload !== "object" || payload === null) {
      problem(
        payloadNode,
        `${field}.payload`,
        `${show(scalar(payloadNode))} is not allowed; allowed: a mapping or a list (the job's JSON payload), e.g. "{ kind: daily }"`,
      );
    } else {
      const bytes = jsonbTextBytes(payload);
      if (bytes > maxPayloadBytes) {
        const limit =
          maxPayloadBytes === LIMITS.payloadBytes.max
            ? LIMITS.payloadBytes
            : { ...LIMITS.payloadBytes, label: count(maxPayloadBytes) };
        problem(payloadNode, `${field}.payload`, `is ${count(bytes)} bytes as JSON; ${atMost(limit)}`);
      }
    }
  }
  if (!ok) return null;
  return {
    name,
    cron: (cron as string).trim(),
    queue: queue as string,
    payload,
    position: at(keyNode),
    queuePosition: at(queueNode),
    cronPosition: at(cronNode),
  };
}

/**
 * The size of a JSON value as the database measures a payload: octet_length of its jsonb text, which writes
 * `{"a": 1, "b": [1, 2]}` (a space after each colon and comma).
 */
function jsonbTextBytes(value: unknown): number {
  if (Array.isArray(value)) {
    return 2 + value.reduce((sum: number, item) => sum + jsonbTextBytes(item), 0) + separators(value.length);
  }
  if (typeof value === "object" && value !== null) {
    const entries = Object.entries(value);
    const inner = entries.reduce((sum, [key, item]) => sum + utf8Bytes(key) + 2 + jsonbTextBytes(item), 0);
    return 2 + inner + separators(entries.length);
  }
  return utf8Bytes(value);
}

function separators(items: number): number {
  return items > 1 ? 2 * (items - 1) : 0;
}

function utf8Bytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value) ?? "null", "utf8");
}
