import { execFileSync } from "node:child_process";
import { describe, expect, test } from "vitest";
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
});
