import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { parse } from "yaml";
import { validateConfigText } from "../src/config/validate.ts";
import { projectRoot } from "../src/paths.ts";
import { tempDir } from "./support/temp-dir.ts";

/**
 * What a fork of the template gets: the root supaqueue.yml, and workflows that stay green until the secrets are
 * added. (The validators, action-validator and actionlint, run over every workflow in action-validators.test.ts.)
 */
const ROOT = projectRoot();
const tmp = tempDir("template");

interface Step {
  id?: string;
  name?: string;
  if?: string;
  uses?: string;
  run?: string;
  env?: Record<string, string>;
  with?: Record<string, string | boolean>;
}

function workflow(name: string): { on: Record<string, unknown>; jobs: Record<string, { steps: Step[] }> } {
  return parse(readFileSync(join(ROOT, ".github", "workflows", name), "utf8"));
}

describe("supaqueue.yml at the root", () => {
  const text = readFileSync(join(ROOT, "supaqueue.yml"), "utf8");

  test("is valid as shipped and declares no queue, so a fork's first deploy installs Supaqueue only", () => {
    const { config, problems } = validateConfigText(text, "supaqueue.yml", { env: {} });
    expect(problems).toEqual([]);
    expect(config.queues).toEqual([]);
  });

  test("its commented examples are valid once uncommented", () => {
    // Take away one level of "# " from the queue lines; comments inside the examples stay comments.
    const uncommented = text.replace(/^ {2}# ?/gm, "  ");
    const { config, problems } = validateConfigText(uncommented, "supaqueue.yml", {
      env: { EMAIL_API_KEY: "key-1", PARTNER_TOKEN: "token-2" },
    });
    expect(problems).toEqual([]);
    expect(config.queues.map((q) => [q.name, q.functionName ?? q.url, q.workers])).toEqual([
      ["send-email", "send-email", 5],
      ["partner-webhook", "https://partner.example.com/hooks/orders", 2],
      ["render-video", "https://render.example.com/jobs", 4],
    ]);
    expect(config.queues[2]).toMatchObject({
      callbackTimeoutMs: 7_200_000,
      onSuccessQueue: "partner-webhook",
    });
  });
});

describe("deploy.yml", () => {
  const steps = workflow("deploy.yml").jobs.deploy?.steps ?? [];
  const check = steps.find((s) => s.id === "secrets") as Step;

  /** Runs the secrets check step's script with bash, as the runner would, and returns its output and outputs. */
  function runCheck(env: Record<string, string>): { stdout: string; outputs: string } {
    const outputFile = join(tmp, `output-${Math.random().toString(36).slice(2)}`);
    writeFileSync(outputFile, "");
    const stdout = execFileSync("bash", ["--noprofile", "--norc", "-e", "-c", check.run as string], {
      env: {
        PATH: process.env.PATH,
        GITHUB_OUTPUT: outputFile,
        PROJECT_REF: "",
        ACCESS_TOKEN: "",
        DB_URL: "",
        ...env,
      },
      encoding: "utf8",
    });
    return { stdout, outputs: readFileSync(outputFile, "utf8") };
  }

  test("runs on pushes touching the queue file, sql/ or functions/, on pull requests, and by hand", () => {
    const on = workflow("deploy.yml").on as {
      push: { branches: string[]; paths: string[] };
      pull_request: { paths: string[] };
    };
    expect(on.push.branches).toEqual(["main"]);
    expect(on.push.paths).toEqual(expect.arrayContaining(["supaqueue.yml", "sql/**", "functions/**"]));
    expect(on.pull_request.paths).toEqual(on.push.paths);
    expect(Object.keys(on)).toContain("workflow_dispatch");
  });

  test("with no secrets (a fresh fork) it ends green with a notice naming each secret to add", () => {
    const { stdout, outputs } = runCheck({ EVENT: "push" });
    expect(stdout).toMatch(/^::notice title=Supaqueue was not deployed::/);
    for (const secret of ["SUPABASE_PROJECT_REF", "SUPABASE_DB_URL", "SUPABASE_ACCESS_TOKEN"])
      expect(stdout).toContain(secret);
    expect(outputs).toBe("ready=false\n");
    // Every later step depends on the check, so the job ends there, green.
    for (const step of steps.filter((s) => s !== check))
      expect(step.if).toContain("steps.secrets.outputs.ready == 'true'");
  });

  test("a pull request's dry run needs no access token; a deploy needs all three", () => {
    const pr = runCheck({
      EVENT: "pull_request",
      PROJECT_REF: "abcdefghijklmnopqrst",
      DB_URL: "postgres://x",
    });
    expect(pr).toEqual({ stdout: "", outputs: "ready=true\n" });
    const push = runCheck({ EVENT: "push", PROJECT_REF: "abcdefghijklmnopqrst", DB_URL: "postgres://x" });
    expect(push.stdout).toContain("SUPABASE_ACCESS_TOKEN");
    expect(push.stdout).not.toContain("SUPABASE_DB_URL");
    expect(push.outputs).toBe("ready=false\n");
    const all = runCheck({
      EVENT: "push",
      PROJECT_REF: "abcdefghijklmnopqrst",
      DB_URL: "postgres://x",
      ACCESS_TOKEN: "sbp_x",
    });
    expect(all.outputs).toBe("ready=true\n");
  });

  test("runs the action of this repository: a dry run on pull requests, a deploy otherwise", () => {
    const plan = steps.find((s) => s.with?.["dry-run"] === true);
    const deploy = steps.find((s) => s.uses === "./" && s !== plan);
    expect(plan).toMatchObject({ uses: "./" });
    expect(plan?.if).toContain("github.event_name == 'pull_request'");
    expect(plan?.with).not.toHaveProperty("access-token");
    expect(deploy?.if).toContain("github.event_name != 'pull_request'");
    const secret = (name: string) => `\${{ secrets.${name} }}`;
    expect(deploy?.with).toEqual({
      "project-ref": secret("SUPABASE_PROJECT_REF"),
      "access-token": secret("SUPABASE_ACCESS_TOKEN"),
      "db-url": secret("SUPABASE_DB_URL"),
      "supaqueue-secret": secret("SUPAQUEUE_SECRET"),
    });
  });
});

describe("release.yml", () => {
  const release = workflow("release.yml");
  const script = (release.jobs.release?.steps ?? []).map((s) => s.run ?? "").join("\n");

  test("releases vX.Y.Z tags and moves the major tag, as GitHub's own actions do", () => {
    expect(release.on).toMatchObject({ push: { tags: ["v[0-9]+.[0-9]+.[0-9]+"] } });
    expect(Object.keys(release.on)).toContain("workflow_dispatch");
    expect(script).toContain('gh release create "$VERSION"');
    expect(script).toContain('git tag -f "$MAJOR" "$VERSION^{commit}"');
    expect(script).toContain('git push -f origin "refs/tags/$MAJOR"');
  });

  test("the major tag is the version's first part", () => {
    const check = (release.jobs.release?.steps ?? []).find((s) => s.id === "version") as Step;
    const outputFile = join(tmp, "release-output");
    for (const [version, major] of [
      ["v1.2.3", "v1"],
      ["v12.0.10", "v12"],
    ]) {
      writeFileSync(outputFile, "");
      execFileSync("bash", ["--noprofile", "--norc", "-e", "-c", check.run as string], {
        env: { PATH: process.env.PATH, GITHUB_OUTPUT: outputFile, VERSION: version },
      });
      expect(readFileSync(outputFile, "utf8")).toBe(`major=${major}\n`);
    }
    expect(() =>
      execFileSync("bash", ["--noprofile", "--norc", "-e", "-c", check.run as string], {
        env: { PATH: process.env.PATH, GITHUB_OUTPUT: outputFile, VERSION: "v1.2" },
        stdio: "pipe",
      }),
    ).toThrow();
  });
});
