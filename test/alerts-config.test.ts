// biome-ignore-all lint/suspicious/noTemplateCurlyInString: supaqueue.yml writes ${VAR} literally.
import { describe, expect, test } from "vitest";
import { formatProblem } from "../src/config/types.ts";
import { validateConfigText } from "../src/config/validate.ts";
import type { ExistingQueue, InstalledState } from "../src/install/model.ts";
import { computePlan } from "../src/install/plan.ts";
import { planLines } from "../src/install/present.ts";
import { editorSchema } from "./support/config-schema.ts";
import { installedState } from "./support/installed-state.ts";

// supaqueue.yml's alerts: a queue's thresholds and the webhook its alerts are POSTed to, through a queue
// "<queue>-alerts" the installer manages like any queue of the file (the webhook's URL in Vault).

const env = { SLACK_WEBHOOK_URL: "https://hooks.slack.example/services/T0/B0/s3cr3t" };
const check = (text: string) => validateConfigText(text, "supaqueue.yml", { env });
const problems = (text: string) => check(text).problems.map(formatProblem);
const billing = (alerts: string, top = "") =>
  `${top}queues:\n  billing:\n    url: https://billing.example/hook\n    alerts: ${alerts}\n`;
const ALL = '{ webhook: "${SLACK_WEBHOOK_URL}", failure_rate: 50%, oldest_due: 10m, dead_letters: 10 }';

describe("alerts in supaqueue.yml", () => {
  test("the thresholds are read, and an alert queue goes before the queue it serves", () => {
    const { config, problems } = check(billing(ALL, "dashboard_url: https://ops.example/supaqueue/\n"));
    expect(problems).toEqual([]);
    const [alerts, queue] = config.queues;
    expect(queue).toMatchObject({
      name: "billing",
      alertFailureRate: 0.5,
      alertOldestDueMs: 600_000,
      alertDeadLetters: 10,
      alertLink: "https://ops.example/supaqueue/#/queue/billing",
    });
    expect(alerts).toMatchObject({
      name: "billing-alerts",
      url: "${SLACK_WEBHOOK_URL}",
      urlSecret: { value: env.SLACK_WEBHOOK_URL, variables: ["SLACK_WEBHOOK_URL"] },
      method: "POST",
      workers: 1,
      maxAttempts: 5,
      rateLimitPerSecond: 1,
      alertWebhook: null,
      alertLink: null,
    });
  });

  test("each wrong value is reported at its place with what is allowed", () => {
    expect(
      problems(billing('{ webhook: "${NOPE}", failure_rate: 0.5, oldest_due: 500ms, dead_letters: 0 }')),
    ).toEqual([
      "supaqueue.yml:4:24: queues.billing.alerts.webhook: ${NOPE} is not set (or empty); set NOPE in the environment (the action's env:, e.g. NOPE: ${{ secrets.NOPE }}, or your shell)",
      "supaqueue.yml:4:49: queues.billing.alerts.failure_rate: 0.5 is not allowed; allowed: a percentage of the jobs finished in the last 5 minutes that failed for good, more than 0% and at most 100%, e.g. 50%",
      "supaqueue.yml:4:66: queues.billing.alerts.oldest_due: 500ms is too short: alerts are checked every 5 seconds; allowed: from 1s to 576h (24 days)",
      "supaqueue.yml:4:87: queues.billing.alerts.dead_letters: 0 is not allowed; allowed: an integer from 1 to 10,000",
    ]);
  });

  test("a webhook and a threshold are needed; unknown keys, a non-mapping and a taken name are refused", () => {
    expect(problems(billing("{ failure_rate: 50% }"))).toEqual([
      'supaqueue.yml:4:13: queues.billing.alerts: needs "webhook": the URL alerts are POSTed to, e.g. "${SLACK_WEBHOOK_URL}"',
    ]);
    expect(problems(billing('{ webhook: "${SLACK_WEBHOOK_URL}" }'))).toEqual([
      "supaqueue.yml:4:13: queues.billing.alerts: needs at least one threshold: failure_rate, oldest_due, dead_letters",
    ]);
    expect(problems(billing('{ webhook: "${SLACK_WEBHOOK_URL}", rate: 5% }'))).toEqual([
      expect.stringMatching(
        /queues\.billing\.alerts\.rate: unknown key "rate"; allowed keys: webhook, failure_rate, oldest_due, dead_letters/,
      ),
      "supaqueue.yml:4:13: queues.billing.alerts: needs at least one threshold: failure_rate, oldest_due, dead_letters",
    ]);
    expect(problems(billing("yes"))).toEqual([
      'supaqueue.yml:4:13: queues.billing.alerts: must be a mapping with "webhook" and/or "failure_rate" and/or "oldest_due" and/or "dead_letters", e.g. "{ webhook: "${SLACK_WEBHOOK_URL}", failure_rate: 50%, oldest_due: 10m, dead_letters: 10 }"',
    ]);
    expect(problems(`${billing(ALL)}  billing-alerts:\n    url: https://elsewhere.example\n`)).toEqual([
      'supaqueue.yml:2:3: queues.billing.alerts: its alerts go through a queue named "billing-alerts", which the file also defines; rename that queue',
    ]);
    expect(problems(billing(ALL, "dashboard_url: https://ops.example/?token=x\n"))).toEqual([
      expect.stringMatching(
        /^supaqueue\.yml:1:16: dashboard_url: invalid URL "https:\/\/ops\.example\/\?token=x"; allowed: /,
      ),
    ]);
  });
});

function installed(
  queues: Record<string, Partial<ExistingQueue>> = {},
  secrets: Record<string, string> = {},
): InstalledState {
  const billingDefaults = { url: "https://billing.example/hook", function_name: null };
  return installedState(
    Object.fromEntries(Object.entries(queues).map(([name, q]) => [name, { ...billingDefaults, ...q }])),
    secrets,
  );
}
const migrations = [{ version: 1, name: "0001_supaqueue", sql: "", checksum: "c1" }];
const plan = (text: string, state: InstalledState, vars: Record<string, string> = env) =>
  planLines(computePlan(validateConfigText(text, "supaqueue.yml", { env: vars }).config, state, migrations));

describe("the plan says what alerts change", () => {
  const file = billing('{ webhook: "${SLACK_WEBHOOK_URL}", failure_rate: 50% }');
  const watching: Record<string, Partial<ExistingQueue>> = {
    billing: { alert_queue: "billing-alerts", alert_failure_rate: 0.5 },
    "billing-alerts": {
      url: "${SLACK_WEBHOOK_URL}",
      url_secret: "supaqueue:url:billing-alerts",
      max_attempts: 5,
      timeout_ms: 10_000,
      backoff_base_ms: 5_000,
      backoff_max_ms: 60_000,
      rate_limit_per_second: 1,
      honor_retry_after: "queue",
    },
  };

  test("adding alerts creates the alert queue and its webhook in Vault, and sets the queue's thresholds", () => {
    expect(plan(file, installed({ billing: {} }))).toEqual([
      "create queue billing-alerts (POST ${SLACK_WEBHOOK_URL}, 1 worker)",
      "change queue billing: alerts: none → billing-alerts; alerts.failure_rate: none → 50%",
      "create Vault secret supaqueue:url:billing-alerts (url of queue billing-alerts)",
    ]);
  });

  test("an unchanged file changes nothing; a new webhook updates its secret; a dashboard_url adds the link", () => {
    const state = installed(watching, { "supaqueue:url:billing-alerts": env.SLACK_WEBHOOK_URL });
    expect(plan(file, state)).toEqual(["queues: no changes (2 queues up to date)"]);
    expect(
      plan(file, state, { SLACK_WEBHOOK_URL: "https://hooks.slack.example/services/T0/B0/new" }),
    ).toEqual([
      "change queue billing-alerts: url: secret value changed",
      "update Vault secret supaqueue:url:billing-alerts (url of queue billing-alerts)",
      "1 other queue up to date",
    ]);
    expect(plan(`dashboard_url: https://ops.example\n${file}`, state)).toEqual([
      "change queue billing: alerts link: none → https://ops.example/#/queue/billing",
      "1 other queue up to date",
    ]);
  });

  test("taking alerts out removes the alert queue and deletes its webhook from Vault", () => {
    const state = installed(watching, { "supaqueue:url:billing-alerts": env.SLACK_WEBHOOK_URL });
    expect(plan("queues:\n  billing:\n    url: https://billing.example/hook\n", state)).toEqual([
      "change queue billing: alerts: billing-alerts → none; alerts.failure_rate: 50% → none",
      "remove queue billing-alerts (not in the file, empty)",
      "delete Vault secret supaqueue:url:billing-alerts (url of queue billing-alerts)",
    ]);
  });
});

test("the JSON Schema for editors knows alerts and dashboard_url, with the same bounds", () => {
  const validate = editorSchema();
  const alerts = {
    webhook: "${SLACK_WEBHOOK_URL}",
    failure_rate: "50%",
    oldest_due: "10m",
    dead_letters: 10,
  };
  const file = (more: object, top: object = {}) => ({
    ...top,
    queues: { billing: { url: "https://billing.example", alerts: { ...alerts, ...more } } },
  });
  expect(validate(file({}, { dashboard_url: "https://ops.example/supaqueue" }))).toBe(true);
  expect(validate(file({ dead_letters: 10_001 }))).toBe(false);
  expect(validate(file({ rate: "5%" }))).toBe(false);
  expect(validate(file({}, { dashboard_url: "https://ops.example/?token=x" }))).toBe(false);
});
