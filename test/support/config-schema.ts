import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Ajv } from "ajv";
import { projectRoot } from "../../src/paths.ts";

/** The shipped JSON Schema of supaqueue.yml, compiled as an editor would use it (every error, not the first). */
export function editorSchema() {
  const schema = JSON.parse(readFileSync(join(projectRoot(), "schema", "supaqueue.schema.json"), "utf8"));
  return new Ajv({ allErrors: true }).compile(schema);
}
