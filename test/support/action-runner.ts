import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { projectRoot } from "../../src/paths.ts";
import type { FakeManagementApi } from "./management-api.ts";

interface Annotation {
  level: string;
  file?: string;
  line?: number;
  col?: number;
  message: string;
}

export interface ActionRun {
  exitCode: number | null;
  stdout: string;
  stderr: string;
  /** The step's outputs, read from the GITHUB_OUTPUT file. */
  outputs: Record<string, string>;
  /** The job summary, read from the GITHUB_STEP_SUMMARY file. */
  summary: string;
  /** ::error / ::warning workflow commands found on stdout. */
  annotations: Annotation[];
}

export interface RunOptions {
  /** Inputs by their action.yml name; action.yml's defaults fill the rest, as the runner does. */
  inputs: Record<string, string>;
  /** Files of the workspace (the user's repository), e.g. { "supaqueue.yml": "queues: ..." }. */
  files?: Record<string, string>;
  /** The step's env: (e.g. EMAIL_API_KEY). */
  env?: Record<string, string>;
  api?: FakeManagementApi;
}

const ROOT = projectRoot();

/**
 * Runs `node dist/index.js` the way a GitHub runner does: inputs as INPUT_<NAME> variables (upper case, hyphens
 * kept) with action.yml's defaults, GITHUB_OUTPUT and GITHUB_STEP_SUMMARY files, a workspace folder, and the real
 * Supabase CLI on PATH, pointed at the fake Management API through SUPABASE_PROFILE.
 */
export async function runAction(options: RunOptions): Promise<ActionRun> {
  const dir = mkdtempSync(join(tmpdir(), "supaqueue-action-"));
  const workspace = join(dir, "workspace");
  const home = join(dir, "home");
  mkdirSync(workspace);
  mkdirSync(home);
  for (const [name, content] of Object.entries(options.files ?? {})) {
    mkdirSync(join(workspace, name, ".."), { recursive: true });
    writeFileSync(join(workspace, name), content);
  }
  const outputFile = join(dir, "output.txt");
  const summaryFile = join(dir, "summary.md");
  writeFileSync(outputFile, "");
  writeFileSync(summaryFile, "");

  const env: Record<string, string> = {
    PATH: `${join(ROOT, "node_modules", ".bin")}:${process.env.PATH ?? ""}`,
    HOME: home,
    GITHUB_ACTIONS: "true",
    CI: "true",
    GITHUB_WORKSPACE: workspace,
    GITHUB_OUTPUT: outputFile,
    GITHUB_STEP_SUMMARY: summaryFile,
    RUNNER_TEMP: dir,
    SUPABASE_NO_KEYRING: "true",
    SUPABASE_TELEMETRY_DISABLED: "1",
    ...passThrough(["NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "SSL_CERT_DIR", "TMPDIR", "LANG"]),
    ...options.env,
  };
  if (options.api) {
    const profile = join(dir, "profile.yaml");
    writeFileSync(profile, options.api.profileYaml());
    env.SUPABASE_PROFILE = profile;
  }
  const inputs = { ...actionDefaults(), ...options.inputs };
  for (const [name, value] of Object.entries(inputs))
    env[`INPUT_${name.replace(/ /g, "_").toUpperCase()}`] = value;

  const child = spawn(process.execPath, [join(ROOT, "dist", "index.js")], { cwd: workspace, env });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk) => {
    stdout += chunk;
  });
  child.stderr.on("data", (chunk) => {
    stderr += chunk;
  });
  const exitCode = await new Promise<number | null>((resolve) => child.on("close", resolve));
  try {
    return {
      exitCode,
      stdout,
      stderr,
      outputs: parseOutputs(readFileSync(outputFile, "utf8")),
      summary: readFileSync(summaryFile, "utf8"),
      annotations: parseAnnotations(stdout),
    };
  } finally {
    // The runner's temp folder (workspace, HOME, output files) goes with the run, as on a GitHub runner.
    rmSync(dir, { recursive: true, force: true });
  }
}

function actionDefaults(): Record<string, string> {
  const action = parse(readFileSync(join(ROOT, "action.yml"), "utf8")) as {
    inputs: Record<string, { default?: string }>;
  };
  return Object.fromEntries(
    Object.entries(action.inputs)
      .filter(([, input]) => input.default !== undefined)
      .map(([name, input]) => [name, String(input.default)]),
  );
}

function passThrough(names: string[]): Record<string, string> {
  return Object.fromEntries(names.flatMap((n) => (process.env[n] ? [[n, process.env[n] as string]] : [])));
}

/** Reads `name<<DELIMITER\nvalue\nDELIMITER` blocks, the format @actions/core writes to GITHUB_OUTPUT. */
function parseOutputs(text: string): Record<string, string> {
  const outputs: Record<string, string> = {};
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const heredoc = /^([^=<]+)<<(.+)$/.exec(lines[i] as string);
    if (heredoc) {
      const end = lines.indexOf(heredoc[2] as string, i + 1);
      outputs[heredoc[1] as string] = lines.slice(i + 1, end).join("\n");
      i = end;
    } else if ((lines[i] as string).includes("=")) {
      const [name, ...value] = (lines[i] as string).split("=");
      outputs[name as string] = value.join("=");
    }
  }
  return outputs;
}

const unescapeData = (s: string) => s.replace(/%0D/g, "\r").replace(/%0A/g, "\n").replace(/%25/g, "%");
const unescapeProperty = (s: string) => unescapeData(s).replace(/%3A/g, ":").replace(/%2C/g, ",");

/** `::error file=f,line=3,col=5::message` workflow commands, decoded. */
function parseAnnotations(stdout: string): Annotation[] {
  const annotations: Annotation[] = [];
  for (const line of stdout.split("\n")) {
    const match = /^::(error|warning|notice)(?: ([^:]*))?::(.*)$/.exec(line);
    if (!match) continue;
    const annotation: Annotation = { level: match[1] as string, message: unescapeData(match[3] as string) };
    for (const property of (match[2] ?? "").split(",").filter(Boolean)) {
      const [key, value = ""] = property.split("=");
      if (key === "file") annotation.file = unescapeProperty(value);
      if (key === "line") annotation.line = Number(value);
      if (key === "col") annotation.col = Number(value);
    }
    annotations.push(annotation);
  }
  return annotations;
}
