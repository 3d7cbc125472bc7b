import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import {
  type ConnectionOptions,
  checkServerIdentity,
  rootCertificates as tlsRootCertificates,
} from "node:tls";
import type pg from "pg";
import { SUPABASE_ROOT_CA_2021 } from "./supabase-root-ca.ts";

/**
 * How a database URL becomes a node-pg config, with TLS chosen the way libpq chooses it.
 *
 * node-pg parses ssl parameters out of a connection string itself and lets them overwrite the `ssl` object it is
 * given (any `sslmode` makes a fresh one), and its own meanings differ from libpq's (its `require` verifies the
 * server against the public CAs, so it fails against Supabase). So every ssl parameter is taken out of the URL here
 * and `ssl` is built from it, honouring each sslmode as libpq does:
 *
 * - disable: no TLS. allow: no TLS (libpq tries plain first; node-pg cannot fall back, so plain is what it gets).
 * - prefer: TLS without verification for any host that is not local, no TLS for a local one. libpq tries TLS and
 *   falls back to plain when the server has none; node-pg cannot fall back, so the likely case is chosen per host.
 * - require: TLS without verification; with sslrootcert given, as verify-ca (libpq does the same).
 * - verify-ca: TLS, the chain checked against sslrootcert (for a Supabase host, Supabase's root CA), the name not.
 * - verify-full: TLS, chain and host name checked, against sslrootcert, else for a Supabase host Supabase's root
 *   CA plus the public CAs, else Node's default CAs.
 * - no sslmode: no TLS for a local host (localhost, 127.0.0.0/8, ::1, a Unix socket); verify-full for any other.
 *
 * `sslrootcert=system` means Node's default CAs and needs verify-full, as in libpq. PGSSLMODE and PGSSLROOTCERT
 * apply when the URL has no sslmode or sslrootcert, as for libpq. A Unix socket never uses TLS (libpq neither).
 */

const SSL_MODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] as const;
type SslMode = (typeof SSL_MODES)[number];

/** Every TLS parameter libpq or node-pg reads from a URL: all leave the URL, so node-pg has none to re-parse. */
const SSL_PARAMETERS = [
  "sslmode",
  "ssl",
  "requiressl",
  "sslrootcert",
  "sslcert",
  "sslkey",
  "sslpassword",
  "sslcrl",
  "sslcrldir",
  "ssl_min_protocol_version",
  "ssl_max_protocol_version",
  // Taken out and not needed: node-pg always sends SNI for a host name, and negotiates TLS the way every
  // server accepts (sslnegotiation=direct only saves a round trip on Postgres 17).
  "sslsni",
  "sslnegotiation",
  "sslcompression",
  "uselibpqcompat",
] as const;

const TLS_VERSIONS = ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"] as const;

/** The port of Supabase's transaction poolers (Supavisor on the shared pooler, PgBouncer on db.<ref>). */
const TRANSACTION_POOLER_PORT = 6543;

type HostKind = "socket" | "local" | "supabase" | "other";

/** Where a connection goes, as far as TLS and Supabase's rules care. */
export interface Target {
  host: string;
  port: number;
  kind: HostKind;
}

/** Turns a postgres:// URL into a node-pg config whose `ssl` follows the URL's sslmode with libpq's meaning. */
export function connectionConfig(
  connectionString: string,
  env: NodeJS.ProcessEnv = process.env,
): pg.ClientConfig {
  // node-pg's own short form for a socket: "/var/run/postgresql dbname".
  if (connectionString.startsWith("/")) return { connectionString, ssl: false };
  const url = parseUrl(connectionString);
  const target = targetOf(url, env);
  refuseTransactionPooler(target);
  const params = url.searchParams;
  const ssl = sslFor(target, params, env);
  if (!SSL_PARAMETERS.some((name) => params.has(name))) return { connectionString, ssl };
  for (const name of SSL_PARAMETERS) params.delete(name);
  return { connectionString: url.toString().replace(`@${NO_HOST}/`, "@/"), ssl };
}

// Stands in for the empty host of "postgres://user@/db?host=/socket", which WHATWG URLs refuse (node-pg does the same).
const NO_HOST = "no-host.invalid";

/** The URL as a URL, or an error that does not repeat it (it may hold a password). */
export function parseUrl(connectionString: string): URL {
  for (const candidate of [connectionString, connectionString.replace("@/", `@${NO_HOST}/`)]) {
    try {
      return new URL(candidate);
    } catch {}
  }
  throw new Error("supaqueue: the database URL is not a valid postgres:// connection string");
}

/** The host and port node-pg will connect to (a `host` parameter wins, then PGHOST, then localhost). */
export function targetOf(url: URL, env: NodeJS.ProcessEnv = process.env): Target {
  const host =
    url.searchParams.get("host") ||
    (url.hostname === NO_HOST ? "" : decodeURIComponent(url.hostname).replace(/^\[(.+)\]$/, "$1")) ||
    env.PGHOST ||
    "localhost";
  const port = Number(url.searchParams.get("port") || url.port || env.PGPORT || 5432);
  return { host, port, kind: hostKind(host) };
}

function hostKind(host: string): HostKind {
  const name = host.toLowerCase();
  if (name.startsWith("/")) return "socket";
  if (name === "localhost" || name.endsWith(".localhost") || name === "::1") return "local";
  if (isIP(name) === 4 && name.startsWith("127.")) return "local";
  if (name.endsWith(".supabase.co") || name.endsWith(".supabase.com")) return "supabase";
  return "other";
}

/** The project ref of a direct host (db.<ref>.supabase.co), which is IPv6-only unless the project bought IPv4. */
export function directHostRef(host: string): string | null {
  return /^db\.([a-z0-9]+)\.supabase\.co$/i.exec(host)?.[1] ?? null;
}

/**
 * Where the dashboard shows the Session pooler string, in its own words (Supabase's docs: "Get your project's
 * Session pooler connection string from your project dashboard by clicking Connect"). README.md, action.yml and
 * the deploy workflow say the same words; test/db-connect.test.ts checks that they do.
 */
export const SESSION_POOLER_PLACE = "the project dashboard's Connect button → Session pooler";

/** The Session pooler string's place and shape; `ref` fills in the pooler's user name. */
export function sessionPoolerLocation(ref = "<ref>"): string {
  return `${SESSION_POOLER_PLACE} (user postgres.${ref}, host aws-0-<region>.pooler.supabase.com: copy it, the number and region vary; port 5432)`;
}

/**
 * Port 6543 of a Supabase host is a transaction pooler: each transaction runs on whichever server connection is
 * free, so what a session holds does not carry over. The installer holds a session advisory lock across its
 * migrations, and node-pg's named prepared statements need their session too, so it is refused before connecting.
 */
function refuseTransactionPooler({ host, port, kind }: Target): void {
  if (kind !== "supabase" || port !== TRANSACTION_POOLER_PORT) return;
  throw new Error(
    `supaqueue: ${host}:${port} is Supabase's transaction pooler, which Supaqueue cannot use: it hands each ` +
      "transaction to whichever server connection is free, so the session advisory lock the installer holds while " +
      `it migrates (and prepared statements) would not hold. Use the Session pooler string instead: ${sessionPoolerLocation(
        directHostRef(host) ?? undefined,
      )}.`,
  );
}

function sslFor(target: Target, params: URLSearchParams, env: NodeJS.ProcessEnv): pg.ClientConfig["ssl"] {
  if (target.kind === "socket") return false;
  const rootCert = params.get("sslrootcert") ?? env.PGSSLROOTCERT ?? null;
  const mode = sslModeOf(params, env, rootCert);
  const base = baseSsl(mode, target, rootCert);
  return base ? { ...base, ...clientOptions(params) } : false;
}

/** The sslmode asked for: the URL's, else node-pg's `ssl=`, else PGSSLMODE; null when none (the default). */
function sslModeOf(params: URLSearchParams, env: NodeJS.ProcessEnv, rootCert: string | null): SslMode | null {
  const fromUrl = params.get("sslmode") ?? legacySslMode(params);
  const given = fromUrl ?? (env.PGSSLMODE || null);
  if (given !== null && !(SSL_MODES as readonly string[]).includes(given)) {
    const where = fromUrl === null ? "PGSSLMODE" : "the database URL";
    throw new Error(
      `supaqueue: sslmode=${given} in ${where} is not a libpq sslmode; use one of ${SSL_MODES.join(", ")}`,
    );
  }
  const mode = given as SslMode | null;
  // libpq: sslrootcert=system makes verify-full the default, and refuses any weaker mode.
  if (rootCert === "system" && mode === null) return "verify-full";
  if (rootCert === "system" && mode !== "verify-full") {
    throw new Error(
      `supaqueue: sslrootcert=system trusts every public CA, so it needs sslmode=verify-full (not ${mode}), as in libpq`,
    );
  }
  return mode;
}

/** node-pg's `ssl=` and libpq's old `requiressl=`, read as the sslmode they stand for. */
function legacySslMode(params: URLSearchParams): SslMode | null {
  const ssl = params.get("ssl");
  if (ssl !== null) {
    if (ssl === "true" || ssl === "1") return "verify-full";
    if (ssl === "false" || ssl === "0") return "disable";
    if (ssl === "no-verify") return "require";
    throw new Error("supaqueue: ssl= in the database URL takes true, false or no-verify; prefer sslmode=");
  }
  const requiressl = params.get("requiressl");
  if (requiressl !== null) return requiressl === "1" ? "require" : "prefer";
  return null;
}

function baseSsl(mode: SslMode | null, target: Target, rootCert: string | null): ConnectionOptions | null {
  const local = target.kind === "local";
  switch (mode ?? (local ? "disable" : "verify-full")) {
    case "disable":
    case "allow":
      return null;
    case "prefer":
      return local ? null : { rejectUnauthorized: false };
    case "require":
      return rootCert === null ? { rejectUnauthorized: false } : verifyCa(target, rootCert);
    case "verify-ca":
      return verifyCa(target, rootCert);
    default:
      return verifyFull(target, rootCert);
  }
}

/** The chain against a private CA, any name: so the CA must be given (or be Supabase's, for a Supabase host). */
function verifyCa(target: Target, rootCert: string | null): ConnectionOptions {
  const ca =
    rootCert === null ? (target.kind === "supabase" ? [SUPABASE_ROOT_CA_2021] : null) : readCa(rootCert);
  if (ca === null) {
    throw new Error(
      "supaqueue: sslmode=verify-ca needs sslrootcert=<file of the server's CA>: checked against the public CAs " +
        "without its name, a certificate anyone can get would pass. Use sslmode=verify-full for a public certificate.",
    );
  }
  return { rejectUnauthorized: true, ca, checkServerIdentity: () => undefined };
}

/**
 * The chain and the host name. For a Supabase host without sslrootcert: Supabase's root CA, which every Supabase
 * database endpoint chains to today, plus the public CAs, so that a move to a public certificate keeps working
 * (only Supabase can get one for its own domains). The pooler's certificate names its own host: projects that
 * verify the pooler with `openssl s_client -verify_hostname` and verify-full against this root report success, so
 * the name is checked there too; if it ever fails, the error message offers sslmode=verify-ca.
 */
function verifyFull(target: Target, rootCert: string | null): ConnectionOptions {
  const ca =
    rootCert !== null && rootCert !== "system"
      ? readCa(rootCert)
      : rootCert === null && target.kind === "supabase"
        ? [SUPABASE_ROOT_CA_2021, ...tlsRootCertificates]
        : undefined;
  // Checked against the host of the URL: node-pg sends no SNI for an IP address, and Node would then compare
  // the certificate with "localhost".
  const host = target.host;
  return {
    rejectUnauthorized: true,
    ...(ca ? { ca } : {}),
    checkServerIdentity: (_, cert) => checkServerIdentity(host, cert),
  };
}

function readCa(path: string): string {
  return readSslFile("sslrootcert", path);
}

/** The client certificate, key, revocation list and protocol bounds, as libpq reads them. */
function clientOptions(params: URLSearchParams): ConnectionOptions {
  const options: ConnectionOptions = {};
  const file = (name: string) => {
    const path = params.get(name);
    return path === null ? undefined : readSslFile(name, path);
  };
  const cert = file("sslcert");
  const key = file("sslkey");
  const crl = file("sslcrl");
  if (cert !== undefined) options.cert = cert;
  if (key !== undefined) options.key = key;
  if (crl !== undefined) options.crl = crl;
  const passphrase = params.get("sslpassword");
  if (passphrase !== null) options.passphrase = passphrase;
  if (params.has("sslcrldir")) {
    throw new Error(
      "supaqueue: sslcrldir is not supported here; give the revocation list as one file with sslcrl=",
    );
  }
  const min = tlsVersion(params, "ssl_min_protocol_version");
  const max = tlsVersion(params, "ssl_max_protocol_version");
  if (min) options.minVersion = min;
  if (max) options.maxVersion = max;
  return options;
}

function tlsVersion(params: URLSearchParams, name: string): (typeof TLS_VERSIONS)[number] | undefined {
  const value = params.get(name);
  if (value === null || value === "") return undefined;
  const version = TLS_VERSIONS.find((v) => v.toLowerCase() === value.toLowerCase());
  if (!version) throw new Error(`supaqueue: ${name}=${value} is not one of ${TLS_VERSIONS.join(", ")}`);
  return version;
}

function readSslFile(parameter: string, path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new Error(`supaqueue: cannot read the ${parameter} file ${path} (${reason})`);
  }
}
