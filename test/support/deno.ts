import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { projectRoot } from "../../src/paths.ts";

/**
 * Serves an edge function of functions/ with the real `deno` binary (the npm package), as the Supabase edge runtime
 * would: `deno run --allow-net --allow-env` with `EdgeRuntime.waitUntil` preloaded, listening on a free port of
 * 127.0.0.1 (DENO_SERVE_ADDRESS). Its npm imports are cached in .tmp/deno (DENO_DIR), so only the first run
 * downloads them. The CA variables pass through: without them Deno's npm downloads fail with UnknownIssuer.
 */
export interface ServedFunction {
  /** The origin, e.g. http://127.0.0.1:PORT. Any path reaches the function. */
  origin: string;
  /** `origin/functions/v1`: what supaqueue.configure(functions_url => ...) takes. */
  functionsUrl: string;
  /** stdout and stderr so far (the function's logs). */
  output(): string;
  /** Sends the process a signal (the edge-runtime shim turns SIGUSR2 into `beforeunload`). */
  signal(name: NodeJS.Signals): void;
  stop(): Promise<void>;
}

export interface ServeOptions {
  /** The folder under functions/ (default execute_current_job). */
  name?: string;
  env: Record<string, string>;
  /** Preload the EdgeRuntime.waitUntil shim (default true). */
  edgeRuntime?: boolean;
  /** How long to wait for the first "Listening" line (first runs download npm packages). */
  startTimeoutMs?: number;
}

const root = projectRoot();
export const DENO_BIN = join(root, "node_modules", ".bin", "deno");
const DENO_DIR = join(root, ".tmp", "deno");

/** The environment Deno needs on these machines: where to cache, and the CA settings for npm downloads. */
export function denoEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "",
    HOME: process.env.HOME ?? "",
    DENO_DIR,
    NO_COLOR: "1",
  };
  for (const name of [
    "NODE_EXTRA_CA_CERTS",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
  ]) {
    const value = process.env[name];
    if (value) env[name] = value;
  }
  return { ...env, ...extra };
}

export async function serveFunction(options: ServeOptions): Promise<ServedFunction> {
  const dir = join(root, "functions", options.name ?? "execute_current_job");
  mkdirSync(DENO_DIR, { recursive: true });
  const args = ["run", "--allow-net", "--allow-env", "--no-prompt"];
  if (options.edgeRuntime ?? true)
    args.push("--preload", join(root, "test", "support", "edge-runtime-shim.ts"));
  args.push("index.ts");
  const child: ChildProcess = spawn(DENO_BIN, args, {
    cwd: dir,
    env: denoEnv({ DENO_SERVE_ADDRESS: "tcp:127.0.0.1:0", ...options.env }),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));

  const origin = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(
        new Error(`deno did not start listening within ${options.startTimeoutMs ?? 120_000} ms:\n${output}`),
      );
    }, options.startTimeoutMs ?? 120_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString("utf8");
      const match = /Listening on (https?:\/\/[^\s/]+)/.exec(output);
      if (match?.[1]) {
        clearTimeout(timer);
        resolve(match[1].replace("0.0.0.0", "127.0.0.1").replace("localhost", "127.0.0.1"));
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`deno exited with code ${code} before listening:\n${output}`));
    });
  });

  return {
    origin,
    functionsUrl: `${origin}/functions/v1`,
    output: () => output,
    signal: (name) => void child.kill(name),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
      await exited;
      clearTimeout(timer);
    },
  };
}
