import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import pg from "pg";

/**
 * A stand-in for the part of PostgREST that `rpc()` calls use (supabase-js's, and execute_current_job's own
 * postgrestSender): `POST /rest/v1/rpc/<function>` with a JSON object of named arguments. Like PostgREST behind
 * Supabase's gateway it checks the API keys, looks the function up in the exposed schemas (the first one unless a
 * `Content-Profile` header names another), runs it inside a transaction after `set local role service_role` (read
 * only for a STABLE or IMMUTABLE function, even on POST), and answers the result as JSON (a scalar, an object for a
 * composite, an array for a set), or an error as `{code, message, details, hint}` with PostgREST's status. The
 * server is the `url` to give a client as SUPABASE_URL.
 */
export interface RpcCall {
  fn: string;
  args: Record<string, unknown>;
  status: number;
}

export interface PostgrestStandin {
  /** Base URL, e.g. http://127.0.0.1:PORT (SUPABASE_URL for clients). */
  url: string;
  /** Every RPC call received, with the status answered. */
  calls: RpcCall[];
  /** Answers every call with this status (e.g. 503) until set back to null, to test failing reports. */
  failWith: number | null;
  /** The schemas the API exposes, the default one first; may be changed while running, as a user can. */
  exposedSchemas: string[];
  /** Whether the project's Data API is on; while off every /rest/v1 request answers 404, as on Supabase. */
  dataApi: boolean;
  stop(): Promise<void>;
}

export interface PostgrestOptions {
  /** Runs the functions (the installer pool: a role that may `set role service_role`). */
  pool: pg.Pool;
  /** The legacy service_role key (a JWT): accepted as `apikey` and as `Authorization: Bearer`. */
  serviceRoleKey: string;
  /** A new-style secret key (`sb_secret_...`): accepted as `apikey` only, since it is not a JWT. */
  secretKey?: string;
  role?: string;
  /** Schemas exposed by the API, the default one first (default: ["public"], as on a new project). */
  exposedSchemas?: string[];
  /** Whether the Data API is on (default: true). */
  dataApi?: boolean;
}

interface FunctionArg {
  name: string;
  type: string;
  hasDefault: boolean;
}

interface FunctionInfo {
  schema: string;
  args: FunctionArg[];
  returnsSet: boolean;
  returnsComposite: boolean;
  /** STABLE or IMMUTABLE: PostgREST runs it in a read-only transaction. */
  readOnly: boolean;
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

class RestError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: string | null = null,
    readonly hint: string | null = null,
  ) {
    super(message);
  }
}

/** PostgREST's mapping from SQLSTATE to HTTP status (the cases a function call can hit). */
function statusForSqlState(code: string | undefined): number {
  if (!code) return 500;
  if (code === "42501") return 403;
  if (code === "42883" || code === "42P01") return 404;
  if (code === "23505" || code === "23503" || code === "40001" || code === "40P01") return 409;
  if (code === "25006") return 405;
  if (code.startsWith("08") || code.startsWith("53") || code.startsWith("57")) return 503;
  if (code.startsWith("XX")) return 500;
  return 400;
}

/** PostgREST's answer for a function it cannot find in the schema it searched. */
function functionNotFound(schema: string, fn: string, argNames: string[]): RestError {
  return new RestError(
    404,
    "PGRST202",
    `Could not find the function ${schema}.${fn}(${[...argNames].sort().join(", ")}) in the schema cache`,
    "Searched for the function with the given argument names, but no matches were found in the schema cache.",
  );
}

/** Looks the function up as PostgREST's schema cache would, before any transaction starts. */
async function describeFunction(
  pool: pg.Pool,
  schema: string,
  fn: string,
  argNames: string[],
): Promise<FunctionInfo> {
  if (!IDENTIFIER.test(fn)) throw functionNotFound(schema, fn, argNames);
  const { rows } = await pool.query<{
    names: string[] | null;
    types: string[];
    defaults: number;
    retset: boolean;
    composite: boolean;
    volatility: string;
  }>(
    `select p.proargnames as names,
            array(select format_type(t, null) from unnest(p.proargtypes) t) as types,
            p.pronargdefaults as defaults, p.proretset as retset,
            (select typtype = 'c' from pg_type where oid = p.prorettype) as composite,
            p.provolatile as volatility
     from pg_proc p join pg_namespace n on n.oid = p.pronamespace
     where n.nspname = $1 and p.proname = $2 and p.prokind = 'f'`,
    [schema, fn],
  );
  // Choose the overload whose named arguments cover the call, as PostgREST does.
  for (const row of rows) {
    const names = row.names ?? [];
    const args = row.types.map((type, i) => ({
      name: names[i] ?? "",
      type,
      hasDefault: i >= row.types.length - row.defaults,
    }));
    const known = new Set(args.map((a) => a.name));
    if (!argNames.every((a) => known.has(a))) continue;
    if (!args.every((a) => a.hasDefault || argNames.includes(a.name))) continue;
    return {
      schema,
      args,
      returnsSet: row.retset,
      returnsComposite: row.composite,
      readOnly: row.volatility === "s" || row.volatility === "i",
    };
  }
  throw functionNotFound(schema, fn, argNames);
}

async function callFunction(
  options: PostgrestOptions,
  schema: string,
  fn: string,
  args: Record<string, unknown>,
): Promise<unknown> {
  const info = await describeFunction(options.pool, schema, fn, Object.keys(args));
  const client = await options.pool.connect();
  try {
    await client.query("begin");
    if (info.readOnly) await client.query("set transaction read only");
    await client.query(`set local role ${pg.escapeIdentifier(options.role ?? "service_role")}`);
    // One JSON parameter, read into the function's argument types with jsonb_to_record, as PostgREST does: a JSON
    // array becomes an SQL array (ids bigint[]), an object stays jsonb.
    const used = info.args.filter((a) => a.name in args);
    const columns = used.map((a) => `${pg.escapeIdentifier(a.name)} ${a.type}`).join(", ");
    const named = used.map(
      (a) =>
        `${pg.escapeIdentifier(a.name)} => (select r.${pg.escapeIdentifier(a.name)} from jsonb_to_record($1::jsonb) as r(${columns}))`,
    );
    const call = `${pg.escapeIdentifier(schema)}.${pg.escapeIdentifier(fn)}(${named.join(", ")})`;
    // Postgres refuses a parameter that the statement does not use: a call without arguments sends none.
    const params = used.length > 0 ? [JSON.stringify(args)] : [];
    let result: unknown;
    if (info.returnsSet || info.returnsComposite) {
      const { rows } = await client.query(`select * from ${call}`, params);
      result = info.returnsSet ? rows : (rows[0] ?? null);
    } else {
      // Serialized by Postgres, as PostgREST does: a bigint[] arrives as JSON numbers, not node-postgres's strings.
      const { rows } = await client.query(`select to_jsonb(${call}) as result`, params);
      result = rows[0]?.result ?? null;
    }
    await client.query("commit");
    return result;
  } catch (error) {
    await client.query("rollback").catch(() => {});
    if (error instanceof RestError) throw error;
    const e = error as pg.DatabaseError;
    throw new RestError(
      statusForSqlState(e.code),
      e.code ?? "XX000",
      e.message,
      e.detail ?? null,
      e.hint ?? null,
    );
  } finally {
    client.release();
  }
}

/**
 * Checks the keys as Supabase's gateway and PostgREST do: `apikey` must be the service_role key or the secret key;
 * `Authorization`, when sent, must carry a JWT, so a new-style secret key there is refused as an invalid JWT.
 */
function checkKeys(options: PostgrestOptions, req: IncomingMessage): void {
  const keys = [options.serviceRoleKey, options.secretKey].filter((k) => k !== undefined);
  if (!keys.includes(String(req.headers.apikey))) {
    throw new RestError(
      401,
      "PGRST301",
      "Invalid API key",
      null,
      "Double check your Supabase `anon` or `service_role` API key.",
    );
  }
  const bearer = req.headers.authorization;
  if (bearer !== undefined && bearer !== `Bearer ${options.serviceRoleKey}`) {
    throw new RestError(
      401,
      "PGRST301",
      "Invalid JWT",
      "The Authorization header does not carry a valid JWT; new API keys (sb_secret_...) go in `apikey` only.",
    );
  }
}

/** The schema a call runs in: the one `Content-Profile` names, which must be exposed, or the default one. */
function schemaOf(standin: PostgrestStandin, req: IncomingMessage, fn: string): string {
  const profile = req.headers["content-profile"];
  const exposed = standin.exposedSchemas;
  if (profile !== undefined && !exposed.includes(String(profile))) {
    throw new RestError(406, "PGRST106", `The schema must be one of the following: ${exposed.join(", ")}`);
  }
  const schema = profile !== undefined ? String(profile) : exposed[0];
  if (schema === undefined) throw functionNotFound("(no exposed schema)", fn, []);
  return schema;
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString("utf8");
  if (text.trim() === "") return {};
  try {
    return JSON.parse(text);
  } catch {
    throw new RestError(400, "PGRST102", "Empty or invalid json");
  }
}

function send(res: ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { "Content-Type": "application/json; charset=utf-8" });
  res.end(JSON.stringify(body));
}

export async function startPostgrest(options: PostgrestOptions): Promise<PostgrestStandin> {
  const calls: RpcCall[] = [];
  const standin: PostgrestStandin = {
    url: "",
    calls,
    failWith: null,
    exposedSchemas: [...(options.exposedSchemas ?? ["public"])],
    dataApi: options.dataApi ?? true,
    stop: async () => {},
  };

  const server = createServer(async (req, res) => {
    const match = /^\/rest\/v1\/rpc\/([^/?]+)(?:\?.*)?$/.exec(req.url ?? "");
    const fn = match ? decodeURIComponent(match[1] ?? "") : "";
    let args: Record<string, unknown> = {};
    const answer = (status: number, body: unknown) => {
      if (match) calls.push({ fn, args, status });
      send(res, status, body);
    };
    if (!standin.dataApi && (req.url ?? "").startsWith("/rest/v1")) {
      // The gateway no longer routes the Data API: it answers as it does for any path it does not know.
      return answer(404, { message: "no Route matched with those values" });
    }
    try {
      checkKeys(options, req);
      if (!match) throw new RestError(404, "PGRST125", `Invalid path specified in request URL`);
      if (req.method !== "POST")
        throw new RestError(405, "PGRST117", `Unsupported HTTP method: ${req.method}`);
      const schema = schemaOf(standin, req, fn);
      const body = await readJson(req);
      if (typeof body !== "object" || body === null || Array.isArray(body)) {
        throw new RestError(400, "PGRST102", "Expected a JSON object of named arguments");
      }
      args = body as Record<string, unknown>;
      if (standin.failWith !== null)
        throw new RestError(standin.failWith, "PGRST000", "stand-in told to fail");
      answer(200, await callFunction(options, schema, fn, args));
    } catch (error) {
      const e = error instanceof RestError ? error : new RestError(500, "XX000", String(error));
      answer(e.status, { code: e.code, message: e.message, details: e.details, hint: e.hint });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  standin.url = `http://127.0.0.1:${port}`;
  standin.stop = async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return standin;
}
