// biome-ignore-all lint/suspicious/noTemplateCurlyInString: supaqueue.yml writes ${VAR} literally.
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import type { QueueFile } from "../src/config/types.ts";
import { validateConfigText } from "../src/config/validate.ts";
import { type Dashboard, startDashboard } from "../src/dashboard/server.ts";
import { demoConfig, enqueueDemoJobs } from "../src/local/demo.ts";
import { demoTarget } from "../src/local/demo-target.ts";
import { type LocalStack, startLocalStack } from "../src/local/stack.ts";
import { ROOT } from "./support/cli.ts";

/**
 * The dashboard in a real headless Chromium (Debian's `chromium`, driven by playwright-core), over the demo's local
 * stack: what a user sees and what their clicks do to the database. SUPAQUEUE_SCREENSHOTS=1 writes the three pages'
 * screenshots into docs/ (the README shows them); otherwise they go to a temporary folder.
 */

const CHROMIUM = "/usr/bin/chromium";
const SECRET = "sk_live_dashboard_never_shows_this_9f3a";
const PLAIN = "plain-header-value-7c1e";

/** The demo's queues, and one whose Authorization header is a secret (kept in Vault) and X-Plain a plain one. */
function config(origin: string): QueueFile {
  const demo = demoConfig(origin);
  const extra = validateConfigText(
    `queues:\n  webhooks:\n    url: ${origin}/demo/fast\n    workers: 1\n    headers:\n      Authorization: "Bearer \${DASH_SECRET}"\n      X-Plain: ${PLAIN}\n`,
    "webhooks.yml",
    { env: { DASH_SECRET: SECRET } },
  );
  expect(extra.problems).toEqual([]);
  return { ...demo, queues: [...demo.queues, ...extra.config.queues] };
}

describe.skipIf(!existsSync(CHROMIUM))(
  "the dashboard in Chromium (skipped without /usr/bin/chromium)",
  () => {
    let stack: LocalStack;
    let dashboard: Dashboard;
    let browser: Browser;
    let page: Page;
    /** Every body the page received, to look for the secret in. */
    const received: string[] = [];
    const shots = process.env.SUPAQUEUE_SCREENSHOTS
      ? join(ROOT, "docs")
      : mkdtempSync(join(tmpdir(), "dash-"));

    beforeAll(async () => {
      stack = await startLocalStack({
        dbUrl: inject("adminUrl"),
        config,
        fallback: demoTarget(),
        requireOwnDatabase: true,
      });
      dashboard = await startDashboard({ dbUrl: stack.dbUrl });
      browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
      page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
      page.on("response", async (response) => {
        received.push(await response.text().catch(() => ""));
      });
    }, 120_000);

    afterAll(async () => {
      await browser?.close();
      await dashboard?.stop();
      await stack?.stop();
    });

    const row = (queue: string) => page.locator(`tr[data-queue="${queue}"]`);

    test("the demo's queues appear, and their counts change as the jobs finish", async () => {
      await page.goto(dashboard.url);
      // The token went into a cookie: the address no longer shows it.
      expect(page.url()).toBe(`${dashboard.origin}/`);
      for (const queue of ["fast", "slow", "flaky", "rate-limited", "webhooks"]) {
        await expect.poll(() => row(queue).count()).toBe(1);
      }
      expect(await row("fast").locator('[data-field="finished"]').textContent()).toBe("0");
      expect(await row("fast").locator('[data-field="workers"]').textContent()).toBe("0/5");

      await enqueueDemoJobs(stack.pool);
      await stack.pool.query("select supaqueue.enqueue('webhooks', '{\"order\": 1}')");
      // Polled every 2 s: the finished count climbs to every fast job, and the slow queue's backlog drains.
      const finished = () => row("fast").locator('[data-field="finished"]').textContent();
      await expect.poll(finished, { timeout: 60_000 }).toBe("200");
      await expect
        .poll(() => row("rate-limited").locator('[data-field="finished"]').textContent(), {
          timeout: 60_000,
        })
        .toBe("60");
      expect(await row("flaky").locator('[data-field="failure-rate"]').textContent()).toMatch(/^\d+\.\d%$/);
      await page.screenshot({ path: join(shots, "dashboard-queues.png"), fullPage: true });
    }, 120_000);

    test("pausing a queue from the page pauses it in the database, and says a deploy follows supaqueue.yml", async () => {
      await page.goto(`${dashboard.origin}/#/`);
      await row("slow").locator('button[data-action="pause"]').click();
      await expect
        .poll(() => page.locator("#confirm-note").textContent())
        .toContain("next deploy follows the file");
      // Cancel first: nothing changes.
      await page.locator('#confirm button[value="cancel"]').click();
      const paused = async () =>
        (await stack.pool.query("select paused from supaqueue.queue where name = 'slow'")).rows[0].paused;
      expect(await paused()).toBe(false);
      await row("slow").locator('button[data-action="pause"]').click();
      await page.locator("#confirm-ok").click();
      await expect.poll(paused).toBe(true);
      await expect
        .poll(() => row("slow").locator('[data-field="state"] .badge').textContent())
        .toBe("paused");
      await expect.poll(() => page.locator("#notice").textContent()).toContain("Paused slow");

      await row("slow").locator('button[data-action="resume"]').click();
      await page.locator("#confirm-ok").click();
      await expect.poll(paused).toBe(false);
    }, 60_000);

    test("a failed job's page shows every attempt with its error and stored response body", async () => {
      await page.goto(`${dashboard.origin}/#/queue/flaky?status=failed`);
      const failed = page.locator("tr[data-job]").first();
      await failed.waitFor({ timeout: 30_000 });
      await expect.poll(() => page.locator("h2", { hasText: "Recent errors" }).count()).toBe(1);
      await expect.poll(() => page.locator("td", { hasText: "HTTP 422" }).count()).toBeGreaterThan(0);
      await page.screenshot({ path: join(shots, "dashboard-queue.png"), fullPage: true });

      // A job that failed with 422 (its payload says invalid): the attempt's error and the target's answer.
      const { rows } = await stack.pool.query(
        "select j.id from supaqueue.job j join supaqueue.queue q on q.id = j.queue_id where q.name = 'flaky' and j.status = 'failed' and j.last_status_code = 422 limit 1",
      );
      await page.goto(`${dashboard.origin}/#/job/${rows[0].id}`);
      await expect.poll(() => page.locator('[data-field="status"] .badge').textContent()).toBe("failed");
      const attempt = page.locator("tr[data-attempt]").last();
      expect(await attempt.locator('[data-field="error"]').textContent()).toBe("HTTP 422");
      expect(await attempt.textContent()).toContain("invalid order: no items");
      expect(await page.locator('[data-field="payload"]').textContent()).toContain('"invalid": true');

      // Retry, confirmed: the job goes round again (and fails again: its payload is still invalid).
      await page.locator('button[data-action="retry"]').click();
      await page.locator("#confirm-ok").click();
      await expect
        .poll(
          async () =>
            (
              await stack.pool.query("select count(*)::int as n from supaqueue.attempt where job_id = $1", [
                rows[0].id,
              ])
            ).rows[0].n,
          { timeout: 30_000 },
        )
        .toBe(2);
    }, 60_000);

    test("a job's page links its chain: the job it came from, the jobs it started, and fan-in both ways", async () => {
      const one = async (sql: string, params: unknown[] = []) =>
        (await stack.pool.query(sql, params)).rows[0].id;
      const parent = await one("select supaqueue.enqueue('fast', '{}') as id");
      const child = await one(
        "insert into supaqueue.job (queue_id, payload, parent_id) select id, '{}', $1 from supaqueue.queue where name = 'fast' returning id",
        [parent],
      );
      const waiter = await one("select supaqueue.enqueue('fast', '{}', after => array[$1]::uuid[]) as id", [
        parent,
      ]);
      await page.goto(`${dashboard.origin}/#/job/${child}`);
      await expect.poll(() => page.locator('[data-field="parent"]').textContent()).toBe(parent.slice(0, 13));
      await page.locator('[data-field="parent"] a').click();
      await expect.poll(() => page.locator('[data-field="children"]').textContent()).toBe(child.slice(0, 13));
      expect(await page.locator('[data-field="waited-on-by"]').textContent()).toBe(waiter.slice(0, 13));
    });

    test("a job whose target took its call on (202) says so, and until when its callback may come", async () => {
      const { rows } = await stack.pool.query("select supaqueue.enqueue('render', '{\"seconds\": 9}') as id");
      const id = rows[0].id as string;
      // Held at its 202: its callback is made to miss (another token's hash), so the page has time to show it.
      await expect
        .poll(
          async () =>
            (
              await stack.pool.query(
                `update supaqueue.current_job set callback_hash = sha256('held by the test')
                 where job_id = $1 and accepted_at is not null returning id`,
                [id],
              )
            ).rowCount,
          { timeout: 30_000, interval: 20 },
        )
        .toBe(1);
      await page.goto(`${dashboard.origin}/#/job/${id}`);
      await expect
        .poll(() => page.locator('[data-field="status"]').textContent())
        .toMatch(/^in progress \(the target took the call on at .+; its callback is due by .+\)$/);
      await stack.pool.query("select supaqueue.cancel($1)", [id]);
    }, 60_000);

    test("a secret header's value is never in the page, nor in any answer; plain values only when asked", async () => {
      const { rows } = await stack.pool.query(
        "select j.id from supaqueue.job j join supaqueue.queue q on q.id = j.queue_id where q.name = 'webhooks' limit 1",
      );
      await page.goto(`${dashboard.origin}/#/job/${rows[0].id}`);
      await expect.poll(() => page.locator("td", { hasText: "Authorization" }).count()).toBe(1);
      expect(await page.content()).not.toContain(PLAIN);
      await page.locator('button[data-action="reveal"]').click();
      await expect.poll(() => page.content()).toContain(PLAIN);
      const html = await page.content();
      expect(html).toContain("secret, kept in Vault: never shown");
      expect(html).not.toContain(SECRET);
      expect(received.join("\n")).not.toContain(SECRET);
      await page.screenshot({ path: join(shots, "dashboard-job.png"), fullPage: true });
      for (const name of ["queues", "queue", "job"]) {
        expect(
          readFileSync(join(shots, `dashboard-${name}.png`))
            .subarray(1, 4)
            .toString(),
        ).toBe("PNG");
      }
    }, 60_000);

    test("on a phone-sized screen in dark mode the queues page still fits its table in a scrolling box", async () => {
      const phone = await browser.newPage({ viewport: { width: 390, height: 800 }, colorScheme: "dark" });
      try {
        await phone.goto(dashboard.url);
        await phone.locator('tr[data-queue="fast"]').waitFor();
        const width = await phone.evaluate(() => document.documentElement.scrollWidth);
        expect(width).toBeLessThanOrEqual(390);
        const background = await phone.evaluate(
          () => getComputedStyle(document.documentElement).backgroundColor,
        );
        expect(background).not.toBe("rgb(255, 255, 255)");
      } finally {
        await phone.close();
      }
    }, 60_000);
  },
);
