import { checkLines, runDoctor } from "../install/doctor.ts";
import { type CommandSpec, DB_URL_FLAG, type Parsed, requireDbUrl } from "./args.ts";
import { operate } from "./database.ts";

export const DOCTOR: CommandSpec = {
  name: "doctor",
  brief: "check that the whole loop works, and find what stops queues",
  summary:
    "check that the whole loop works (a probe: database → pg_net → execute_current_job → its RPC → database) and find what stops queues: tick's last run, calls past their lease, the oldest due job, queues whose recent attempts all failed, wakeups the function refused in the last hour. Each problem comes with what to do; exit code 1 when there is one.",
  flags: {
    "db-url": DB_URL_FLAG,
    "skip-probe": {
      type: "boolean",
      description: "Do not send a probe (it sends one wakeup naming no call).",
    },
    json: { type: "boolean", description: "Print JSON instead of lines." },
  },
};

export async function runDoctorCommand(
  parsed: Parsed,
  env: Record<string, string | undefined>,
): Promise<number> {
  const url = requireDbUrl("doctor", parsed.values, env);
  return operate(url, async (client) => {
    const checks = await runDoctor(client, {
      probe: !parsed.values["skip-probe"],
      probeOptions: { timeoutMs: 30_000 },
    });
    process.stdout.write(
      parsed.values.json ? `${JSON.stringify(checks, null, 2)}\n` : `${checkLines(checks).join("\n")}\n`,
    );
    return checks.every((c) => c.ok) ? 0 : 1;
  });
}
