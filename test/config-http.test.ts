// biome-ignore-all lint/suspicious/noTemplateCurlyInString: supaqueue.yml writes ${VAR} literally.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { formatProblem } from "../src/config/types.ts";
import { validateConfigText } from "../src/config/validate.ts";
import { deploy } from "../src/install/deploy.ts";
import type { Logger } from "../src/install/logger.ts";
import { editorSchema } from "./support/config-schema.ts";

// What a call carries must be sendable: a header value or URL that fetch refuses (or silently changes) would make
// every job of the queue fail, long after the deploy said it was fine. Secrets never appear in a message.

const check = (text: string, env: Record<string, string> = {}) =>
  validateConfigText(text, "supaqueue.yml", { env });
const problems = (text: string, env: Record<string, string> = {}) =>
  check(text, env).problems.map(formatProblem);
const header = (value: string) =>
  `queues:\n  a:\n    function: f\n    headers:\n      X-Key: ${JSON.stringify(value)}\n`;

describe("header values (RFC 9110 field values)", () => {
  test.each([
    ["a\r\nX-Injected: 1", /contains a carriage return \(CR\)/],
    ["one\ntwo", /contains a line feed \(LF\)/],
    ["nul\0byte", /contains a NUL character \(U\+0000\)/],
    ["bell\u0007", /contains the control character U\+0007/],
    ["del\u007f", /contains the control character U\+007F/],
    [" padded", /starts with a space, which HTTP would trim/],
    ["padded\t", /ends with a tab, which HTTP would trim/],
    ["price in €", /contains "€" \(U\+20AC\).* beyond U\+00FF/],
  ])("%j is refused at the value, saying why", (value, why) => {
    const found = problems(header(value));
    expect(found).toEqual([
      expect.stringMatching(/^supaqueue\.yml:5:14: queues\.a\.headers\.X-Key: the value /),
    ]);
    expect(found[0]).toMatch(why);
  });

  test("a block scalar's trailing line break is named as such", () => {
    expect(problems("queues:\n  a:\n    function: f\n    headers:\n      X-Key: |\n        abc\n")).toEqual([
      expect.stringMatching(
        /^supaqueue\.yml:5:14: queues\.a\.headers\.X-Key: the value ends with a line feed \(LF\).*write \|- or >- /,
      ),
    ]);
  });

  test("tabs inside, Latin-1 letters, visible characters and an empty value are fine", () => {
    const { config, problems: found } = check(
      "queues:\n  a:\n    function: f\n    headers:\n      X-A: \"a\\tb\"\n      X-B: café\n      X-C: '!#$%&()*+,-./:;<=>?@[]^_`{|}~'\n      X-D: ''\n",
    );
    expect(found).toEqual([]);
    expect(config.queues[0]?.headers).toEqual({
      "X-A": "a\tb",
      "X-B": "café",
      "X-C": "!#$%&()*+,-./:;<=>?@[]^_`{|}~",
      "X-D": "",
    });
  });

  test("a ${VAR} whose value breaks the header is named, and its value is never printed", () => {
    const text = "queues:\n  a:\n    function: f\n    headers:\n      Authorization: Bearer ${TOKEN}\n";
    const cases: [string, RegExp][] = [
      ["s3cr3t-value\n", /the value of \$\{TOKEN\} contains a line feed \(LF\)/],
      ["s3cr3t\r\nX-Evil: 1", /the value of \$\{TOKEN\} contains a carriage return \(CR\)/],
      ["s3cr3t-value ", /the value of \$\{TOKEN\} ends with a space, which HTTP would trim/],
    ];
    for (const [value, why] of cases) {
      const found = problems(text, { TOKEN: value });
      expect(found).toEqual([
        expect.stringMatching(/^supaqueue\.yml:5:22: queues\.a\.headers\.Authorization: /),
      ]);
      expect(found[0]).toMatch(why);
      expect(found[0]).not.toContain("s3cr3t");
    }
    // The written part is blamed when the fault is there, not the variable.
    expect(
      problems("queues:\n  a:\n    function: f\n    headers:\n      X-Key: ' ${TOKEN}'\n", { TOKEN: "t" }),
    ).toEqual([expect.stringMatching(/X-Key: the value starts with a space, which HTTP would trim/)]);
  });

  test("an unset variable is reported in words that fit both the action and the command line", () => {
    const found = problems(header("${MISSING_KEY}"));
    expect(found).toEqual([
      "supaqueue.yml:5:14: queues.a.headers.X-Key: ${MISSING_KEY} is not set (or empty); set MISSING_KEY in the environment (the action's env:, e.g. MISSING_KEY: ${{ secrets.MISSING_KEY }}, or your shell)",
    ]);
  });
});

describe("queue URLs", () => {
  test("a URL with a user name or password is refused, pointing to ${VAR}, without echoing it", () => {
    const found = problems("queues:\n  a:\n    url: https://bob:hunter2@hooks.example.com/x\n");
    expect(found).toEqual([
      expect.stringMatching(
        /^supaqueue\.yml:3:10: queues\.a\.url: a URL may not carry a user name or password .*fetch refuses.*Authorization: Basic \$\{.*\$\{HOOK_TOKEN\}/,
      ),
    ]);
    expect(found[0]).not.toContain("hunter2");
    expect(
      problems("queues:\n  a:\n    url: https://user:${PASS}@hooks.example.com/x\n", { PASS: "p" }),
    ).toEqual([expect.stringMatching(/queues\.a\.url: a URL may not carry a user name or password/)]);
  });

  test("${VAR} in a URL is resolved; the spec keeps the URL as written and the resolved one as a secret", () => {
    const { config, problems: found } = check(
      "queues:\n  hook:\n    url: https://hooks.example.com/x?token=${HOOK_TOKEN}&team=${TEAM}\n  whole:\n    url: ${SLACK_WEBHOOK_URL}\n  plain:\n    url: https://example.com/plain\n  fn:\n    function: f\n",
      { HOOK_TOKEN: "tok", TEAM: "t1", SLACK_WEBHOOK_URL: "https://hooks.slack.com/services/T0/B0/xyz" },
    );
    expect(found).toEqual([]);
    expect(config.queues.map((q) => [q.name, q.url, q.urlSecret])).toEqual([
      [
        "hook",
        "https://hooks.example.com/x?token=${HOOK_TOKEN}&team=${TEAM}",
        { value: "https://hooks.example.com/x?token=tok&team=t1", variables: ["HOOK_TOKEN", "TEAM"] },
      ],
      [
        "whole",
        "${SLACK_WEBHOOK_URL}",
        { value: "https://hooks.slack.com/services/T0/B0/xyz", variables: ["SLACK_WEBHOOK_URL"] },
      ],
      ["plain", "https://example.com/plain", null],
      ["fn", null, null],
    ]);
  });

  test("an unset variable in a URL gets the same message as in a header", () => {
    expect(problems("queues:\n  a:\n    url: https://hooks.example.com/x?token=${HOOK_TOKEN}\n")).toEqual([
      "supaqueue.yml:3:10: queues.a.url: ${HOOK_TOKEN} is not set (or empty); set HOOK_TOKEN in the environment (the action's env:, e.g. HOOK_TOKEN: ${{ secrets.HOOK_TOKEN }}, or your shell)",
    ]);
  });

  test("the resolved URL must be absolute http(s) without credentials; it is never printed", () => {
    const text = "queues:\n  a:\n    url: ${HOOK_URL}\n";
    const cases: [string, RegExp][] = [
      ["ftp://secret.example.com/x", /once \$\{HOOK_URL\} is filled in, the URL is not an absolute http/],
      ["secret.example.com/x", /once \$\{HOOK_URL\} is filled in, the URL is not an absolute http/],
      [
        "https://u:secret@example.com/x",
        /once \$\{HOOK_URL\} is filled in, the URL carries a user name or password/,
      ],
      ["https://secret.example.com/x\n", /the value of \$\{HOOK_URL\} contains a line feed \(LF\)/],
      ["https://secret.example.com/x y", /the value of \$\{HOOK_URL\} contains a space/],
    ];
    for (const [value, why] of cases) {
      const found = problems(text, { HOOK_URL: value });
      expect(found).toEqual([expect.stringMatching(/^supaqueue\.yml:3:10: queues\.a\.url: /)]);
      expect(found[0]).toMatch(why);
      expect(found[0]).not.toContain("secret");
    }
  });

  test("a written URL is still checked as before: http(s), or starting with ${VAR}", () => {
    expect(problems("queues:\n  a:\n    url: ftp://example.com/${X}\n", { X: "x" })).toEqual([
      expect.stringMatching(
        /queues\.a\.url: invalid URL "ftp:\/\/example\.com\/\$\{X\}"; allowed: an absolute http/,
      ),
    ]);
  });

  test("the resolved URL is masked before anything could print it, like secret header values", async () => {
    const dir = mkdtempSync(join(tmpdir(), "supaqueue-mask-"));
    const configPath = join(dir, "supaqueue.yml");
    writeFileSync(
      configPath,
      "queues:\n  a:\n    url: https://hooks.example.com/x?token=${HOOK_TOKEN}\n  b:\n    function: f\n    headers: {X-Key: '${KEY}'}\n",
    );
    const masked: string[] = [];
    const log: Logger = {
      info: () => {},
      warning: () => {},
      error: () => {},
      group: (_title, fn) => fn(),
      secret: (value) => masked.push(value),
    };
    // Nothing listens on port 1: the run stops at "Connect to the database", after the file was read.
    await expect(
      deploy(
        {
          projectRef: "abcdefghijklmnopqrst",
          dbUrl: "postgres://postgres@127.0.0.1:1/postgres",
          configPath,
          configFile: "supaqueue.yml",
          dryRun: true,
          env: { HOOK_TOKEN: "tok-123", KEY: "k-456" },
          tick: "external",
          probe: false,
        },
        log,
      ),
    ).rejects.toThrow(/cannot connect/);
    expect(masked).toEqual(expect.arrayContaining(["https://hooks.example.com/x?token=tok-123", "k-456"]));
  });
});

describe("the JSON Schema agrees on URLs", () => {
  const validate = editorSchema();
  const url = (u: string) => validate({ queues: { a: { url: u } } });

  test("${VAR} is allowed in a URL, or as the whole URL; credentials are not", () => {
    expect(url("https://hooks.example.com/x?token=${HOOK_TOKEN}")).toBe(true);
    expect(url("${SLACK_WEBHOOK_URL}")).toBe(true);
    expect(url("https://example.com/users/@me?email=a@b.example")).toBe(true);
    expect(url("https://bob:hunter2@hooks.example.com/x")).toBe(false);
    expect(url("https://bob@hooks.example.com/x")).toBe(false);
    expect(url("ftp://example.com/${X}")).toBe(false);
    expect(url("example.com")).toBe(false);
  });

  test("plain header values follow the same rules", () => {
    const value = (v: string) => validate({ queues: { a: { function: "f", headers: { "X-Key": v } } } });
    for (const ok of ["a\tb", "café", "Bearer ${TOKEN}", "", "x"]) expect(value(ok), ok).toBe(true);
    for (const bad of ["a\r\nb", "nul\0", " padded", "padded\t", "price in €"])
      expect(value(bad), bad).toBe(false);
  });
});
