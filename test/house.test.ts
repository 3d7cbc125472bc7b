import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { FUNCTION_NAME } from "../src/install/stage.ts";
import { projectRoot } from "../src/paths.ts";

/**
 * The house rules of `npm run lint` that shape the code (the formatter aside), run with the tests so CI holds them:
 * no import circle and no import that runs back up a floor (.dependency-cruiser.cjs), no unused file, dependency or
 * export (knip.jsonc), no repeated block (.jscpd.json).
 */
describe("the house", () => {
  const run = (bin: string, args: string[]) =>
    execFileSync(process.execPath, [bin, ...args], { cwd: projectRoot(), encoding: "utf8", stdio: "pipe" });

  test("no import circle, and no import that runs back up a floor", () => {
    const out = run("node_modules/dependency-cruiser/bin/dependency-cruise.mjs", [
      "src",
      "functions",
      "--config",
      ".dependency-cruiser.cjs",
    ]);
    expect(out).toContain("no dependency violations found");
  }, 60_000);

  test("no unused file, dependency or export", () => {
    expect(run("node_modules/knip/bin/knip.js", ["--no-progress"]).trim()).toBe("");
  }, 120_000);

  test("no repeated block in src/ and functions/", () => {
    expect(run("node_modules/jscpd/bin/jscpd", ["--silent"])).not.toMatch(/Clone found/);
  }, 60_000);

  test("the schema wakes the function the installer deploys (its one name in SQL)", () => {
    const sql = readFileSync(join(projectRoot(), "sql", "0001_supaqueue.sql"), "utf8");
    const wakeups = [...sql.matchAll(/functions_url \|\| '\/([A-Za-z0-9_-]+)'/g)].map((m) => m[1]);
    expect(wakeups).toEqual([FUNCTION_NAME]);
  });
});
