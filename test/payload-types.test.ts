// biome-ignore-all lint/suspicious/noTemplateCurlyInString: supaqueue.yml writes ${VAR} literally.
import { execFile } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, test } from "vitest";
import { validateConfigText } from "../src/config/validate.ts";
import { reconcileQueues } from "../src/install/apply.ts";
import { planLines } from "../src/install/present.ts";
import { cli, ROOT } from "./support/cli.ts";
import { installedDatabase, type TestDatabase } from "./support/db.ts";
import { tempDir } from "./support/temp-dir.ts";

// A queue's `payload:` JSON Schema in supaqueue.yml: checked when the file is read, stored by the deploy in
// supaqueue.queue.payload_schema, turned into TypeScript by `supaqueue gen types`, and checked by `supaqueue enqueue`
// (the client's checks are in client.test.ts).

const FILE = `queues:
  send-email:
    url: https://api.example.com/send
    payload:
      type: object
      required: [to, template]
      additionalProperties: false
      properties:
        to: { type: string, pattern: "@", description: The recipient. }
        template: { enum: [welcome, digest] }
        vars: { type: object }
        cc: { type: array, items: { type: string } }
        priority: { anyOf: [{ type: integer, minimum: 0 }, { type: "null" }] }
  anything:
    url: https://api.example.com/any
`;

function file(text: string) {
  return validateConfigText(text, "supaqueue.yml", { env: {} });
}

describe("payload: in supaqueue.yml", () => {
  test("a schema using what the checker does not support is refused at its line", () => {
    const { problems } = file(`queues:
  q:
    url: https://x.example/
    payload:
      type: string
      properties:
        to: { type: text, format2: email }
`);
    expect(problems.map((p) => `${p.position.line}: ${p.field}: ${p.message}`)).toEqual([
      "7: queues.q.payload.properties.to.type: must be one of object, array, string, number, integer, boolean, null, or a list of them",
      expect.stringMatching(
        /^7: queues\.q\.payload\.properties\.to\.format2: is not supported; payload schemas may use type, enum/,
      ),
      "5: queues.q.payload.type: must be object or array: a payload is a JSON object or array",
    ]);
  });

  describe("deployed", () => {
    let db: TestDatabase;
    beforeAll(async () => {
      db = await installedDatabase();
    });

    test("the deploy stores the schema, plans a change of it, and leaves it alone when unchanged", async () => {
      const client = await db.pool.connect();
      try {
        const plan = await reconcileQueues(client, file(FILE).config);
        expect(plan.queues.map((q) => q.action)).toEqual(["create", "create"]);
        const { rows } = await db.pool.query(
          "select name, payload_schema from supaqueue.queue order by name",
        );
        expect(rows[0]).toEqual({ name: "anything", payload_schema: null });
        expect(rows[1].payload_schema.required).toEqual(["to", "template"]);
        const again = await reconcileQueues(client, file(FILE).config);
        expect(again.queues.map((q) => q.action)).toEqual(["unchanged", "unchanged"]);
        const changed = await reconcileQueues(
          client,
          file(FILE.replace("required: [to, template]", "required: [to]")).config,
        );
        expect(planLines(changed).join("\n")).toMatch(
          /payload: \{"type":"object","required":\["to","template"\].*→/,
        );
        // Back as the file says, for the tests below.
        await reconcileQueues(client, file(FILE).config);
      } finally {
        client.release();
      }
    });

    test("supaqueue enqueue checks the payload against the schema and names the field", async () => {
      const bad = await cli([
        "enqueue",
        "send-email",
        '{"to":"ada@example.com","template":"goodbye"}',
        "--db-url",
        db.url,
      ]);
      expect(bad.code).toBe(1);
      expect(bad.stderr.trim()).toBe(
        'supaqueue: the payload for queue "send-email" is invalid at /template: must be one of "welcome", "digest", not "goodbye"',
      );
      const good = await cli([
        "enqueue",
        "send-email",
        '{"to":"ada@example.com","template":"welcome"}',
        "--db-url",
        db.url,
      ]);
      expect(good.stderr).toBe("");
      expect(good.stdout).toMatch(/^[0-9a-f-]{36}\n$/);
      const free = await cli(["enqueue", "anything", '[1, "two"]', "--db-url", db.url]);
      expect(free.code).toBe(0);
    });
  });

  test("supaqueue gen types writes the payload types, which the compiler holds enqueue to", async () => {
    const dir = tempDir("gen");
    writeFileSync(join(dir, "supaqueue.yml"), FILE.replace("https://api.example.com/any", "${HOOK_URL}"));
    const printed = await cli(["gen", "types", "--config", join(dir, "supaqueue.yml")]);
    expect(printed.stderr).toBe("");
    expect(printed.code).toBe(0);
    expect(printed.stdout).toContain(`export type SupaqueuePayloads = {
  "send-email": {
    /** The recipient. */
    to: string;
    template: "welcome" | "digest";
    vars?: {
      [key: string]: unknown;
    };
    cc?: string[];
    priority?: number | null;
  };
  "anything": { [key: string]: unknown } | unknown[];
};`);
    // A program of the user's, compiled against the generated file and the client (in the repository, so that
    // supabase-js resolves).
    const work = join(ROOT, ".tmp", `gen-types-${process.pid}`);
    mkdirSync(work, { recursive: true });
    const out = await cli([
      "gen",
      "types",
      "--config",
      join(dir, "supaqueue.yml"),
      "--out",
      join(work, "payloads.ts"),
    ]);
    expect(out.stderr).toContain("Wrote the payload types of 2 queue(s)");
    expect(readFileSync(join(work, "payloads.ts"), "utf8")).toBe(printed.stdout);
    writeFileSync(
      join(work, "app.ts"),
      `import { createClient } from "@supabase/supabase-js";
import { createSupaqueue } from "../../src/client/index.ts";
import type { SupaqueuePayloads } from "./payloads.ts";
const queue = createSupaqueue<SupaqueuePayloads>(createClient("http://x", "k"));
export const ok = [
  queue.enqueue("send-email", { to: "ada@example.com", template: "welcome", cc: ["b@example.com"] }),
  queue.enqueue("anything", [1, 2]),
];
// @ts-expect-error: not a queue of the file
queue.enqueue("send-emails", { to: "a", template: "welcome" });
// @ts-expect-error: template is not one of the enum's values
queue.enqueue("send-email", { to: "a", template: "goodbye" });
// @ts-expect-error: template is required
queue.enqueue("send-email", { to: "a" });
// @ts-expect-error: no field outside the schema's properties (additionalProperties: false)
queue.enqueue("send-email", { to: "a", template: "digest", bcc: "x" });
`,
    );
    const tsc = await new Promise<string>((resolve) =>
      execFile(
        process.execPath,
        [
          join(ROOT, "node_modules", "typescript", "bin", "tsc"),
          "--noEmit",
          "--strict",
          "--skipLibCheck",
          "--allowImportingTsExtensions",
          "--module",
          "NodeNext",
          "--moduleResolution",
          "NodeNext",
          "--target",
          "ES2022",
          "--types",
          "node",
          join(work, "app.ts"),
        ],
        { cwd: ROOT },
        (error, stdout, stderr) => resolve(error ? `${stdout}${stderr}` || String(error) : ""),
      ),
    );
    expect(tsc).toBe("");
  }, 60_000);
});
