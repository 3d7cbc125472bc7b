import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import type { TestProject } from "vitest/node";
import { installSchema } from "../../src/install/schema.ts";
import { findOrStartPostgres } from "../../src/local/embedded.ts";
import { projectRoot } from "../../src/paths.ts";
import {
  createProjectDatabase,
  databaseUrl,
  dropDatabase,
  INSTALLER_ROLE,
  prepareStandinServer,
  withClient,
} from "../../src/standins/supabase.ts";

declare module "vitest" {
  export interface ProvidedContext {
    adminUrl: string;
    template: string;
  }
}

/** Tests reach targets on this address; the template is configured with it and tests change it as they need. */
export const TEST_FUNCTIONS_URL = "http://127.0.0.1:9/functions/v1";

/**
 * Finds the Postgres at DATABASE_URL (default 127.0.0.1:5432) or starts an embedded one, installs the Supabase
 * stand-ins, and builds a template database with Supaqueue installed by the non-superuser installer role.
 * Each test file clones the template (fast) or creates an empty database (to test installation itself).
 */
export default async function setup(project: TestProject) {
  // Tests run the CLI as users do (node bin/supaqueue.js, npm start): from lib/, built from today's src/ here.
  execFileSync(
    process.execPath,
    [createRequire(import.meta.url).resolve("typescript/bin/tsc"), "-p", "tsconfig.build.json"],
    {
      cwd: projectRoot(),
      stdio: "inherit",
    },
  );
  const server = await findOrStartPostgres(process.env.DATABASE_URL);
  const template = `sq_template_${process.pid}`;
  await withClient(server.adminUrl, prepareStandinServer);
  await dropDatabase(server.adminUrl, template);
  await createProjectDatabase(server.adminUrl, template);
  await withClient(databaseUrl(server.adminUrl, template, INSTALLER_ROLE), (client) =>
    installSchema(client, { functionsUrl: TEST_FUNCTIONS_URL, secret: "test-secret" }),
  );
  project.provide("adminUrl", server.adminUrl);
  project.provide("template", template);
  return async () => {
    // Test files drop their own databases; this catches those of a file that crashed or timed out.
    const left = await withClient(server.adminUrl, (admin) =>
      admin.query<{ datname: string }>("select datname from pg_database where datname like $1", [
        `${template}\\_%`,
      ]),
    );
    for (const { datname } of left.rows) await dropDatabase(server.adminUrl, datname);
    await dropDatabase(server.adminUrl, template);
    await server.stop();
  };
}
