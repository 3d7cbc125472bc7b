// biome-ignore-all lint/suspicious/noTemplateCurlyInString: supaqueue.yml writes ${VAR} literally.
import { describe, expect, test } from "vitest";
import { validateConfigText } from "../src/config/validate.ts";
import {
  type ExistingQueue,
  type ExistingSchedule,
  type InstalledState,
  planChangesQueues,
} from "../src/install/model.ts";
import { computePlan } from "../src/install/plan.ts";
import { failureMarkdown, planLines, summaryJson, summaryMarkdown } from "../src/install/present.ts";
import { projectArgs } from "../src/install/supabase-cli.ts";
import { installedState } from "./support/installed-state.ts";

const migrations = [{ version: 1, name: "0001_supaqueue", sql: "", checksum: "c1" }];

function file(text: string, env: Record<string, string> = {}) {
  const { config, problems } = validateConfigText(text, "supaqueue.yml", { env });
  expect(problems).toEqual([]);
  return config;
}

function installed(
  queues: Record<string, Partial<ExistingQueue>>,
  secrets: Record<string, string> = {},
  cron: { version?: string | null; schedules?: Partial<ExistingSchedule>[] } = {},
): InstalledState {
  return {
    ...installedState(queues, secrets),
    cronVersion: cron.version === undefined ? "1.6" : cron.version,
    schedules: new Map(
      (cron.schedules ?? []).map((s) => [
        s.name as string,
        {
          name: s.name as string,
          cron: "0 3 * * *",
          queue_name: "a",
          payload: {},
          managed_by: "supaqueue.yml",
          cron_job: true,
          ...s,
        },
      ]),
    ),
  };
}

describe("the plan", () => {
  test("a queue put back in the file after it was paused for removal is resumed", () => {
    const plan = computePlan(
      file("queues:\n  a:\n    function: f\n"),
      installed({ a: { paused: true } }),
      migrations,
    );
    expect(plan.queues).toEqual([
      expect.objectContaining({ name: "a", action: "update", changes: ["paused: true → false"] }),
    ]);
  });

  test("a header dropped from the file deletes its Vault secret; a queue left paused keeps its secrets", () => {
    const state = installed(
      {
        a: { secret_headers: { "X-Key": "supaqueue:header:a:x-key" } },
        gone: { secret_headers: { "X-Key": "supaqueue:header:gone:x-key" }, unfinished_jobs: 2 },
      },
      { "supaqueue:header:a:x-key": "v", "supaqueue:header:gone:x-key": "w" },
    );
    const plan = computePlan(file("queues:\n  a:\n    function: f\n"), state, migrations);
    expect(plan.queues[0]?.changes).toEqual(["header X-Key: secret removed"]);
    expect(plan.secrets).toEqual([
      { name: "supaqueue:header:a:x-key", queue: "a", header: "X-Key", action: "delete" },
    ]);
    expect(plan.removals).toEqual([{ name: "gone", unfinishedJobs: 2, action: "pause" }]);
  });

  test("an equal secret changes nothing; queues managed by something else are conflicts, never removed", () => {
    const state = installed(
      {
        a: { secret_headers: { "X-Key": "supaqueue:header:a:x-key" } },
        other: { managed_by: "terraform" },
        hand: { managed_by: null },
      },
      { "supaqueue:header:a:x-key": "same" },
    );
    const text = "queues:\n  a:\n    function: f\n    headers: {X-Key: '${K}'}\n  other:\n    function: f\n";
    const plan = computePlan(file(text, { K: "same" }), state, migrations);
    expect(plan.queues).toEqual([expect.objectContaining({ name: "a", action: "unchanged" })]);
    expect(plan.secrets).toEqual([]);
    expect(plan.removals).toEqual([]);
    expect(plan.conflicts).toEqual([
      expect.objectContaining({
        field: "queues.other",
        position: { file: "supaqueue.yml", line: 5, column: 3 },
      }),
    ]);
    expect(planChangesQueues(plan)).toBe(false);
  });

  test("on an empty project everything is to create, and the summary names no secret value", () => {
    const state: InstalledState = {
      schemaInstalled: false,
      appliedVersions: [],
      recordedMigrations: [],
      maxCallTimeoutMs: null,
      functionsUrl: null,
      queues: new Map(),
      secrets: new Map(),
      cronVersion: null,
      schedules: new Map(),
    };
    const plan = computePlan(
      file("queues:\n  a:\n    url: https://x.example\n    headers: {A: '${K}'}\n", { K: "s3cr3t" }),
      state,
      migrations,
    );
    expect(plan.pendingMigrations).toEqual(["0001_supaqueue"]);
    expect(planLines(plan)).toEqual([
      "migrations to apply: 0001_supaqueue",
      "create queue a (POST https://x.example, 1 worker)",
      "create Vault secret supaqueue:header:a:a (header A of queue a)",
    ]);
    const json = summaryJson({
      dryRun: true,
      schemaVersion: null,
      migrations: plan.pendingMigrations,
      functionsUrl: "https://r.supabase.co/functions/v1",
      functionUrl: "https://r.supabase.co/functions/v1/execute_current_job",
      plan,
      changed: true,
      functionsUrlChanged: true,
    });
    expect(JSON.stringify(json)).not.toContain("s3cr3t");
  });
});

describe("dead-letter queues", () => {
  const text = (dlq: string) =>
    `queues:\n  a:\n    function: f\n    dead_letter_queue: ${dlq}\n    rate_limit: 2.5/s\n  dead:\n    function: f\n`;

  test("a queue of the file, or a queue made by hand, can be a dead-letter queue", () => {
    const fresh = computePlan(file(text("dead")), installed({}), migrations);
    expect(fresh.conflicts).toEqual([]);
    expect(fresh.queues[0]?.row).toMatchObject({ dead_letter_queue: "dead", rate_limit_per_second: 2.5 });
    const hand = computePlan(
      file(text("by-hand")),
      installed({ "by-hand": { managed_by: null } }),
      migrations,
    );
    expect(hand.conflicts).toEqual([]);
  });

  test("an unknown queue, or a managed queue taken out of the file, is a problem at the key's place", () => {
    const unknown = computePlan(file(text("nowhere")), installed({}), migrations);
    expect(unknown.conflicts).toEqual([
      expect.objectContaining({
        field: "queues.a.dead_letter_queue",
        position: { file: "supaqueue.yml", line: 4, column: 24 },
        message: expect.stringMatching(/there is no queue "nowhere"/),
      }),
    ]);
    const leaving = computePlan(file(text("old")), installed({ old: {} }), migrations);
    expect(leaving.conflicts[0]?.message).toMatch(/"old" is taken out of the file by this change/);
  });

  test("on_success.queue follows the same rule, caught by the plan before any change", () => {
    const chain = (next: string) => `queues:\n  a:\n    function: f\n    on_success: { queue: ${next} }\n`;
    expect(
      computePlan(file(`${chain("b")}  b:\n    function: g\n`), installed({}), migrations).conflicts,
    ).toEqual([]);
    expect(
      computePlan(file(chain("by-hand")), installed({ "by-hand": { managed_by: null } }), migrations)
        .conflicts,
    ).toEqual([]);
    expect(computePlan(file(chain("nowhere")), installed({}), migrations).conflicts).toEqual([
      expect.objectContaining({
        field: "queues.a.on_success.queue",
        position: { file: "supaqueue.yml", line: 4, column: 26 },
        message: expect.stringMatching(/there is no queue "nowhere" in the file or the database/),
      }),
    ]);
    const leaving = computePlan(file(chain("old")), installed({ old: {} }), migrations);
    expect(leaving.conflicts[0]?.message).toMatch(
      /"old" is taken out of the file by this change, but this queue still sends the next step of its successful jobs there/,
    );
  });
});

describe("rate limits and signing", () => {
  test("a changed rate limit reads in the file's units; signed: true makes the first key, once", () => {
    const plan = computePlan(
      file("queues:\n  a:\n    function: f\n    rate_limit: 600/m\n    signed: true\n"),
      installed({ a: { rate_limit_per_second: 2 } }),
      migrations,
    );
    expect(plan.queues[0]?.changes).toEqual(["signing key created", "rate_limit: 2/s → 10/s"]);
    expect(plan.signing).toEqual([{ queue: "a", action: "create", vaultSecret: "supaqueue:signing:a" }]);
    expect(planLines(plan)).toContain(
      "queue a: signing key to create: read it with select decrypted_secret from vault.decrypted_secrets where name = 'supaqueue:signing:a'",
    );
    // Once the queue has a key, the same file changes nothing.
    const again = computePlan(
      file("queues:\n  a:\n    function: f\n    rate_limit: 600/m\n    signed: true\n"),
      installed({ a: { rate_limit_per_second: 10, signing_key_secret: "supaqueue:signing:a" } }),
      migrations,
    );
    expect(again.signing).toEqual([]);
    expect(planChangesQueues(again)).toBe(false);
  });

  test("a queue no longer signed has its key deleted; a removed empty queue takes its key along", () => {
    const plan = computePlan(
      file("queues:\n  a:\n    function: f\n"),
      installed({
        a: { signing_key_secret: "supaqueue:signing:a" },
        gone: { signing_key_secret: "supaqueue:signing:gone" },
      }),
      migrations,
    );
    expect(plan.queues[0]?.changes).toEqual(["signed: true → false (key deleted)"]);
    expect(plan.signing).toEqual([
      { queue: "a", action: "clear", vaultSecret: "supaqueue:signing:a" },
      { queue: "gone", action: "clear", vaultSecret: "supaqueue:signing:gone" },
    ]);
  });
});

describe("schedules", () => {
  const text = (schedules: string, queues = "  a:\n    function: f\n") =>
    `queues:\n${queues}schedules:\n${schedules}`;

  test("created, changed, kept and removed; schedules made by hand are never touched", () => {
    const state = installed(
      { a: {}, "by-hand": { managed_by: null } },
      {},
      {
        schedules: [
          { name: "same", cron: "0 3 * * *", queue_name: "a", payload: { k: 1 } },
          { name: "edited", cron: "0 3 * * *", queue_name: "a" },
          { name: "dropped" },
          { name: "manual", managed_by: null },
        ],
      },
    );
    const plan = computePlan(
      file(
        text(
          "  same: {cron: '0 3 * * *', queue: a, payload: {k: 1}}\n" +
            "  edited: {cron: '30 seconds', queue: by-hand, payload: [1]}\n" +
            "  new: {cron: '*/5 * * * *', queue: a}\n",
        ),
      ),
      state,
      migrations,
    );
    expect(plan.conflicts).toEqual([]);
    expect(plan.schedules.map((s) => [s.name, s.action, s.changes])).toEqual([
      ["same", "unchanged", []],
      ["edited", "update", ["cron: 0 3 * * * → 30 seconds", "queue: a → by-hand", "payload changed"]],
      ["new", "create", []],
      ["dropped", "remove", []],
    ]);
    expect(planLines(plan)).toEqual([
      "change schedule edited: cron: 0 3 * * * → 30 seconds; queue: a → by-hand; payload changed",
      "create schedule new (*/5 * * * * → a)",
      "remove schedule dropped (not in the file)",
      "1 other queue up to date",
      "1 other schedule up to date",
    ]);
    const md = summaryMarkdown({
      dryRun: true,
      schemaVersion: 1,
      migrations: [],
      functionsUrl: "https://r.supabase.co/functions/v1",
      functionUrl: "https://r.supabase.co/functions/v1/execute_current_job",
      plan,
      changed: true,
      functionsUrlChanged: false,
    });
    expect(md).toContain("| `new` | would be created | `*/5 * * * *` | `a` |  |");
    expect(md).toContain("| `dropped` | would be removed | `0 3 * * *` | `a` | not in the file |");
  });

  test("an unchanged file with schedules plans no change and says so; a lost pg_cron job is restored", () => {
    const yml = text("  same: {cron: '0 3 * * *', queue: a}\n");
    const plan = computePlan(
      file(yml),
      installed({ a: {} }, {}, { schedules: [{ name: "same" }] }),
      migrations,
    );
    expect(planChangesQueues(plan)).toBe(false);
    expect(planLines(plan)).toEqual([
      "queues: no changes (1 queue up to date); schedules: no changes (1 schedule up to date)",
    ]);
    const lost = computePlan(
      file(yml),
      installed({ a: {} }, {}, { schedules: [{ name: "same", cron_job: false }] }),
      migrations,
    );
    expect(lost.schedules[0]).toMatchObject({ action: "update", changes: ["pg_cron job restored"] });
  });

  test("without pg_cron, an unknown queue, a name taken by hand, or seconds on pg_cron 1.4: problems at their place", () => {
    const noCron = computePlan(
      file(text("  nightly: {cron: '0 3 * * *', queue: a}\n")),
      installed({}, {}, { version: null }),
      migrations,
    );
    expect(noCron.conflicts).toEqual([
      {
        position: { file: "supaqueue.yml", line: 5, column: 3 },
        field: "schedules.nightly",
        message: expect.stringMatching(/^recurring calls need the pg_cron extension, which is not installed/),
      },
    ]);
    const others = computePlan(
      file(
        text(
          "  lost: {cron: '0 3 * * *', queue: nowhere}\n" +
            "  manual: {cron: '0 3 * * *', queue: a}\n" +
            "  fast: {cron: '10 seconds', queue: a}\n" +
            "  leaving: {cron: '0 3 * * *', queue: old}\n",
        ),
      ),
      installed({ old: {} }, {}, { version: "1.4-1", schedules: [{ name: "manual", managed_by: null }] }),
      migrations,
    );
    expect(others.conflicts.map((c) => [c.field, c.position.line, c.position.column, c.message])).toEqual([
      [
        "schedules.lost.queue",
        5,
        36,
        expect.stringMatching(/there is no queue "nowhere" in the file or the database/),
      ],
      [
        "schedules.manual",
        6,
        3,
        expect.stringMatching(/already exists and was not created from supaqueue\.yml/),
      ],
      [
        "schedules.fast.cron",
        7,
        16,
        expect.stringMatching(/needs pg_cron 1\.5 or later, and this database has 1\.4-1/),
      ],
      [
        "schedules.leaving.queue",
        8,
        39,
        expect.stringMatching(/"old" is taken out of the file by this change/),
      ],
    ]);
  });
});

describe("the Supabase CLI's flags", () => {
  test("2.x names the project with --project-ref, 3.x with --remote=; both get --yes", () => {
    expect(projectArgs({ major: 2 }, "ref")).toEqual(["--project-ref", "ref", "--yes"]);
    expect(projectArgs({ major: 3 }, "ref")).toEqual(["--remote=ref", "--yes"]);
  });
});

test("a failed run's summary lists each problem with its place", () => {
  const md = failureMarkdown("supaqueue: 1 problem(s)", [
    {
      position: { file: "supaqueue.yml", line: 4, column: 13 },
      field: "queues.a.method",
      message: "allowed values: GET | POST",
    },
  ]);
  expect(md).toContain("| supaqueue.yml:4:13 | `queues.a.method` | allowed values: GET \\| POST |");
});
