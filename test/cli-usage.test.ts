import { describe, expect, test } from "vitest";
import { cli } from "./support/cli.ts";

/** Command lines the CLI refuses before it connects anywhere, and the help every command prints. */

describe.concurrent("bad command lines exit 2 and name the flag", () => {
  test.each([
    [["status", "--bogus"], /unknown flag --bogus/],
    [["status"], /no database given: pass --db-url/],
    [["enqueue"], /missing the queue name/],
    [["enqueue", "q", "{not json", "--db-url", "postgres://x@127.0.0.1/x"], /the payload is not valid JSON/],
    [
      ["enqueue", "q", "--run-at", "someday", "--db-url", "postgres://x@127.0.0.1/x"],
      /--run-at must be an ISO timestamp/,
    ],
    [
      ["status", "--failures", "many", "--db-url", "postgres://x@127.0.0.1/x"],
      /--failures must be a whole number/,
    ],
    [["dev", "--port", "http"], /--port must be a port number/],
    [["dev", "--demo", "--config", "x.yml"], /--demo runs its own queues: leave out --config/],
    [
      ["deploy", "--project-ref", "abcdefghijklmnopqrst", "--db-url", "postgres://x@127.0.0.1/x"],
      /--access-token \(or \$SUPABASE_ACCESS_TOKEN\) is required/,
    ],
    [
      ["plan", "--db-url", "postgres://x@127.0.0.1/x"],
      /--project-ref \(or \$SUPABASE_PROJECT_REF\) is required/,
    ],
    [["deploy", "--db-url"], /flag --db-url needs a value/],
    [["launch"], /unknown command "launch"/],
    [["pause"], /missing the queue name \(usage: supaqueue pause <queue>\)/],
    [["cancel"], /give a job id or --queue, not neither/],
    [["cancel", "42", "--db-url", "postgres://x@127.0.0.1/x"], /"42" is not a job id/],
    [
      ["cancel", "--queue", "q", "--filter", "[1]", "--db-url", "postgres://x@127.0.0.1/x"],
      /--filter must be a JSON object/,
    ],
    [
      ["retry", "--queue", "q", "--since", "last week", "--db-url", "postgres://x@127.0.0.1/x"],
      /--since must be an ISO timestamp .* \(that long ago\)/,
    ],
    [
      [
        "retry",
        "00000000-0000-4000-8000-000000000000",
        "--since",
        "1d",
        "--db-url",
        "postgres://x@127.0.0.1/x",
      ],
      /--since goes with --queue, not with a job id/,
    ],
    [
      ["rotate-key", "q", "--overlap", "a while", "--db-url", "postgres://x@127.0.0.1/x"],
      /--overlap must be/,
    ],
    [["resume", "q"], /no database given/],
  ])("supaqueue %j", async (args, message) => {
    const run = await cli(args);
    expect(run.stderr).toMatch(message);
    expect(run.code).toBe(2);
  });

  test("every command has --help", async () => {
    const commands = [
      "dev",
      "deploy",
      "plan",
      "status",
      "enqueue",
      "pause",
      "resume",
      "purge",
      "cancel",
      "retry",
      "rotate-key",
      "uninstall",
    ];
    const runs = await Promise.all(commands.map((command) => cli([command, "--help"])));
    commands.forEach((command, i) => {
      expect(runs[i]?.code).toBe(0);
      expect(runs[i]?.stdout).toMatch(new RegExp(`^Usage: supaqueue ${command}`, "m"));
      expect(runs[i]?.stdout).toContain("--help");
    });
    const top = await cli(["--help"]);
    expect(top.stdout).toContain("uninstall");
  });
});
