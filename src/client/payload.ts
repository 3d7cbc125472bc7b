// Payload schemas: the part of JSON Schema a queue's `payload:` in supaqueue.yml may use, checked the same way by the
// client, `supaqueue enqueue` and the deploy (which refuses a schema using anything else, so nothing is silently left
// unchecked). No dependency: the client runs in edge functions as it is.

/** A JSON Schema, as supaqueue.yml's `payload:` holds it. */
export type JsonSchema = { [keyword: string]: unknown };

/** Where a payload breaks its schema: a JSON Pointer ("" for the payload itself, "/to" for its field `to`) and why. */
export interface PayloadProblem {
  path: string;
  problem: string;
}

const TYPES = ["object", "array", "string", "number", "integer", "boolean", "null"] as const;

/** The keywords checked, and those that only describe (`format` is an annotation, as JSON Schema 2019+ has it). */
const CHECKED = [
  "type",
  "enum",
  "const",
  "properties",
  "required",
  "additionalProperties",
  "items",
  "minItems",
  "maxItems",
  "minLength",
  "maxLength",
  "pattern",
  "minimum",
  "maximum",
  "exclusiveMinimum",
  "exclusiveMaximum",
  "anyOf",
];
const ANNOTATIONS = ["$schema", "$id", "$comment", "title", "description", "default", "examples", "format"];
const SCHEMA_KEYWORDS: readonly string[] = [...CHECKED, ...ANNOTATIONS];

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

function typeOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}

/** JSON equality: objects equal whatever the order of their keys. */
function sameJson(a: unknown, b: unknown): boolean {
  if (Array.isArray(a) && Array.isArray(b))
    return a.length === b.length && a.every((v, i) => sameJson(v, b[i]));
  if (isObject(a) && isObject(b)) {
    const keys = Object.keys(a);
    return keys.length === Object.keys(b).length && keys.every((k) => k in b && sameJson(a[k], b[k]));
  }
  return a === b;
}

const pointer = (path: string, key: string | number) =>
  `${path}/${String(key).replaceAll("~", "~0").replaceAll("/", "~1")}`;

function matchesType(value: unknown, type: string): boolean {
  const actual = typeOf(value);
  return actual === type || (type === "number" && actual === "integer");
}

const shown = (value: unknown) => (typeof value === "string" ? JSON.stringify(value) : typeOf(value));

/** The first place where `value` breaks `schema`, or null when it matches. */
export function payloadProblem(schema: JsonSchema, value: unknown, path = ""): PayloadProblem | null {
  const at = (problem: string): PayloadProblem => ({ path, problem });
  if (schema.type !== undefined) {
    const types = (Array.isArray(schema.type) ? schema.type : [schema.type]) as string[];
    if (!types.some((t) => matchesType(value, t)))
      return at(`must be ${types.join(" or ")}, not ${typeOf(value)}`);
  }
  if (Array.isArray(schema.enum) && !schema.enum.some((e) => sameJson(e, value)))
    return at(
      `must be one of ${schema.enum.map((e) => JSON.stringify(e)).join(", ")}, not ${JSON.stringify(value)}`,
    );
  if ("const" in schema && !sameJson(schema.const, value))
    return at(`must be ${JSON.stringify(schema.const)}, not ${JSON.stringify(value)}`);
  if (Array.isArray(schema.anyOf)) {
    const ok = schema.anyOf.some((s) => payloadProblem(s as JsonSchema, value, path) === null);
    if (!ok) return at(`matches none of the ${schema.anyOf.length} schemas of anyOf`);
  }
  if (typeof value === "string") {
    const length = [...value].length;
    if (typeof schema.minLength === "number" && length < schema.minLength)
      return at(`must be at least ${schema.minLength} characters long, not ${length}`);
    if (typeof schema.maxLength === "number" && length > schema.maxLength)
      return at(`must be at most ${schema.maxLength} characters long, not ${length}`);
    if (typeof schema.pattern === "string" && !new RegExp(schema.pattern, "u").test(value))
      return at(`must match the pattern ${schema.pattern}, not ${shown(value)}`);
  }
  if (typeof value === "number") {
    if (typeof schema.minimum === "number" && value < schema.minimum)
      return at(`must be at least ${schema.minimum}, not ${value}`);
    if (typeof schema.maximum === "number" && value > schema.maximum)
      return at(`must be at most ${schema.maximum}, not ${value}`);
    if (typeof schema.exclusiveMinimum === "number" && value <= schema.exclusiveMinimum)
      return at(`must be more than ${schema.exclusiveMinimum}, not ${value}`);
    if (typeof schema.exclusiveMaximum === "number" && value >= schema.exclusiveMaximum)
      return at(`must be less than ${schema.exclusiveMaximum}, not ${value}`);
  }
  if (Array.isArray(value)) {
    if (typeof schema.minItems === "number" && value.length < schema.minItems)
      return at(`must have at least ${schema.minItems} items, not ${value.length}`);
    if (typeof schema.maxItems === "number" && value.length > schema.maxItems)
      return at(`must have at most ${schema.maxItems} items, not ${value.length}`);
    if (isObject(schema.items)) {
      for (const [i, item] of value.entries()) {
        const problem = payloadProblem(schema.items, item, pointer(path, i));
        if (problem) return problem;
      }
    }
  }
  if (isObject(value)) {
    for (const name of Array.isArray(schema.required) ? (schema.required as string[]) : []) {
      if (!(name in value)) return { path: pointer(path, name), problem: "is required, and missing" };
    }
    const properties = isObject(schema.properties) ? schema.properties : {};
    for (const [name, field] of Object.entries(value)) {
      const own = properties[name];
      if (isObject(own)) {
        const problem = payloadProblem(own, field, pointer(path, name));
        if (problem) return problem;
      } else if (schema.additionalProperties === false) {
        return {
          path: pointer(path, name),
          problem: `is not allowed (allowed: ${Object.keys(properties).join(", ") || "no field"})`,
        };
      } else if (isObject(schema.additionalProperties)) {
        const problem = payloadProblem(schema.additionalProperties, field, pointer(path, name));
        if (problem) return problem;
      }
    }
  }
  return null;
}

/** What is wrong with a schema itself (a keyword not supported, a value of the wrong shape), each with its place. */
export function schemaProblems(schema: unknown, path = ""): PayloadProblem[] {
  if (!isObject(schema)) return [{ path, problem: `a schema must be a mapping, not ${typeOf(schema)}` }];
  const problems: PayloadProblem[] = [];
  const add = (key: string, problem: string) => problems.push({ path: pointer(path, key), problem });
  for (const [key, value] of Object.entries(schema)) {
    if (!SCHEMA_KEYWORDS.includes(key)) {
      add(key, `is not supported; payload schemas may use ${SCHEMA_KEYWORDS.join(", ")}`);
    } else if (key === "type") {
      const types = Array.isArray(value) ? value : [value];
      if (types.length === 0 || !types.every((t) => (TYPES as readonly unknown[]).includes(t)))
        add(key, `must be one of ${TYPES.join(", ")}, or a list of them`);
    } else if (key === "properties") {
      if (!isObject(value)) add(key, "must be a mapping of field names to schemas");
      else
        for (const [name, s] of Object.entries(value))
          problems.push(...schemaProblems(s, pointer(pointer(path, key), name)));
    } else if (key === "items" || (key === "additionalProperties" && typeof value !== "boolean")) {
      problems.push(...schemaProblems(value, pointer(path, key)));
    } else if (key === "anyOf") {
      if (!Array.isArray(value) || value.length === 0) add(key, "must be a list of schemas");
      else
        for (const [i, s] of value.entries())
          problems.push(...schemaProblems(s, pointer(pointer(path, key), i)));
    } else if (key === "required") {
      if (!Array.isArray(value) || !value.every((v) => typeof v === "string"))
        add(key, "must be a list of field names");
    } else if (key === "enum") {
      if (!Array.isArray(value) || value.length === 0) add(key, "must be a list of values");
    } else if (key === "pattern") {
      try {
        new RegExp(String(value), "u");
      } catch {
        add(key, `is not a valid regular expression: ${JSON.stringify(value)}`);
      }
    } else if (/^(min|max|exclusiveM)/.test(key) && typeof value !== "number") {
      add(key, "must be a number");
    }
  }
  return problems;
}
