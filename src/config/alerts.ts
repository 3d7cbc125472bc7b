import type { Node } from "yaml";
import { type Report, scalar, show } from "./fields.ts";
import { SETTINGS } from "./settings.ts";
import type { ConfigProblem, QueueSpec } from "./types.ts";

// A queue's alerts travel through a Supaqueue queue of their own, "<queue>-alerts", which the installer manages like
// any queue of the file: it POSTs each alert (Slack's {"text": ...}) to the webhook, so alerts get retries, the
// webhook's URL stays in Vault (it is a secret: whoever holds a Slack webhook URL may post to the channel), and the
// plan names the queue and its secret like any other. The database (supaqueue._check_alerts) enqueues the alerts.

/** The queue that carries a queue's alerts to its webhook. */
export const ALERT_QUEUE_SUFFIX = "-alerts";

/**
 * The alert queue's settings. Slack takes about one message a second per webhook and answers 429 with a
 * Retry-After beyond that, so the queue calls it one at a time, at most once a second, and honours Retry-After for
 * the whole queue; five attempts over about a minute and a half ride out a short outage without sending an alert
 * about an episode long over.
 */
const ALERT_QUEUE_SETTINGS: Partial<QueueSpec> = {
  workers: 1,
  maxAttempts: 5,
  timeoutMs: 10_000,
  backoffBaseMs: 5_000,
  backoffMaxMs: 60_000,
  rateLimitPerSecond: 1,
  honorRetryAfter: "queue",
};

// http(s), a host, no user name or password, no query or fragment (the link adds its own #/queue/<name>), and
// nothing Slack's <url|text> link syntax would cut at.
const DASHBOARD_URL = /^https?:\/\/[^/?#\s@|<>]+[^\s?#|<>]*$/;

/** The top-level dashboard_url: where alerts link to the queue's page; null when absent or wrong (reported). */
export function readDashboardUrl(node: Node | undefined, report: Report): string | null {
  if (node === undefined) return null;
  const value = scalar(node);
  if (typeof value === "string" && DASHBOARD_URL.test(value)) return value.replace(/\/+$/, "");
  report(
    node,
    "dashboard_url",
    `invalid URL ${show(value)}; allowed: the address your team opens the dashboard at (supaqueue dashboard), an absolute http(s) URL without a query, a fragment or a user name, e.g. https://ops.example.com/supaqueue; alerts link to its page of the queue`,
  );
  return null;
}

/**
 * The file's queues with an alert queue before each queue that has alerts (so it exists when that queue names it),
 * and each such queue's link to its dashboard page. A queue of the file with an alert queue's name is a problem.
 */
export function withAlertQueues(
  queues: QueueSpec[],
  dashboardUrl: string | null,
  problems: ConfigProblem[],
): QueueSpec[] {
  const names = new Set(queues.map((q) => q.name));
  const defaults = Object.fromEntries(SETTINGS.map((s) => [s.field, s.default]));
  return queues.flatMap((queue): QueueSpec[] => {
    if (!queue.alertWebhook) return [queue];
    const name = `${queue.name}${ALERT_QUEUE_SUFFIX}`;
    if (names.has(name)) {
      problems.push({
        position: queue.position,
        field: `queues.${queue.name}.alerts`,
        message: `its alerts go through a queue named "${name}", which the file also defines; rename that queue`,
      });
      return [queue];
    }
    const alertQueue: QueueSpec = {
      ...(defaults as unknown as Pick<QueueSpec, (typeof SETTINGS)[number]["field"]>),
      ...ALERT_QUEUE_SETTINGS,
      name,
      url: queue.alertWebhook.url,
      urlSecret: queue.alertWebhook.urlSecret,
      functionName: null,
      headers: {},
      secretHeaders: [],
      alertLink: null,
      position: queue.position,
      deadLetterPosition: queue.position,
      onSuccessPosition: queue.position,
      timeoutPosition: queue.position,
    };
    const alertLink = dashboardUrl ? `${dashboardUrl}/#/queue/${queue.name}` : null;
    return [alertQueue, { ...queue, alertLink }];
  });
}
