// biome-ignore-all lint/suspicious/noTemplateCurlyInString: supaqueue.yml writes ${VAR} literally.
import { isMap, isScalar, isSeq, LineCounter, type Node, type Pair, parseDocument, type YAMLMap } from "yaml";
import { ALERT_QUEUE_SUFFIX, readDashboardUrl, withAlertQueues } from "./alerts.ts";
import { formatDuration } from "./duration.ts";
import { type At, checkKeys, NAME, NAME_RULE, type Report, scalar, show } from "./fields.ts";
import { validateHeaders } from "./headers.ts";
import { atMost, count, LIMITS } from "./limits.ts";
import { validateSchedules } from "./schedules.ts";
import { groupKeys, HEADERS_AFTER, QUEUE_KEYS, SETTINGS, type SettingContext } from "./settings.ts";
import type { ConfigProblem, Position, QueueFile, QueueSpec, ValidateOptions } from "./types.ts";
import { validateUrl } from "./url.ts";

const QUEUE_NAME = NAME;

/** What a group of settings looks like, for the message when it is not a mapping. */
const GROUP_EXAMPLES: Record<string, string> = {
  backoff: "{ base: 10s, max: 1h }",
  alerts: '{ webhook: "${SLACK_WEBHOOK_URL}", failure_rate: 50%, oldest_due: 10m, dead_letters: 10 }',
  on_success: "{ queue: send-email, payload: response, field: items, fan_out: true }",
};

const FUNCTION_NAME = /^[A-Za-z0-9_-]{1,128}$/;

const TOP_LEVEL_KEYS = ["queues", "schedules", "dashboard_url"];

export interface Validated {
  config: QueueFile;
  problems: ConfigProblem[];
}

/**
 * Parses supaqueue.yml, checks it, fills in defaults and resolves `${VAR}` in header values and URLs. Every problem
 * is collected with its line and column (nothing stops at the first one), so one run shows them all. The time it
 * takes grows in proportion to the file's size.
 */
export function validateConfigText(text: string, file: string, options: ValidateOptions): Validated {
  const lines = new LineCounter();
  // yaml's own uniqueKeys check compares each key with every earlier key of its mapping: a file of 100,000 queues
  // took minutes. duplicateKeys does the same check with a set.
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: false });
  const problems: ConfigProblem[] = [];
  const at = (node: Node | Pair["key"] | null | undefined): Position => {
    const range = (node as { range?: [number, number, number] } | null | undefined)?.range;
    const offset = range ? range[0] : 0;
    const { line, col } = lines.linePos(offset);
    return { file, line, column: col };
  };
  const report = (node: Node | Pair["key"] | null | undefined, field: string, message: string) =>
    problems.push({ position: at(node), field, message });

  const early: { offset: number; problem: ConfigProblem }[] = doc.errors.map((error) => {
    const { line, col } = error.linePos?.[0] ?? lines.linePos(error.pos[0]);
    return {
      offset: error.pos[0],
      problem: {
        position: { file, line, column: col },
        field: "(yaml)",
        message: `not valid YAML: ${error.message.split("\n")[0]}`,
      },
    };
  });
  for (const { key, section } of duplicateKeys(doc.contents)) {
    early.push({
      offset: (key as { range?: [number, number, number] }).range?.[0] ?? 0,
      problem: {
        position: at(key),
        field: section,
        message: `this name appears twice; each ${section === "schedules" ? "schedule" : "queue"} name (and each key) may appear only once`,
      },
    });
  }
  if (early.length > 0) {
    early.sort((a, b) => a.offset - b.offset);
    return { config: { file, queues: [], schedules: [] }, problems: early.map((e) => e.problem) };
  }

  const root = doc.contents;
  if (!isMap(root)) {
    report(
      root,
      "(file)",
      'expected a mapping with a "queues" key, e.g. "queues:\\n  my-queue:\\n    url: https://..."',
    );
    return { config: { file, queues: [], schedules: [] }, problems };
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
    if (queuesNode.items.length > LIMITS.queues.max) {
      report(
        keyOf(root, "queues"),
        "queues",
        `the file has ${count(queuesNode.items.length)} queues; ${atMost(LIMITS.queues)}`,
      );
    }
    for (const pair of queuesNode.items) {
      const spec = validateQueue(pair, at, report, options, () => problems.length);
      if (spec) queues.push(spec);
    }
  }
  const schedules = validateSchedules(
    root.get("schedules", true) as Node | undefined,
    keyOf(root, "schedules"),
    at,
    report,
    options.maxPayloadBytes ?? LIMITS.payloadBytes.max,
  );
  const dashboardUrl = readDashboardUrl(root.get("dashboard_url", true) as Node | undefined, report);
  return {
    config: { file, dashboardUrl, queues: withAlertQueues(queues, dashboardUrl, problems), schedules },
    problems,
  };
}

/** The key node of a top-level section, to point at the section as a whole. */
function keyOf(root: YAMLMap, key: string): Node | undefined {
  return root.items.find((pair) => isScalar(pair.key) && pair.key.value === key)?.key as Node | undefined;
}

/**
 * Keys that appear twice in a mapping, anywhere in the document, with the top-level section ("queues",
 * "schedules") they are in. Scalar keys are equal when their values are, as yaml's own check has it.
 */
function duplicateKeys(root: unknown): { key: Node; section: string }[] {
  const found: { key: Node; section: string }[] = [];
  const pending: { node: unknown; section: string | null }[] = [{ node: root, section: null }];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const { node, section } = next;
    if (isMap(node)) {
      const seen = new Set<unknown>();
      for (const pair of node.items) {
        const key = isScalar(pair.key) ? pair.key.value : pair.key;
        const inside = section ?? (typeof key === "string" ? key : "queues");
        if (seen.has(key)) found.push({ key: pair.key as Node, section: section ?? "queues" });
        seen.add(key);
        pending.push({ node: pair.value, section: inside });
      }
    } else if (isSeq(node)) {
      for (const item of node.items) pending.push({ node: item, section });
    }
  }
  return found;
}

/** The queue's problems go through `report`; the spec is returned only when the queue has none. */
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
    report(keyNode, field, `invalid queue name "${name}"; allowed: ${NAME_RULE}`);
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
  const queue: QueueMap = { name, keyNode, node, field, report, options };
  const target = readTarget(queue);
  const { settings, headers, nodes } = readSettings(queue, problemsSoFar);
  if (problemsSoFar() > before || !headers) return null;
  return {
    name,
    ...target,
    ...headers,
    ...settings,
    alertLink: null,
    deadLetterPosition: at(nodes.get("dead_letter_queue") ?? keyNode),
    onSuccessPosition: at(nodes.get("on_success.queue") ?? keyNode),
    position: at(keyNode),
    timeoutPosition: at(nodes.get("timeout") ?? keyNode),
  };
}

/** One queue's mapping in the file, and what reading it needs. */
interface QueueMap {
  name: string;
  keyNode: Node;
  node: YAMLMap;
  /** queues.<name> */
  field: string;
  report: Report;
  options: ValidateOptions;
}

const get = (queue: QueueMap, key: string) => queue.node.get(key, true) as Node | undefined;

/** Where to call: exactly one of function and url. */
function readTarget(queue: QueueMap): Pick<QueueSpec, "functionName" | "url" | "urlSecret"> {
  const { keyNode, field, report, options } = queue;
  const fn = get(queue, "function");
  const url = get(queue, "url");
  const target: Pick<QueueSpec, "functionName" | "url" | "urlSecret"> = {
    functionName: null,
    url: null,
    urlSecret: null,
  };
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
        `${field}.function`,
        `invalid edge function name ${show(value)}; allowed: letters, digits, "-" and "_"`,
      );
    } else target.functionName = value;
  }
  if (url !== undefined) {
    const checked = validateUrl(url, `${field}.url`, report, options.env);
    target.url = checked?.url ?? null;
    target.urlSecret = checked?.urlSecret ?? null;
  }
  return target;
}

type Settings = Pick<QueueSpec, (typeof SETTINGS)[number]["field"]>;

/**
 * Every setting of settings.ts, in its order, and the headers where they stand among the keys (after method), so
 * problems come in the keys' order. A group (backoff) is a mapping of its own keys. Returns the nodes read, to point
 * at them from later checks.
 */
function readSettings(
  queue: QueueMap,
  problemsSoFar: () => number,
): {
  settings: Settings;
  headers: Pick<QueueSpec, "headers" | "secretHeaders"> | undefined;
  nodes: Map<string, Node | undefined>;
} {
  const { field, report, options } = queue;
  const sub = (key: string) => `${field}.${key}`;
  const groups = new Map<string, YAMLMap | null>();
  const settingNode = (key: string): Node | undefined => {
    const [group, inner] = key.split(".") as [string, string | undefined];
    if (inner === undefined) return get(queue, key);
    if (!groups.has(group)) {
      const groupNode = get(queue, group);
      if (groupNode !== undefined && !isMap(groupNode)) {
        const example = groupKeys(group)
          .map((k) => `"${k}"`)
          .join(" and/or ");
        report(groupNode, sub(group), `must be a mapping with ${example}, e.g. "${GROUP_EXAMPLES[group]}"`);
      } else if (groupNode !== undefined) checkKeys(groupNode, `${sub(group)}.`, groupKeys(group), report);
      groups.set(group, isMap(groupNode) ? groupNode : null);
    }
    return groups.get(group)?.get(inner, true) as Node | undefined;
  };
  const context: SettingContext = { queue: queue.name, options, report };
  const values: Record<string, unknown> = {};
  const nodes = new Map<string, Node | undefined>();
  const valid = new Set<string>();
  let headers: Pick<QueueSpec, "headers" | "secretHeaders"> | undefined;
  for (const setting of SETTINGS) {
    const settingValue = settingNode(setting.key);
    nodes.set(setting.key, settingValue);
    const problems = problemsSoFar();
    values[setting.field] =
      settingValue === undefined ? setting.default : setting.read(settingValue, sub(setting.key), context);
    if (problemsSoFar() === problems) valid.add(setting.key);
    if (setting.key === HEADERS_AFTER)
      headers = validateHeaders(get(queue, "headers"), sub("headers"), report, options);
  }
  const settings = values as Settings;
  // The rules between settings.
  if (valid.has("ordered") && settings.ordered && (settings.perKeyConcurrency ?? 1) !== 1) {
    report(
      nodes.get("per_key_concurrency"),
      sub("per_key_concurrency"),
      `${settings.perKeyConcurrency} with ordered: true; allowed: 1 or left out (an ordered key runs one job at a time)`,
    );
  }
  if (settings.holdKeyOnFailure && !settings.ordered) {
    report(
      nodes.get("hold_key_on_failure"),
      sub("hold_key_on_failure"),
      "needs ordered: true (it keeps an ordered key's order after a job fails for good)",
    );
  }
  if (
    valid.has("backoff.base") &&
    valid.has("backoff.max") &&
    settings.backoffMaxMs < settings.backoffBaseMs
  ) {
    report(
      nodes.get("backoff.max") ?? get(queue, "backoff"),
      sub("backoff.max"),
      `${formatDuration(settings.backoffMaxMs)} is shorter than backoff.base (${formatDuration(settings.backoffBaseMs)}); allowed: at least the base`,
    );
  }
  checkAlerts(queue, settings, nodes, valid);
  checkOnSuccess(queue, settings, nodes);
  return { settings, headers, nodes };
}

/** An on_success mapping names its queue; the original payload is neither fanned out nor read for a field. */
function checkOnSuccess(queue: QueueMap, settings: Settings, nodes: Map<string, Node | undefined>): void {
  const group = get(queue, "on_success");
  if (!isMap(group)) return;
  const field = `${queue.field}.on_success`;
  if (nodes.get("on_success.queue") === undefined)
    queue.report(
      group,
      `${field}.queue`,
      "is missing; allowed: the name of another queue, which each success enqueues a job into",
    );
  if (settings.onSuccessPayload !== "payload") return;
  for (const key of ["fan_out", "field"] as const) {
    if (nodes.get(`on_success.${key}`) !== undefined)
      queue.report(
        nodes.get(`on_success.${key}`),
        `${field}.${key}`,
        "needs payload: response or merged (it reads the JSON response, which payload: payload does not use)",
      );
  }
}

/** An alerts mapping needs its webhook and something to watch; its queue's name must be free and short enough. */
function checkAlerts(
  queue: QueueMap,
  settings: Settings,
  nodes: Map<string, Node | undefined>,
  valid: Set<string>,
): void {
  const alerts = get(queue, "alerts");
  if (!isMap(alerts)) return;
  const field = `${queue.field}.alerts`;
  const thresholds = ["failure_rate", "oldest_due", "dead_letters"];
  if (!nodes.get("alerts.webhook"))
    queue.report(alerts, field, 'needs "webhook": the URL alerts are POSTed to, e.g. "${SLACK_WEBHOOK_URL}"');
  else if (thresholds.every((k) => nodes.get(`alerts.${k}`) === undefined))
    queue.report(alerts, field, `needs at least one threshold: ${thresholds.join(", ")}`);
  const name = `${queue.name}${ALERT_QUEUE_SUFFIX}`;
  if (valid.has("alerts.webhook") && settings.alertWebhook && !NAME.test(name))
    queue.report(
      nodes.get("alerts.webhook"),
      `${field}.webhook`,
      `its alerts go through a queue named "${name}", longer than 63 characters; shorten the queue's name to at most ${63 - ALERT_QUEUE_SUFFIX.length} characters`,
    );
}
