import pg from "pg";
import {
  connectionConfig,
  directHostRef,
  parseUrl,
  sessionPoolerLocation,
  type Target,
  targetOf,
} from "./connection-config.ts";

export { connectionConfig } from "./connection-config.ts";

/**
 * Connects (TLS chosen by connectionConfig) and turns the usual failures into one message that names the host and
 * the likely cause. The connection string itself is never echoed: it may hold a password.
 */
export async function connect(connectionString: string): Promise<pg.Client> {
  const client = new pg.Client({ ...connectionConfig(connectionString), application_name: "supaqueue" });
  try {
    await client.connect();
  } catch (error) {
    await client.end().catch(() => {});
    throw new Error(describeConnectionError(connectionString, error));
  }
  return client;
}

export function describeConnectionError(connectionString: string, error: unknown): string {
  let url: URL;
  try {
    url = parseUrl(connectionString);
  } catch (invalid) {
    return (invalid as Error).message;
  }
  const target = targetOf(url);
  const where = `${target.host}:${target.port} as ${decodeURIComponent(url.username) || "the default user"}`;
  return `supaqueue: cannot connect to ${where}: ${cause(target, url.searchParams, error)}`;
}

/** Error codes Node gives when the server's certificate does not chain to a CA the connection trusts. */
const UNTRUSTED_CERTIFICATE = new Set([
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_UNTRUSTED",
  "CERT_SIGNATURE_FAILURE",
]);

function cause(target: Target, params: URLSearchParams, error: unknown): string {
  const code = (error as { code?: string }).code ?? "";
  const message = error instanceof Error ? error.message : String(error);
  const ref = directHostRef(target.host);
  if (code === "28P01")
    return "the password or user is wrong (check the database password in the connection string)";
  if (/no encryption/.test(message) || /SSL connection is required/i.test(message)) {
    return "the server accepts only encrypted connections, and this one was not: remove sslmode=disable (or allow) from the URL, or leave sslmode out (TLS is the default for every host that is not local)";
  }
  if (code === "28000")
    return "the server refuses this user from here (its pg_hba.conf), or the user is wrong";
  if (code === "3D000") return "the database does not exist";
  if (code === "ECONNREFUSED")
    return "nothing is listening there (is the host and port right, and is the database running?)";
  if (ref && ["ENETUNREACH", "EHOSTUNREACH", "EADDRNOTAVAIL", "ENOTFOUND", "EAI_AGAIN"].includes(code)) {
    return `${target.host} is the project's direct connection, which Supabase serves over IPv6 only, and this machine cannot reach it over IPv6 (GitHub's hosted runners are IPv4-only). Use the Session pooler string instead: ${sessionPoolerLocation(ref)}`;
  }
  if (code === "ENETUNREACH" || code === "EHOSTUNREACH") return "there is no network route to that address";
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") return "the host name does not resolve";
  if (code === "ETIMEDOUT") return "the connection timed out (a firewall, or the wrong host)";
  if (message === "The server does not support SSL connections") {
    const asked = params.get("sslmode") ?? process.env.PGSSLMODE;
    const why = asked ? `sslmode=${asked}` : "the default for every host that is not local";
    return `the server does not offer TLS, and TLS is what this connection asks for (${why}). If the network to it is trusted (a private or Docker network), use sslmode=disable in the URL; otherwise turn TLS on at the server`;
  }
  if (UNTRUSTED_CERTIFICATE.has(code)) {
    return `the server's TLS certificate is not signed by a CA this connection trusts (${trusted(target, params)}; ${message}). Give the server's CA with sslrootcert=<file> and sslmode=verify-full, or use sslmode=require to encrypt without checking who answers`;
  }
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID") {
    return `the server's TLS certificate is not issued for ${target.host} (${message}). Connect with the host name the certificate names, or use sslmode=verify-ca to check the chain but not the name`;
  }
  if (code === "CERT_HAS_EXPIRED" || code === "CERT_NOT_YET_VALID") {
    return `the server's TLS certificate is outside its validity dates (${message}); check this machine's clock and the server's certificate`;
  }
  return message;
}

/** Which CAs the failed verification used, in words. */
function trusted(target: Target, params: URLSearchParams): string {
  const rootCert = params.get("sslrootcert") ?? process.env.PGSSLROOTCERT;
  if (rootCert && rootCert !== "system") return `checked against the CA in ${rootCert}`;
  if (!rootCert && target.kind === "supabase") return "checked against Supabase's root CA and the public CAs";
  return "checked against Node's default CAs";
}
