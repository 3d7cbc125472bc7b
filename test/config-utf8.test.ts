import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { loadConfig } from "../src/config/load.ts";
import { ConfigError, formatProblem } from "../src/config/types.ts";

// supaqueue.yml is read as bytes and must be UTF-8: a Latin-1 "é" used to become U+FFFD without a word, and the
// queue was installed with a header or URL that was not what the file said.

const dir = mkdtempSync(join(tmpdir(), "supaqueue-utf8-"));
let count = 0;

/** Loads these bytes as supaqueue.yml; returns the problems as printed (none: the file loaded). */
function load(...parts: (string | number[])[]): string[] {
  const bytes = Buffer.concat(
    parts.map((p) => (typeof p === "string" ? Buffer.from(p, "utf8") : Buffer.from(p))),
  );
  const path = join(dir, `f${count++}.yml`);
  writeFileSync(path, bytes);
  try {
    loadConfig(path, "supaqueue.yml", { env: {} });
    return [];
  } catch (error) {
    if (error instanceof ConfigError) return error.problems.map(formatProblem);
    throw error;
  }
}

describe("supaqueue.yml must be UTF-8", () => {
  test("a Latin-1 byte is reported at its line and column, not turned into U+FFFD", () => {
    expect(load("queues:\n  a:\n    function: f\n    headers: {X-Name: caf", [0xe9], "}\n")).toEqual([
      'supaqueue.yml:4:26: (file): byte 0xE9 is not valid UTF-8; save the file as UTF-8 (in Windows-1252 this byte is "é": the file was probably saved in that encoding, or in Latin-1)',
    ]);
  });

  test("the column counts characters, not bytes, before the bad byte", () => {
    expect(load("# héllo wörld ", [0xff], "\nqueues: {}\n")).toEqual([
      expect.stringMatching(/^supaqueue\.yml:1:15: \(file\): byte 0xFF is not valid UTF-8/),
    ]);
  });

  test.each([
    ["an overlong encoding", [0xc0, 0xaf], "1:9", "0xC0"],
    ["a surrogate", [0xed, 0xa0, 0x80], "1:9", "0xED"],
    ["a sequence cut short by the next character", [0xe2, 0x82], "1:9", "0xE2"],
    ["a lone continuation byte", [0x80], "1:9", "0x80"],
    ["beyond U+10FFFF", [0xf4, 0x90, 0x80, 0x80], "1:9", "0xF4"],
  ])("%s is refused", (_what, bytes, at, byte) => {
    expect(load("queues: ", bytes, "{}\n")).toEqual([
      expect.stringMatching(
        new RegExp(`^supaqueue\\.yml:${at}: \\(file\\): byte ${byte} is not valid UTF-8`),
      ),
    ]);
  });

  test("a sequence cut short by the end of the file is refused", () => {
    expect(load("queues: {}\n# ", [0xf0, 0x9f, 0x98])).toEqual([
      expect.stringMatching(/^supaqueue\.yml:2:3: \(file\): byte 0xF0 is not valid UTF-8/),
    ]);
  });

  test("a UTF-16 file is named as such", () => {
    expect(load([0xff, 0xfe], Buffer.from("queues: {}\n", "utf16le").toJSON().data)).toEqual([
      expect.stringMatching(/^supaqueue\.yml:1:1: \(file\): the file is UTF-16; save it as UTF-8/),
    ]);
  });

  test("valid UTF-8 loads: letters, emoji, a byte order mark, and a real U+FFFD", () => {
    expect(
      load([0xef, 0xbb, 0xbf], "queues:\n  a:\n    function: f\n    headers: {X-A: café}\n# 😀 \uFFFD\n"),
    ).toEqual([]);
  });
});
