import { execFile } from "node:child_process";
import { cpus, loadavg, totalmem } from "node:os";
import { promisify } from "node:util";
import { DENO_BIN } from "../test/support/deno.ts";
import { peerVersion } from "./peers.ts";
import { pgbenchVersion } from "./pgbench.ts";
import { type BenchServer, withClient } from "./support.ts";

const run = promisify(execFile);

/** What the figures depend on: the machine, the versions, and the server settings. */
export interface Environment {
  date: string;
  cpuModel: string;
  cores: number;
  memoryGb: number;
  loadAverageAtStart: number[];
  node: string;
  deno: string;
  postgres: string;
  pgbench: string;
  peers: Record<string, string>;
  embeddedServer: boolean;
  settings: Record<string, string>;
}

const SETTINGS = [
  "fsync",
  "synchronous_commit",
  "wal_sync_method",
  "full_page_writes",
  "shared_buffers",
  "wal_buffers",
  "max_wal_size",
  "checkpoint_timeout",
  "commit_delay",
  "work_mem",
  "max_connections",
  "autovacuum",
  "jit",
];

export async function describeEnvironment(bench: BenchServer): Promise<Environment> {
  const settings: Record<string, string> = {};
  let postgres = "";
  await withClient(bench.adminUrl, async (c) => {
    postgres = (await c.query<{ v: string }>("select version() as v")).rows[0]?.v ?? "";
    const { rows } = await c.query<{ name: string; value: string }>(
      "select name, current_setting(name) as value from pg_settings where name = any ($1) order by name",
      [SETTINGS],
    );
    for (const r of rows) settings[r.name] = r.value;
  });
  const deno = (await run(DENO_BIN, ["--version"])).stdout.split("\n")[0]?.trim() ?? "";
  return {
    date: new Date().toISOString(),
    cpuModel: cpus()[0]?.model ?? "unknown",
    cores: cpus().length,
    memoryGb: totalmem() / 1024 ** 3,
    loadAverageAtStart: loadavg(),
    node: process.version,
    deno,
    postgres,
    pgbench: await pgbenchVersion(),
    peers: { "graphile-worker": peerVersion("graphile-worker"), "pg-boss": peerVersion("pg-boss") },
    embeddedServer: bench.server.embedded,
    settings,
  };
}
