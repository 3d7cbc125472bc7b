import { spawn } from "node:child_process";
import { type Dashboard, startDashboard } from "../dashboard/server.ts";
import { type CommandSpec, DB_URL_FLAG, type Parsed, requireDbUrl, stringFlag, UsageError } from "./args.ts";

export const DASHBOARD: CommandSpec = {
  name: "dashboard",
  brief: "serve a web page of the queues, their jobs and attempts, on 127.0.0.1",
  summary:
    "serve the dashboard: queues (backlog, workers, throughput, failures, call times), a queue's jobs and recent errors, a job's attempts, and pause / resume / retry / cancel behind a confirmation. Listens on 127.0.0.1 and needs the token in the URL it prints. Runs until Ctrl-C.",
  flags: {
    "db-url": DB_URL_FLAG,
    port: { type: "string", value: "PORT", description: "Port to listen on (default: any free port)." },
    host: {
      type: "string",
      value: "HOST",
      description:
        "Listen on this address or name instead of 127.0.0.1; requests must then name it (the Host header is checked). Anyone who can reach it and has the URL can act on the queues.",
    },
    "read-only": {
      type: "boolean",
      description: "Show everything, change nothing: every action is refused.",
    },
    "no-open": { type: "boolean", description: "Do not open the URL in $BROWSER." },
  },
  notes: [
    "The URL is opened only when $BROWSER names a browser program (and not with --no-open).",
    "Header values are hidden until asked for; secret headers live in Vault and only their names are shown.",
  ],
};

/** Checks --port and --host and starts the dashboard; shared by `dashboard` and `dev`. */
export async function dashboardFromFlags(parsed: Parsed, command: string, dbUrl: string): Promise<Dashboard> {
  const v = parsed.values;
  const portFlag = stringFlag(v, command === "dashboard" ? "port" : "dashboard-port");
  const port = portFlag === undefined ? 0 : Number(portFlag);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new UsageError(command, `the dashboard's port must be a number from 0 to 65535, not "${portFlag}"`);
  }
  const host = stringFlag(v, "host");
  if (host === "0.0.0.0" || host === "::") {
    throw new UsageError(
      command,
      `--host ${host} listens everywhere, but requests are checked against the name they use: give the address or name clients will use instead`,
    );
  }
  return startDashboard({ dbUrl, port, host, readOnly: Boolean(v["read-only"]) });
}

/** Opens `url` in the browser $BROWSER names, when it names one; never waits for it. */
export function openInBrowser(url: string, env: Record<string, string | undefined>): boolean {
  const browser = env.BROWSER?.trim();
  if (!browser) return false;
  const child = spawn(browser, [url], { detached: true, stdio: "ignore" });
  child.on("error", () => {});
  child.unref();
  return true;
}

/** `supaqueue dashboard`. */
export async function runDashboard(parsed: Parsed, env: Record<string, string | undefined>): Promise<number> {
  const dbUrl = requireDbUrl("dashboard", parsed.values, env);
  const dashboard = await dashboardFromFlags(parsed, "dashboard", dbUrl);
  const out = (line: string) => process.stdout.write(`${line}\n`);
  out(`Supaqueue dashboard${parsed.values["read-only"] ? " (read-only)" : ""}: ${dashboard.url}`);
  out("The URL holds the dashboard's token: keep it to yourself. Ctrl-C stops it.");
  if (!parsed.values["no-open"] && openInBrowser(dashboard.url, env)) out("Opened it in $BROWSER.");
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  await dashboard.stop();
  return 0;
}
