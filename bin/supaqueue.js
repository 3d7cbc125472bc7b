#!/usr/bin/env node
// The `supaqueue` command. The CLI is TypeScript (src/cli.ts), run through tsx's loader so that a fresh clone
// needs only `npm ci`: no build step, and no bundle to keep in sync with src/.
let register;
try {
  ({ register } = await import("tsx/esm/api"));
} catch {
  process.stderr.write("supaqueue: tsx is not installed; run `npm ci` in the Supaqueue folder first.\n");
  process.exit(1);
}
register();
try {
  await import("../src/cli.ts");
} catch (error) {
  // The CLI could not even load (a file missing from the clone, a broken install): one line, as for any failure.
  const debug = process.env.SUPAQUEUE_DEBUG ? `${error?.stack}\n` : "";
  process.stderr.write(`${debug}supaqueue: cannot load the CLI: ${error?.message ?? error}\n`);
  process.exit(1);
}
