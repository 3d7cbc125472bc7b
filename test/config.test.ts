// biome-ignore-all lint/suspicious/noTemplateCurlyInString: supaqueue.yml writes ${VAR} literally.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { parse } from "yaml";
import { formatDuration, parseDuration } from "../src/config/duration.ts";
import { formatProblem } from "../src/config/types.ts";
import { validateConfigText } from "../src/config/validate.ts";
import { projectRoot } from "../src/paths.ts";
import { editorSchema } from "./support/config-schema.ts";

const check = (text: string, env: Record<string, string> = {}) =>
  validateConfigText(text, "supaqueue.yml", { env });
const problems = (text: string, env: Record<string, string> = {}) =>
  check(text, env).problems.map(formatProblem);

describe("durations", () => {
  test.each([
    ["250ms", 250],
    ["30s", 30_000],
    ["5m", 300_000],
    ["1h", 3_600_000],
    [30, 30_000],
    [0.5, 500],
    ["1.5s", 1500],
  ])("%s is %d ms", (text, ms) => expect(parseDuration(text)).toBe(ms));

  test.each([["30 seconds"], ["-1s"], ["1d"], [true], ["0.0001s"]])("%s is refused", (text) =>
    expect(parseDuration(text)).toBeNull());

  test("formats the shortest way", () => {
    expect([250, 30_000, 300_000, 3_600_000, 1500].map(formatDuration)).toEqual([
      "250ms",
      "30s",
      "5m",
      "1h",
      "1500ms",
    ]);
  });
});

describe("supaqueue.yml", () => {
  test("the issue's example gives a queue with defaults filled in and the header in Vault", () => {
    const { config, problems: found } = check(
      `queues:
  send-email:
    function: send-email
    method: post
    headers:
      X-Api-Key: \${EMAIL_API_KEY}
      Content-Type: application/json
    workers: 5
    timeout: 30s
    backoff: { base: 10s, max: 1h }
  webhook:
    url: https://api.example.com/v1/hook
`,
      { EMAIL_API_KEY: "k-123" },
    );
    expect(found).toEqual([]);
    expect(config.queues).toMatchObject([
      {
        name: "send-email",
        functionName: "send-email",
        url: null,
        method: "POST",
        headers: { "Content-Type": "application/json" },
        secretHeaders: [{ header: "X-Api-Key", value: "k-123", variables: ["EMAIL_API_KEY"] }],
        workers: 5,
        maxAttempts: 3,
        timeoutMs: 30_000,
        backoffBaseMs: 10_000,
        backoffMaxMs: 3_600_000,
        paused: false,
        position: { file: "supaqueue.yml", line: 2, column: 3 },
      },
      {
        name: "webhook",
        url: "https://api.example.com/v1/hook",
        method: "POST",
        workers: 1,
        timeoutMs: 30_000,
      },
    ]);
  });

  test("every problem is reported with file:line:column, field and allowed values", () => {
    const found = problems(`queues:
  send-email:
    function: send-email
    method: FETCH
    headers:
      X-Api-Key: \${EMAIL_API_KEY}
    workers: -1
    max_attempts: 0
    timeout: 200s
    backoff: { base: 10s, max: 1s, jitter: 1 }
    bogus: 1
  Bad_Name:
    url: ftp://example.com
  both:
    url: https://example.com/x
    function: x
  neither: {}
  words:
    url: https://example.com
    timeout: soon
    success_codes: [200, 700]
    paused: maybe
`);
    expect(found).toEqual([
      expect.stringMatching(
        /^supaqueue\.yml:11:5: queues\.send-email\.bogus: unknown key "bogus"; allowed keys: function, url, method, headers, workers, max_attempts, timeout, callback_timeout, backoff, success_codes, retry_codes, rate_limit, slow_down, per_key_concurrency, ordered, hold_key_on_failure, key_field, honor_retry_after, dead_letter_queue, on_success, alerts, payload, signed, paused$/,
      ),
      expect.stringMatching(
        /^supaqueue\.yml:4:13: queues\.send-email\.method: invalid method "FETCH"; allowed values: GET, POST, PUT, PATCH, DELETE$/,
      ),
      expect.stringMatching(
        /^supaqueue\.yml:6:18: queues\.send-email\.headers\.X-Api-Key: \$\{EMAIL_API_KEY\} is not set/,
      ),
      expect.stringMatching(
        /^supaqueue\.yml:7:14: queues\.send-email\.workers: -1 is not allowed; allowed: an integer from 0 to 1,000$/,
      ),
      expect.stringMatching(
        /^supaqueue\.yml:8:19: queues\.send-email\.max_attempts: 0 is not allowed; allowed: an integer from 1 to 1,000$/,
      ),
      expect.stringMatching(
        /^supaqueue\.yml:9:14: queues\.send-email\.timeout: 200s is beyond .*allowed: from 1ms to 140s/,
      ),
      expect.stringMatching(
        /^supaqueue\.yml:10:36: queues\.send-email\.backoff\.jitter: unknown key "jitter"; allowed keys: base, max$/,
      ),
      expect.stringMatching(
        /^supaqueue\.yml:10:32: queues\.send-email\.backoff\.max: 1s is shorter than backoff\.base/,
      ),
      expect.stringMatching(
        /^supaqueue\.yml:12:3: queues\.Bad_Name: invalid queue name "Bad_Name"; allowed: 1 to 63 lowercase/,
      ),
      expect.stringMatching(
        /^supaqueue\.yml:13:10: queues\.Bad_Name\.url: invalid URL "ftp:\/\/example\.com"; allowed: an absolute http/,
      ),
      expect.stringMatching(
        /^supaqueue\.yml:16:15: queues\.both: has both "function" and "url"; set exactly one of them$/,
      ),
      expect.stringMatching(
        /^supaqueue\.yml:17:3: queues\.neither: needs exactly one of "function" .* and "url"/,
      ),
      expect.stringMatching(
        /^supaqueue\.yml:20:14: queues\.words\.timeout: invalid duration "soon"; allowed: 250ms, 30s, 5m, 1h, or a number of seconds$/,
      ),
      expect.stringMatching(
        /^supaqueue\.yml:21:26: queues\.words\.success_codes: 700 is not an HTTP status; allowed: integers from 100 to 599$/,
      ),
      expect.stringMatching(
        /^supaqueue\.yml:22:13: queues\.words\.paused: "maybe" is not allowed; allowed values: true, false$/,
      ),
    ]);
  });

  test("malformed YAML, duplicate names, a missing queues key and wrong types", () => {
    expect(problems("queues:\n  a: {url: https://x.example}\n  a: {url: https://y.example}\n")).toEqual([
      expect.stringMatching(/^supaqueue\.yml:3:3: queues: this name appears twice/),
    ]);
    expect(problems("queues: [\n")).toEqual([
      expect.stringMatching(/^supaqueue\.yml:\d+:\d+: \(yaml\): not valid YAML: /),
    ]);
    expect(problems("queue:\n  a: {}\n")).toEqual([
      expect.stringMatching(
        /^supaqueue\.yml:1:1: queue: unknown key "queue"; allowed keys: queues, schedules, dashboard_url$/,
      ),
      expect.stringMatching(/^supaqueue\.yml:1:1: queues: is required/),
    ]);
    expect(
      problems("queues:\n  a:\n    url: https://x.example\n    workers: '5'\n    headers: {X-N: 2}\n"),
    ).toEqual([
      expect.stringMatching(
        /^supaqueue\.yml:5:20: queues\.a\.headers\.X-N: must be a string, not 2; quote it/,
      ),
      expect.stringMatching(
        /^supaqueue\.yml:4:14: queues\.a\.workers: "5" is not allowed; allowed: an integer from 0 to 1,000$/,
      ),
    ]);
    expect(problems("queues:\n  a:\n    url: https://x.example/${HOST}\n")).toEqual([
      expect.stringMatching(/^supaqueue\.yml:3:10: queues\.a\.url: \$\{HOST\} is not set \(or empty\)/),
    ]);
    expect(problems("queues:\n  a:\n    function: f\n    headers: {x-a: '1', X-A: '2'}\n")).toEqual([
      expect.stringMatching(/^supaqueue\.yml:4:25: queues\.a\.headers\.X-A: this header appears twice/),
    ]);
    expect(check("queues:\n").config.queues).toEqual([]);
    expect(check("queues: {}\n").problems).toEqual([]);
  });

  test("an empty ${VAR} counts as unset; a set one is resolved inside a longer value", () => {
    expect(
      problems("queues:\n  a:\n    function: f\n    headers: {Authorization: 'Bearer ${TOKEN}'}\n", {
        TOKEN: "",
      }),
    ).toEqual([expect.stringMatching(/\$\{TOKEN\} is not set \(or empty\)/)]);
    const { config } = check(
      "queues:\n  a:\n    function: f\n    headers: {Authorization: 'Bearer ${TOKEN}'}\n",
      {
        TOKEN: "t0k",
      },
    );
    expect(config.queues[0]?.secretHeaders).toEqual([
      { header: "Authorization", value: "Bearer t0k", variables: ["TOKEN"] },
    ]);
  });

  test("rate limits are N/s, N/m or N/h above 0; a dead-letter queue is another queue's name", () => {
    const { config } = check(
      "queues:\n  a: {function: f, rate_limit: 10/s}\n  b: {function: f, rate_limit: 600/m}\n  c: {function: f, rate_limit: 1/h}\n  d: {function: f, rate_limit: 0.5/s}\n  e: {function: f}\n",
    );
    expect(config.queues.map((q) => q.rateLimitPerSecond)).toEqual([10, 10, 1 / 3600, 0.5, null]);
    expect(
      problems(
        "queues:\n  a:\n    function: f\n    rate_limit: 0/s\n    dead_letter_queue: a\n  b:\n    function: f\n    dead_letter_queue: Not A Queue\n    rate_limit: 10\n  c:\n    function: f\n    rate_limit: 5/d\n    rate_limit_per_second: 5\n",
      ),
    ).toEqual([
      expect.stringMatching(
        /^supaqueue\.yml:4:17: queues\.a\.rate_limit: "0\/s" would never call .*; allowed: a number of calls per second, minute or hour, more than 0: 10\/s, 600\/m, 1\/h/,
      ),
      expect.stringMatching(
        /^supaqueue\.yml:5:24: queues\.a\.dead_letter_queue: a queue cannot be its own dead-letter queue/,
      ),
      expect.stringMatching(
        /^supaqueue\.yml:9:17: queues\.b\.rate_limit: 10 is not a rate \(write "10\/s" for 10 a second\); allowed:/,
      ),
      expect.stringMatching(
        /^supaqueue\.yml:8:24: queues\.b\.dead_letter_queue: "Not A Queue" is not a queue name/,
      ),
      expect.stringMatching(/^supaqueue\.yml:13:5: queues\.c\.rate_limit_per_second: unknown key/),
      expect.stringMatching(/^supaqueue\.yml:12:17: queues\.c\.rate_limit: "5\/d" is not a rate/),
    ]);
  });

  test("a schedule name that appears twice is named as a schedule", () => {
    expect(
      problems(
        "queues: {}\nschedules:\n  a: {cron: '* * * * *', queue: q}\n  a: {cron: '* * * * *', queue: q}\n",
      ),
    ).toEqual([
      "supaqueue.yml:4:3: schedules: this name appears twice; each schedule name (and each key) may appear only once",
    ]);
  });

  test("signed is true or false (default false)", () => {
    const { config } = check("queues:\n  a: {function: f, signed: true}\n  b: {function: f}\n");
    expect(config.queues.map((q) => q.signed)).toEqual([true, false]);
    expect(problems("queues:\n  a:\n    function: f\n    signed: yes please\n")).toEqual([
      'supaqueue.yml:4:13: queues.a.signed: "yes please" is not allowed; allowed values: true, false',
    ]);
  });

  test("schedules: cron, queue and payload, each checked at its place", () => {
    const { config, problems: found } = check(`queues:
  reports: {function: report}
schedules:
  nightly-report:
    cron: "0 3 * * *"
    queue: reports
    payload: { kind: daily, days: [1, 2] }
  often:
    cron: 30 seconds
    queue: made-by-hand
  weekdays:
    cron: "*/15 9-17 * jan-jun mon-fri"
    queue: reports
`);
    expect(found).toEqual([]);
    expect(config.schedules).toEqual([
      {
        name: "nightly-report",
        cron: "0 3 * * *",
        queue: "reports",
        payload: { kind: "daily", days: [1, 2] },
        position: { file: "supaqueue.yml", line: 4, column: 3 },
        queuePosition: { file: "supaqueue.yml", line: 6, column: 12 },
        cronPosition: { file: "supaqueue.yml", line: 5, column: 11 },
      },
      expect.objectContaining({ name: "often", cron: "30 seconds", queue: "made-by-hand", payload: {} }),
      expect.objectContaining({ name: "weekdays", cron: "*/15 9-17 * jan-jun mon-fri" }),
    ]);

    expect(
      problems(`queues: {}
schedules:
  Bad Name: {cron: "* * * * *", queue: q}
  six-fields: {cron: "0 0 3 * * *", queue: q}
  minute-60: {cron: "60 * * * *", queue: q}
  seconds: {cron: "90 seconds", queue: q}
  no-queue: {cron: "* * * * *"}
  scalar-payload: {cron: "* * * * *", queue: q, payload: 42, when: now}
  empty:
`),
    ).toEqual([
      expect.stringMatching(/^supaqueue\.yml:3:3: schedules\.Bad Name: invalid schedule name "Bad Name"/),
      expect.stringMatching(
        /^supaqueue\.yml:4:22: schedules\.six-fields\.cron: "0 0 3 \* \* \*" has 6 field\(s\), not 5; allowed: five cron fields/,
      ),
      expect.stringMatching(
        /^supaqueue\.yml:5:21: schedules\.minute-60\.cron: "60 \* \* \* \*": minute "60" is not a valid minute \(\*, 0 to 59, ranges A-B, lists A,B, steps \/N\); allowed: five cron fields/,
      ),
      expect.stringMatching(
        /^supaqueue\.yml:6:19: schedules\.seconds\.cron: "90 seconds": seconds must be from 1 to 59/,
      ),
      expect.stringMatching(/^supaqueue\.yml:7:3: schedules\.no-queue\.queue: is required/),
      expect.stringMatching(
        /^supaqueue\.yml:8:62: schedules\.scalar-payload\.when: unknown key "when"; allowed keys: cron, queue, payload$/,
      ),
      expect.stringMatching(
        /^supaqueue\.yml:8:58: schedules\.scalar-payload\.payload: 42 is not allowed; allowed: a mapping or a list/,
      ),
      expect.stringMatching(
        /^supaqueue\.yml:9:3: schedules\.empty: must be a mapping with "cron" and "queue"/,
      ),
    ]);
  });

  test("the timeout limit follows the database's max_call_timeout_ms", () => {
    const text = "queues:\n  a:\n    function: f\n    timeout: 5m\n";
    expect(validateConfigText(text, "f.yml", { env: {}, maxCallTimeoutMs: 400_000 }).problems).toEqual([]);
    expect(validateConfigText(text, "f.yml", { env: {} }).problems.map(formatProblem)).toEqual([
      expect.stringMatching(/^f\.yml:4:14: queues\.a\.timeout: 5m is beyond/),
    ]);
  });
});

describe("the JSON Schema for editors", () => {
  const root = projectRoot();
  const validate = editorSchema();

  test("accepts the repository's own supaqueue.yml", () => {
    const text = readFileSync(join(root, "supaqueue.yml"), "utf8");
    expect(validate(parse(text)), JSON.stringify(validate.errors)).toBe(true);
    expect(check(text).problems).toEqual([]);
  });

  test("accepts the shipped example", () => {
    const example = parse(readFileSync(join(root, "schema", "supaqueue.example.yml"), "utf8"));
    expect(validate(example), JSON.stringify(validate.errors)).toBe(true);
    // And the action itself accepts it too (with the variables it names set).
    const text = readFileSync(join(root, "schema", "supaqueue.example.yml"), "utf8");
    expect(check(text, { EMAIL_API_KEY: "x", WEBHOOK_TOKEN: "y" }).problems).toEqual([]);
  });

  test("rejects what the action rejects: unknown keys, bad names, both function and url, bad methods", () => {
    expect(validate({ queues: { a: { url: "https://x.example", bogus: 1 } } })).toBe(false);
    expect(validate({ queues: { A: { url: "https://x.example" } } })).toBe(false);
    expect(validate({ queues: { a: { url: "https://x.example", function: "f" } } })).toBe(false);
    expect(validate({ queues: { a: { function: "f", method: "FETCH" } } })).toBe(false);
    expect(validate({ queues: { a: { function: "f", timeout: "soon" } } })).toBe(false);
    expect(validate({ queues: { a: { function: "f", rate_limit: "0/s" } } })).toBe(false);
    expect(validate({ queues: { a: { function: "f", rate_limit: 10 } } })).toBe(false);
    expect(validate({ queues: { a: { function: "f", signed: "yes" } } })).toBe(false);
    expect(validate({ queues: {}, schedules: { a: { cron: "0 3 * * *" } } })).toBe(false);
    expect(validate({ queues: {}, schedules: { a: { cron: "0 3 * *", queue: "q" } } })).toBe(false);
    expect(validate({ queues: {}, schedules: { a: { cron: "0 3 * * *", queue: "q", payload: 1 } } })).toBe(
      false,
    );
    expect(
      validate({
        queues: {},
        schedules: {
          a: { cron: "0 3 * * *", queue: "q", payload: { k: 1 } },
          b: { cron: "30 seconds", queue: "q" },
        },
      }),
    ).toBe(true);
    expect(
      validate({
        queues: {
          a: {
            function: "f",
            timeout: "250ms",
            workers: 0,
            rate_limit: "0.5/s",
            dead_letter_queue: "b",
            signed: true,
          },
        },
      }),
    ).toBe(true);
  });
});
