#!/usr/bin/env node
// The `supaqueue` command: the CLI as built JavaScript (lib/, compiled from src/ by `npm run build:cli`, which npm
// runs as `prepare` on npm ci / npm install in a clone and before npm pack). No TypeScript loader at run time.
try {
  await import("../lib/src/cli.js");
} catch (error) {
  const notBuilt =
    error?.code === "ERR_MODULE_NOT_FOUND" && String(error?.message).includes("lib/src/cli.js");
  // The CLI could not even load (not built yet, a file missing, a broken install): one line, as for any failure.
  const debug = process.env.SUPAQUEUE_DEBUG ? `${error?.stack}\n` : "";
  const why = notBuilt
    ? "the CLI is not built: run `npm ci` (or `npm run build:cli`) in the Supaqueue folder first"
    : `cannot load the CLI: ${error?.message ?? error}`;
  process.stderr.write(`${debug}supaqueue: ${why}\n`);
  process.exit(1);
}
