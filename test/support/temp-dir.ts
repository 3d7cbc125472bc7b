import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll } from "vitest";

// Folders this test file made. One hook at the file's top level removes them, as db.ts does for databases.
const made: string[] = [];
afterAll(() => {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A new folder under the system's temporary folder, named `supaqueue-<name>-…`; removed after the file. */
export function tempDir(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `supaqueue-${name}-`));
  made.push(dir);
  return dir;
}
