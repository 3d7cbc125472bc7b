import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, test } from "vitest";
import { ROOT, type Run, run } from "./support/cli.ts";
import { installedDatabase, type TestDatabase } from "./support/db.ts";
import { tempDir } from "./support/temp-dir.ts";

/**
 * The npm package as a user gets it: `npm pack`, then `npm i --omit=dev <tarball>` into an empty project (with
 * supabase-js, the client's peer), then the `supaqueue` command through npx and the client through `import`.
 * The tarball is packed with --ignore-scripts: lib/ is already built from today's src/ by the test setup, and a
 * second build would rewrite it under the other test files that run the CLI meanwhile.
 */
let app: string;
let db: TestDatabase;
const inApp = (command: string, args: string[], timeout = 120_000): Promise<Run> =>
  run(command, args, app, {}, timeout);

beforeAll(async () => {
  const packs = tempDir("pack");
  app = tempDir("app");
  db = await installedDatabase();
  const packed = await run(
    "npm",
    ["pack", "--ignore-scripts", "--pack-destination", packs],
    ROOT,
    {},
    120_000,
  );
  expect(packed.code, packed.stderr).toBe(0);
  const [tarball] = readdirSync(packs).filter((f) => f.endsWith(".tgz"));
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
  const installed = await inApp(
    "npm",
    [
      "i",
      "--omit=dev",
      "--no-audit",
      "--no-fund",
      join(packs, tarball ?? ""),
      "@supabase/supabase-js@2.109.0",
    ],
    240_000,
  );
  expect(installed.code, installed.stderr).toBe(0);
}, 300_000);

describe("the npm package", () => {
  test("ships the built CLI and client, the schema, the function, the dashboard's page and the pgTAP files, and none of our tests", () => {
    const pkg = join(app, "node_modules", "supaqueue");
    expect(readdirSync(pkg).sort()).toEqual(
      ["README.md", "bin", "functions", "lib", "package.json", "schema", "sql", "src", "supabase"].sort(),
    );
    // Of src/, only the dashboard's page (plain files the server reads, not compiled into lib/).
    expect(readdirSync(join(pkg, "src"))).toEqual(["dashboard"]);
    expect(readdirSync(join(pkg, "src", "dashboard"))).toEqual(["public"]);
    expect(readdirSync(join(pkg, "supabase", "tests"))).toHaveLength(3);
    expect(readdirSync(join(pkg, "lib", "src", "client"))).toEqual(
      expect.arrayContaining(["index.js", "index.d.ts"]),
    );
  });

  test("npx supaqueue --help runs the built CLI, without devDependencies", async () => {
    const help = await inApp("npx", ["supaqueue", "--help"]);
    expect(help.stderr).toBe("");
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("Usage: supaqueue <command>");
  });

  test("npx supaqueue plan reads a database and the project's supaqueue.yml", async () => {
    writeFileSync(join(app, "supaqueue.yml"), "queues:\n  emails:\n    url: https://api.example.com/send\n");
    const plan = await inApp("npx", [
      "supaqueue",
      "plan",
      "--project-ref",
      "abcdefghijklmnopqrst",
      "--db-url",
      db.url,
      "--tick",
      "external",
    ]);
    expect(plan.stderr).toBe("");
    expect(plan.code).toBe(0);
    expect(plan.stdout).toContain("create queue emails");
    expect(plan.stdout).toContain("Dry run: nothing was changed.");
  });

  test("import { createSupaqueue } from 'supaqueue' gives the client, typed", async () => {
    const script = `
      import { createClient } from "@supabase/supabase-js";
      import { createSupaqueue, SupaqueueError } from "supaqueue";
      const q = createSupaqueue(createClient("http://127.0.0.1:9", "key", { realtime: { transport: class {} } }));
      console.log(typeof q.enqueue, typeof q.enqueueMany, typeof q.wait, SupaqueueError.name);`;
    const imported = await inApp("node", ["--input-type=module", "-e", script]);
    expect(imported.stderr).toBe("");
    expect(imported.stdout.trim()).toBe("function function function SupaqueueError");
    writeFileSync(
      join(app, "check.ts"),
      `import { createClient } from "@supabase/supabase-js";
import { createSupaqueue, type Job } from "supaqueue";
const q = createSupaqueue<{ "send-email": { to: string } }>(createClient("http://x", "k"));
export const id: Promise<string> = q.enqueue("send-email", { to: "ada@example.com" });
export const job: Promise<Job | null> = q.get(await id);
// @ts-expect-error: no such queue
q.enqueue("nope", { to: "a" });
// @ts-expect-error: the payload's field has the wrong type
q.enqueue("send-email", { to: 1 });
// A client typed by \`supabase gen types\` is taken as it is.
type Database = { public: { Tables: {}; Views: {}; Functions: { hello: { Args: { name: string }; Returns: string } }; Enums: {}; CompositeTypes: {} } };
export const typed = createSupaqueue(createClient<Database>("http://x", "k")).enqueue("any", [1]);
`,
    );
    writeFileSync(
      join(app, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: { module: "NodeNext", moduleResolution: "NodeNext", target: "ES2022", strict: true },
        files: ["check.ts"],
      }),
    );
    // The project's own TypeScript, on the installed package's declarations (supabase-js's own need @types/node,
    // which this empty project lacks: skipLibCheck is what projects use).
    const tsc = await inApp("node", [
      join(ROOT, "node_modules", "typescript", "bin", "tsc"),
      "--noEmit",
      "--skipLibCheck",
    ]);
    expect(tsc.stdout + tsc.stderr).toBe("");
    expect(tsc.code).toBe(0);
  });
});
