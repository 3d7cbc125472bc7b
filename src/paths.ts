import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The folder that holds Supaqueue's `sql/` and `functions/`. Found by walking up from this module, so it works from
 * `src/` under vitest, from the built CLI in `lib/src/`, from the bundled `dist/index.js` of the action, and from an
 * installed package.
 */
export function projectRoot(from: string = dirname(fileURLToPath(import.meta.url))): string {
  let dir = resolve(from);
  for (;;) {
    if (existsSync(join(dir, "sql")) && existsSync(join(dir, "functions"))) return dir;
    const parent = dirname(dir);
    if (parent === dir)
      throw new Error(`supaqueue: cannot find the sql/ and functions/ folders above ${from}`);
    dir = parent;
  }
}
