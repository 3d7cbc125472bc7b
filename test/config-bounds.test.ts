import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { LIMITS } from "../src/config/limits.ts";
import { formatProblem } from "../src/config/types.ts";
import { validateConfigText } from "../src/config/validate.ts";
import { projectRoot } from "../src/paths.ts";
import { editorSchema } from "./support/config-schema.ts";

// Every number of supaqueue.yml has an upper bound, and the message says why: `workers: 1e9` was accepted once and
// the deploy wrote about 3 GB of worker rows.

const check = (text: string) => validateConfigText(text, "supaqueue.yml", { env: {} });
const problems = (text: string) => check(text).problems.map(formatProblem);
const queue = (settings: string) => `queues:\n  a:\n    function: f\n${settings}`;

describe("upper bounds, each with its reason", () => {
  test("workers: at most 1,000", () => {
    expect(check(queue("    workers: 1000\n")).config.queues[0]?.workers).toBe(1000);
    expect(problems(queue("    workers: 1001\n"))).toEqual([
      `supaqueue.yml:4:14: queues.a.workers: 1001 is too many; at most 1,000: ${LIMITS.workers.why}`,
    ]);
  });

  test("max_attempts: at most 1,000", () => {
    expect(problems(queue("    max_attempts: 5000\n"))).toEqual([
      `supaqueue.yml:4:19: queues.a.max_attempts: 5000 is too many; at most 1,000: ${LIMITS.maxAttempts.why}`,
    ]);
  });

  test("backoff: at most 576h (24 days) for base and max", () => {
    expect(check(queue("    backoff: { base: 1h, max: 576h }\n")).problems).toEqual([]);
    expect(problems(queue("    backoff: { base: 1h, max: 720h }\n"))).toEqual([
      `supaqueue.yml:4:31: queues.a.backoff.max: 720h is too long; at most 576h (24 days): ${LIMITS.backoffMs.why}`,
    ]);
    expect(problems(queue("    backoff: { base: 3000000 }\n"))).toEqual([
      expect.stringMatching(
        /^supaqueue\.yml:4:22: queues\.a\.backoff\.base: 50000m is too long; at most 576h/,
      ),
    ]);
  });

  test("rate_limit: at most 10,000/s, however it is written", () => {
    expect(check(queue("    rate_limit: 600000/m\n")).config.queues[0]?.rateLimitPerSecond).toBe(10_000);
    expect(problems(queue("    rate_limit: 20000/s\n"))).toEqual([
      `supaqueue.yml:4:17: queues.a.rate_limit: "20000/s" is too fast; at most 10,000/s: ${LIMITS.ratePerSecond.why}`,
    ]);
    expect(problems(queue("    rate_limit: 3600001/m\n"))).toEqual([
      expect.stringMatching(/queues\.a\.rate_limit: "3600001\/m" is too fast; at most 10,000\/s/),
    ]);
  });

  test("success_codes and retry_codes: at most 100 statuses", () => {
    const codes = Array.from({ length: 101 }, (_, i) => 200 + i).join(", ");
    expect(problems(queue(`    success_codes: [${codes}]\n    retry_codes: [500, 503]\n`))).toEqual([
      `supaqueue.yml:4:20: queues.a.success_codes: has 101 statuses; at most 100: ${LIMITS.statusCodes.why}`,
    ]);
  });

  test("at most 10,000 queues and 1,000 schedules in a file", () => {
    const queues = Array.from({ length: 10_001 }, (_, i) => `  q${i}: {function: f}\n`).join("");
    expect(problems(`queues:\n${queues}`)).toEqual([
      `supaqueue.yml:1:1: queues: the file has 10,001 queues; at most 10,000: ${LIMITS.queues.why}`,
    ]);
    const schedules = Array.from({ length: 1001 }, (_, i) => `  s${i}: {cron: '* * * * *', queue: q}\n`);
    expect(problems(`queues: {}\nschedules:\n${schedules.join("")}`)).toEqual([
      `supaqueue.yml:2:1: schedules: the file has 1,001 schedules; at most 1,000: ${LIMITS.schedules.why}`,
    ]);
  });

  test("a schedule's payload: at most 1 MiB as the database counts it (its jsonb text)", () => {
    // {"data": "xx...x"} is 12 bytes around the string, so this payload is exactly 1,048,576 bytes.
    const schedule = (length: number) =>
      `queues: {}\nschedules:\n  big:\n    cron: '0 3 * * *'\n    queue: q\n    payload: {data: ${"x".repeat(length)}}\n`;
    expect(check(schedule(1_048_576 - 12)).problems).toEqual([]);
    expect(problems(schedule(1_048_576 - 11))).toEqual([
      `supaqueue.yml:6:14: schedules.big.payload: is 1,048,577 bytes as JSON; at most 1,048,576 (1 MiB): ${LIMITS.payloadBytes.why}`,
    ]);
    expect(
      validateConfigText(schedule(2_000_000), "f.yml", { env: {}, maxPayloadBytes: 4_000_000 }).problems,
    ).toEqual([]);
  });
});

describe("integers are written as integers", () => {
  test.each([
    ["workers", "1e9", "4:14"],
    ["workers", "2.0", "4:14"],
    ["max_attempts", "3.5", "4:19"],
  ])("%s: %s is refused as a float", (key, value, at) => {
    expect(problems(queue(`    ${key}: ${value}\n`))).toEqual([
      expect.stringMatching(
        new RegExp(
          `^supaqueue\\.yml:${at}: queues\\.a\\.${key}: ${value.replace(".", "\\.")} is a float in YAML \\(written with (an exponent|a decimal point)\\); allowed: an integer from \\d+ to 1,000, written with digits only`,
        ),
      ),
    ]);
  });

  test("a status written as a float is refused too; hex integers are integers", () => {
    expect(problems(queue("    success_codes: [200.0]\n"))).toEqual([
      expect.stringMatching(
        /queues\.a\.success_codes: 200\.0 is a float in YAML .*allowed: integers from 100 to 599/,
      ),
    ]);
    expect(check(queue("    workers: 0x10\n")).config.queues[0]?.workers).toBe(16);
  });
});

describe("the low end says what is wrong", () => {
  test("timeout: 0 must be at least 1ms, not 'beyond what an edge function can wait'", () => {
    expect(problems(queue("    timeout: 0ms\n"))).toEqual([
      "supaqueue.yml:4:14: queues.a.timeout: 0s is too short: a call needs at least 1ms; allowed: from 1ms to 140s (supaqueue.config.max_call_timeout_ms, below the edge wall clock)",
    ]);
  });

  test("rate_limit: 0/s is named as zero, with the way to stop calls", () => {
    expect(problems(queue("    rate_limit: 0/s\n"))).toEqual([
      expect.stringMatching(
        /^supaqueue\.yml:4:17: queues\.a\.rate_limit: "0\/s" would never call \(to stop calls, set paused: true or workers: 0\); allowed: a number of calls per second, minute or hour, more than 0/,
      ),
    ]);
  });

  test("a duration finer than a millisecond says so", () => {
    expect(problems(queue("    backoff: { base: 0.5ms }\n"))).toEqual([
      expect.stringMatching(
        /queues\.a\.backoff\.base: "0\.5ms" is not a whole number of milliseconds; allowed: 250ms, 30s/,
      ),
    ]);
  });

  test("workers below 0 and max_attempts below 1 give the range", () => {
    expect(problems(queue("    workers: -1\n    max_attempts: 0\n"))).toEqual([
      "supaqueue.yml:4:14: queues.a.workers: -1 is not allowed; allowed: an integer from 0 to 1,000",
      "supaqueue.yml:5:19: queues.a.max_attempts: 0 is not allowed; allowed: an integer from 1 to 1,000",
    ]);
  });
});

describe("the JSON Schema has the same bounds and gives the same reasons", () => {
  const validate = editorSchema();
  const schema = JSON.parse(readFileSync(join(projectRoot(), "schema", "supaqueue.schema.json"), "utf8"));
  const props = schema.definitions.queue.properties;

  test("maxima", () => {
    const q = (settings: object) => validate({ queues: { a: { function: "f", ...settings } } });
    expect(q({ workers: 1000, max_attempts: 1000 })).toBe(true);
    expect(q({ workers: 1001 })).toBe(false);
    expect(q({ max_attempts: 1001 })).toBe(false);
    expect(q({ backoff: { base: 2_073_600 } })).toBe(true);
    expect(q({ backoff: { max: 2_073_601 } })).toBe(false);
    expect(q({ success_codes: Array.from({ length: 101 }, () => 200) })).toBe(false);
    const many = (n: number) =>
      Object.fromEntries(Array.from({ length: n }, (_, i) => [`q${i}`, { function: "f" }]));
    expect(validate({ queues: many(10_000) })).toBe(true);
    expect(validate({ queues: many(10_001) })).toBe(false);
    const schedules = Object.fromEntries(
      Array.from({ length: 1001 }, (_, i) => [`s${i}`, { cron: "* * * * *", queue: "q" }]),
    );
    expect(validate({ queues: {}, schedules })).toBe(false);
  });

  test("each bound's description states it with the message's reason", () => {
    const described: [string, string][] = [
      [props.workers.description, `at most 1,000: ${LIMITS.workers.why}`],
      [props.max_attempts.description, `at most 1,000: ${LIMITS.maxAttempts.why}`],
      [props.backoff.description, `at most 576h (24 days): ${LIMITS.backoffMs.why}`],
      [props.rate_limit.description, `at most 10,000/s: ${LIMITS.ratePerSecond.why}`],
      [schema.definitions.statusCodes.description, `at most 100: ${LIMITS.statusCodes.why}`],
      [schema.properties.queues.description, `at most 10,000: ${LIMITS.queues.why}`],
      [schema.properties.schedules.description, `at most 1,000: ${LIMITS.schedules.why}`],
      [
        schema.definitions.schedule.properties.payload.description,
        `at most 1,048,576 (1 MiB): ${LIMITS.payloadBytes.why}`,
      ],
    ];
    for (const [description, bound] of described) expect(description).toContain(bound);
  });
});

describe("a large file is checked in linear time", () => {
  // yaml's uniqueKeys option compared each key with every earlier one of its mapping. Measured on a 2-core machine
  // shared with other jobs: 40,000 queues took 24 to 48 s on that version and 2.3 to 4.7 s on this one. 10 s is
  // generous for the linear check and below the quadratic one even on a fast idle machine (where a 100,000-queue
  // file took 94 s, so 40,000 about 15 s).
  test("40,000 queues: the cap and a fault in the last queue are found in well under 10 s", () => {
    const n = 40_000;
    const parts = ["queues:\n"];
    for (let i = 0; i < n; i++) parts.push(`  q${i}: {function: f, workers: 2}\n`);
    parts.push("  last: {function: f, method: FETCH}\n");
    const started = performance.now();
    const found = problems(parts.join(""));
    const elapsed = performance.now() - started;
    expect(found).toEqual([
      expect.stringMatching(/^supaqueue\.yml:1:1: queues: the file has 40,001 queues; at most 10,000/),
      expect.stringMatching(
        new RegExp(`^supaqueue\\.yml:${n + 2}:31: queues\\.last\\.method: invalid method`),
      ),
    ]);
    expect(elapsed).toBeLessThan(10_000);
  });
});
