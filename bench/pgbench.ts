import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** pgbench from the server's own packages (Debian's postgresql-client); PGBENCH overrides it. */
const PGBENCH = process.env.PGBENCH ?? "/usr/bin/pgbench";

export interface PgbenchRun {
  /** The custom script's text (pgbench syntax). */
  script: string;
  clients: number;
  seconds: number;
  /** Extra server settings for the sessions, e.g. ["synchronous_commit=off"] (sent through PGOPTIONS). */
  settings?: string[];
}

/**
 * Runs pgbench with a custom script against `url` and returns transactions per second (excluding connection
 * time). No vacuum (-n): the bench prepares its own tables.
 */
export async function pgbench(url: string, options: PgbenchRun): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "supaqueue-pgbench-"));
  try {
    const file = join(dir, "script.sql");
    writeFileSync(file, options.script);
    const u = new URL(url);
    const args = [
      "-n",
      "-h",
      u.hostname,
      "-p",
      u.port || "5432",
      "-U",
      decodeURIComponent(u.username),
      "-c",
      String(options.clients),
      "-j",
      String(Math.min(options.clients, 2)),
      "-T",
      String(options.seconds),
      "-f",
      file,
      u.pathname.slice(1),
    ];
    const env = { ...process.env, PGOPTIONS: (options.settings ?? []).map((s) => `-c ${s}`).join(" ") };
    const { stdout } = await run(PGBENCH, args, { env, maxBuffer: 16 * 1024 * 1024 });
    const match = /tps = ([\d.]+) \(without initial connection time\)/.exec(stdout);
    if (!match?.[1]) throw new Error(`pgbench printed no tps:\n${stdout}`);
    return Number(match[1]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function pgbenchVersion(): Promise<string> {
  const { stdout } = await run(PGBENCH, ["--version"]);
  return stdout.trim();
}
