import { execFileSync } from "node:child_process";
import { chownSync, existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { hasPgBinaries, type PgCluster, startPgCluster } from "./pg-cluster.ts";

const hasOpenssl = (() => {
  try {
    execFileSync("openssl", ["version"], { stdio: "pipe" });
    return true;
  } catch {
    return false;
  }
})();

/** Why the TLS cluster cannot run here, or null when it can. */
export const tlsClusterMissing: string | null = !hasPgBinaries
  ? "the Postgres 15 server binaries (/usr/lib/postgresql/15/bin) are not installed"
  : !hasOpenssl
    ? "openssl is not on PATH"
    : null;

export interface TlsCluster extends PgCluster {
  /** The CA that signed the server's certificate (for 127.0.0.1 and localhost only). */
  caFile: string;
  /** A CA that signed nothing the server has. */
  otherCaFile: string;
}

function openssl(dir: string, args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
}

/** `openssl req` with a new EC P-256 key (quick to make) written to `<name>.key`; `output` says what it writes. */
function newKey(dir: string, name: string, subject: string, output: string[]): void {
  const key = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    `${name}.key`,
  ];
  openssl(dir, ["req", "-new", ...key, "-subj", subject, ...output]);
}

/** A CA of its own, valid two days. */
function makeCa(dir: string, name: string): void {
  newKey(dir, name, `/CN=Supaqueue test ${name}`, ["-x509", "-days", "2", "-out", `${name}.crt`]);
}

/**
 * A Postgres 15 cluster that speaks TLS only: its certificate is signed by a throwaway test CA and names
 * 127.0.0.1 and localhost, and its pg_hba.conf has `hostssl` lines and no `host` line, so the server itself refuses
 * a plain connection. It also listens on 127.0.0.2, an address its certificate does not name.
 */
export async function startTlsCluster(): Promise<TlsCluster> {
  const cluster = await startPgCluster("tls", ["listen_addresses='127.0.0.1,127.0.0.2'"], (dir) => {
    makeCa(dir, "ca");
    makeCa(dir, "other-ca");
    newKey(dir, "server", "/CN=localhost", ["-out", "server.csr"]);
    writeFileSync(
      join(dir, "server.ext"),
      "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    );
    openssl(dir, [
      "x509",
      "-req",
      "-in",
      "server.csr",
      "-CA",
      "ca.crt",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      "server.crt",
      "-days",
      "2",
      "-extfile",
      "server.ext",
    ]);
    // Postgres reads its key only when the key belongs to the user it runs as and nobody else may read it.
    if (process.getuid?.() === 0) {
      const uid = Number(execFileSync("id", ["-u", "postgres"]).toString().trim());
      const gid = Number(execFileSync("id", ["-g", "postgres"]).toString().trim());
      chownSync(join(dir, "server.key"), uid, gid);
    }
    execFileSync("chmod", ["0600", join(dir, "server.key")]);
    writeFileSync(join(dir, "pg_hba.conf"), "local all all trust\nhostssl all all 127.0.0.0/8 trust\n");
    return [
      "ssl=on",
      `ssl_cert_file=${join(dir, "server.crt")}`,
      `ssl_key_file=${join(dir, "server.key")}`,
      `hba_file=${join(dir, "pg_hba.conf")}`,
    ];
  });
  const caFile = join(cluster.dir, "ca.crt");
  if (!existsSync(caFile)) throw new Error("the test CA was not written");
  return { ...cluster, caFile, otherCaFile: join(cluster.dir, "other-ca.crt") };
}
