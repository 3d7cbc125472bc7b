// biome-ignore-all lint/suspicious/noTemplateCurlyInString: supaqueue.yml writes ${VAR} literally.
import { afterAll, beforeAll, expect, test } from "vitest";
import { validateConfigText } from "../src/config/validate.ts";
import { reconcileQueues } from "../src/install/apply.ts";
import { type EdgeStack, startEdgeStack } from "./support/edge-stack.ts";

/**
 * An alert really POSTed: the deploy makes the alert queue from supaqueue.yml (the webhook's URL in Vault), tick()
 * finds the watched queue's oldest due job too old and enqueues the alert, and the alert travels like any call
 * (pg_net stand-in → execute_current_job in real Deno, which reads the URL from Vault when it claims the call) to
 * a local target playing Slack.
 */
let stack: EdgeStack;
beforeAll(async () => {
  stack = await startEdgeStack();
});
afterAll(() => stack?.stop());

test("a queue's backlog ages past oldest_due: the webhook receives one Slack message with a link", async () => {
  const { db, targets } = stack;
  const text = `dashboard_url: https://ops.example/supaqueue
queues:
  reports:
    url: ${targets.url}/ok
    workers: 0
    alerts: { webhook: "\${SLACK_WEBHOOK_URL}", oldest_due: 30s }
`;
  const env = { SLACK_WEBHOOK_URL: `${targets.url}/ok?hook=slack` };
  const { config, problems } = validateConfigText(text, "supaqueue.yml", { env });
  expect(problems).toEqual([]);
  const client = await db.pool.connect();
  try {
    const plan = await reconcileQueues(client, config);
    expect(plan.queues.map((q) => `${q.action} ${q.name}`)).toEqual([
      "create reports-alerts",
      "create reports",
    ]);
    expect(plan.secrets.map((s) => `${s.action} ${s.name}`)).toEqual(["create supaqueue:url:reports-alerts"]);
  } finally {
    client.release();
  }
  const { rows } = await db.pool.query(
    "select url, url_secret from supaqueue.queue where name = 'reports-alerts'",
  );
  expect(rows[0]).toEqual({ url: "${SLACK_WEBHOOK_URL}", url_secret: "supaqueue:url:reports-alerts" });

  await db.pool.query("select supaqueue.enqueue('reports', '{}', now() - interval '1 minute')");
  await db.pool.query("select supaqueue.tick()");
  const [alert] = await targets.waitFor("/ok", 1, 30_000);
  expect(alert).toMatchObject({ method: "POST", query: { hook: "slack" } });
  expect(JSON.parse(alert?.body ?? "")).toEqual({
    text: expect.stringMatching(
      /^Alert: Supaqueue queue "reports": oldest due job's age reached 60s \(threshold 30s\) <https:\/\/ops\.example\/supaqueue\/#\/queue\/reports\|Open the queue>$/,
    ),
  });
  const { rows: jobs } = await db.pool.query(
    "select j.id from supaqueue.job j join supaqueue.queue q on q.id = j.queue_id where q.name = 'reports-alerts'",
  );
  expect(jobs).toHaveLength(1);
  expect(await stack.finished(jobs[0].id)).toMatchObject({ status: "successful", attempts: 1 });
});
