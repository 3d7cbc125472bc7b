import { X509Certificate } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type PeerCertificate, rootCertificates } from "node:tls";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { connect, connectionConfig, describeConnectionError } from "../src/db/connect.ts";
import { SESSION_POOLER_PLACE } from "../src/db/connection-config.ts";
import { SUPABASE_ROOT_CA_2021 } from "../src/db/supabase-root-ca.ts";
import { projectRoot } from "../src/paths.ts";
import { tempDir } from "./support/temp-dir.ts";
import { startTlsCluster, type TlsCluster, tlsClusterMissing } from "./support/tls-cluster.ts";

const NO_ENV = {};
const files = tempDir("tls-unit");
const CA_FILE = join(files, "ca.pem");
writeFileSync(CA_FILE, "-----BEGIN CERTIFICATE-----\ntest\n-----END CERTIFICATE-----\n");

const POOLER =
  "postgres://postgres.abcdefghijklmnopqrst:pw@aws-0-eu-central-1.pooler.supabase.com:5432/postgres";
const DIRECT = "postgres://postgres:pw@db.abcdefghijklmnopqrst.supabase.co:5432/postgres";
const OTHER = "postgres://app:pw@db.example.com:5432/app";
const LOCAL = "postgres://postgres@127.0.0.1:5432/postgres";

type Ssl = Exclude<pg.ClientConfig["ssl"], boolean | undefined>;

function config(url: string, env: NodeJS.ProcessEnv = NO_ENV): pg.ClientConfig {
  return connectionConfig(url, env);
}

/** The ssl object node-pg will really use once it has parsed the config's connection string itself. */
function sslNodePgUses(cfg: pg.ClientConfig): unknown {
  return (new pg.Client(cfg) as unknown as { connectionParameters: { ssl: unknown } }).connectionParameters
    .ssl;
}

function ssl(url: string, env: NodeJS.ProcessEnv = NO_ENV): Ssl {
  const cfg = config(url, env);
  expect(typeof cfg.ssl).toBe("object");
  return cfg.ssl as Ssl;
}

/** What the config's checkServerIdentity says of a certificate issued for `name`. */
function identity(s: Ssl, name: string, host: string): Error | undefined {
  const cert = { subject: { CN: name }, subjectaltname: `DNS:${name}` } as unknown as PeerCertificate;
  return s.checkServerIdentity?.(host, cert);
}

describe("connectionConfig: the default, per host", () => {
  test.each([
    "postgres://postgres@localhost/postgres",
    "postgres://postgres@127.0.0.1:5432/postgres",
    "postgres://postgres@127.1.2.3:5432/postgres",
    "postgres://postgres@[::1]:5432/postgres",
    "postgres://postgres@app.localhost:5432/postgres",
    "postgres://postgres@/postgres?host=/var/run/postgresql",
    "postgres:///postgres",
    "/var/run/postgresql postgres",
  ])("a local host or socket gets no TLS: %s", (url) => {
    const cfg = config(url);
    expect(cfg.ssl).toBe(false);
    expect(sslNodePgUses(cfg)).toBe(false);
  });

  test("a Supabase pooler host gets verify-full against Supabase's root CA and the public CAs", () => {
    const s = ssl(POOLER);
    expect(s.rejectUnauthorized).toBe(true);
    expect(s.ca).toEqual([SUPABASE_ROOT_CA_2021, ...rootCertificates]);
    expect(identity(s, "aws-0-eu-central-1.pooler.supabase.com", "ignored")).toBeUndefined();
    expect(identity(s, "evil.example.com", "aws-0-eu-central-1.pooler.supabase.com")).toBeInstanceOf(Error);
  });

  test("a Supabase direct host gets the same", () => {
    const s = ssl(DIRECT);
    expect(s.ca).toEqual([SUPABASE_ROOT_CA_2021, ...rootCertificates]);
    expect(identity(s, "db.abcdefghijklmnopqrst.supabase.co", "x")).toBeUndefined();
  });

  test("any other host gets verify-full against Node's default CAs (no ca of its own)", () => {
    const s = ssl(OTHER);
    expect(s.rejectUnauthorized).toBe(true);
    expect(s.ca).toBeUndefined();
    expect(identity(s, "db.example.com", "x")).toBeUndefined();
    expect(identity(s, "other.example.com", "x")).toBeInstanceOf(Error);
  });

  test("the host name is checked against the URL's host, not the name node-pg passes (none for an IP)", () => {
    const s = ssl("postgres://u@10.1.2.3:5432/db?sslmode=verify-full");
    const forIp = { subject: {}, subjectaltname: "IP Address:10.1.2.3" } as unknown as PeerCertificate;
    expect(s.checkServerIdentity?.("localhost", forIp)).toBeUndefined();
    expect(identity(s, "localhost", "localhost")).toBeInstanceOf(Error);
  });

  test("the URL is passed on untouched when it has no ssl parameter", () => {
    expect(config(`${POOLER}?application_name=x`).connectionString).toBe(`${POOLER}?application_name=x`);
  });
});

describe("connectionConfig: each sslmode with libpq's meaning", () => {
  test("disable and allow: no TLS, for any host", () => {
    for (const url of [`${POOLER}?sslmode=disable`, `${OTHER}?sslmode=allow`]) {
      expect(config(url).ssl).toBe(false);
    }
  });

  test("prefer: encrypted without verification for a remote host, plain for a local one", () => {
    expect(ssl(`${OTHER}?sslmode=prefer`)).toEqual({ rejectUnauthorized: false });
    expect(config(`${LOCAL}?sslmode=prefer`).ssl).toBe(false);
  });

  test("require: encrypted without verification, even for Supabase (unlike node-pg's require)", () => {
    expect(ssl(`${POOLER}?sslmode=require`)).toEqual({ rejectUnauthorized: false });
    expect(ssl(`${LOCAL}?sslmode=require`)).toEqual({ rejectUnauthorized: false });
  });

  test("require with sslrootcert: as verify-ca (chain checked, name not)", () => {
    const s = ssl(`${OTHER}?sslmode=require&sslrootcert=${CA_FILE}`);
    expect(s.rejectUnauthorized).toBe(true);
    expect(s.ca).toContain("BEGIN CERTIFICATE");
    expect(identity(s, "anything.example.org", "db.example.com")).toBeUndefined();
  });

  test("verify-ca: the given CA, or Supabase's root alone for a Supabase host; no name check", () => {
    const given = ssl(`${OTHER}?sslmode=verify-ca&sslrootcert=${CA_FILE}`);
    expect(given.ca).toContain("BEGIN CERTIFICATE");
    const supabase = ssl(`${POOLER}?sslmode=verify-ca`);
    expect(supabase.ca).toEqual([SUPABASE_ROOT_CA_2021]);
    expect(
      identity(supabase, "other.supabase.com", "aws-0-eu-central-1.pooler.supabase.com"),
    ).toBeUndefined();
  });

  test("verify-ca without a CA for another host is refused: public CAs without a name check prove nothing", () => {
    expect(() => config(`${OTHER}?sslmode=verify-ca`)).toThrow(/verify-ca needs sslrootcert=/);
  });

  test("verify-full with sslrootcert: that CA only, and the name", () => {
    const s = ssl(`${POOLER}?sslmode=verify-full&sslrootcert=${CA_FILE}`);
    expect(s.ca).toContain("BEGIN CERTIFICATE");
    expect(identity(s, "other.example.com", "x")).toBeInstanceOf(Error);
  });

  test("sslrootcert=system: Node's default CAs, and only with verify-full (its default, even for a local host)", () => {
    expect(ssl(`${POOLER}?sslrootcert=system`).ca).toBeUndefined();
    expect(ssl(`${LOCAL}?sslrootcert=system`).rejectUnauthorized).toBe(true);
    expect(ssl(`${POOLER}?sslmode=verify-full&sslrootcert=system`).ca).toBeUndefined();
    expect(() => config(`${POOLER}?sslmode=require&sslrootcert=system`)).toThrow(/needs sslmode=verify-full/);
  });

  test("an unknown sslmode names the valid ones", () => {
    expect(() => config(`${POOLER}?sslmode=no-verify`)).toThrow(
      "sslmode=no-verify in the database URL is not a libpq sslmode; use one of disable, allow, prefer, require, verify-ca, verify-full",
    );
  });

  test("an unreadable sslrootcert says which file and why, without the URL", () => {
    const error = (() => {
      try {
        config(`${POOLER.replace(":pw@", ":secret-pw@")}?sslrootcert=/nonexistent/ca.pem`);
      } catch (e) {
        return e as Error;
      }
    })();
    expect(error?.message).toBe("supaqueue: cannot read the sslrootcert file /nonexistent/ca.pem (ENOENT)");
  });

  test("PGSSLMODE and PGSSLROOTCERT apply when the URL has none, as for libpq", () => {
    expect(() => config(POOLER, { PGSSLMODE: "on" })).toThrow(
      /sslmode=on in PGSSLMODE is not a libpq sslmode/,
    );
    expect(config(POOLER, { PGSSLMODE: "disable" }).ssl).toBe(false);
    expect(ssl(OTHER, { PGSSLMODE: "verify-ca", PGSSLROOTCERT: CA_FILE }).ca).toContain("BEGIN CERTIFICATE");
    expect(config(`${POOLER}?sslmode=require`, { PGSSLMODE: "disable" }).ssl).toEqual({
      rejectUnauthorized: false,
    });
  });

  test("node-pg's ssl= and libpq's requiressl= are read as the sslmode they stand for", () => {
    expect(config(`${OTHER}?ssl=false`).ssl).toBe(false);
    expect(ssl(`${OTHER}?ssl=no-verify`)).toEqual({ rejectUnauthorized: false });
    expect(ssl(`${OTHER}?requiressl=1`)).toEqual({ rejectUnauthorized: false });
    expect(ssl(`${POOLER}?ssl=true`).ca).toEqual([SUPABASE_ROOT_CA_2021, ...rootCertificates]);
  });

  test("client certificate, key and TLS bounds are read like libpq's", () => {
    const s = ssl(
      `${OTHER}?sslmode=require&sslcert=${CA_FILE}&sslkey=${CA_FILE}&ssl_min_protocol_version=tlsv1.2`,
    );
    expect(s.cert).toContain("BEGIN CERTIFICATE");
    expect(s.key).toContain("BEGIN CERTIFICATE");
    expect(s.minVersion).toBe("TLSv1.2");
  });
});

describe("connectionConfig: node-pg gets no ssl parameter to re-parse", () => {
  test.each([
    `${POOLER}?sslmode=require`,
    `${POOLER}?sslmode=verify-full&uselibpqcompat=true&sslrootcert=${CA_FILE}`,
    `${OTHER}?sslmode=disable&application_name=x`,
    `${OTHER}?ssl=true&sslnegotiation=direct&sslsni=1&sslcompression=0`,
    `${LOCAL}?sslmode=verify-ca&sslrootcert=${CA_FILE}`,
    "postgres://postgres@/postgres?host=/var/run/postgresql&sslmode=require",
  ])("%s", (url) => {
    const cfg = config(url);
    const left = new URLSearchParams(cfg.connectionString?.split("?")[1] ?? "");
    for (const name of left.keys()) expect(name).not.toMatch(/ssl|uselibpqcompat/);
    expect(sslNodePgUses(cfg)).toBe(cfg.ssl);
  });

  test("a socket URL without a host keeps its empty host", () => {
    const cfg = config("postgres://postgres@/postgres?host=/var/run/postgresql&sslmode=require");
    expect(cfg.connectionString).toBe("postgres://postgres@/postgres?host=%2Fvar%2Frun%2Fpostgresql");
    expect(cfg.ssl).toBe(false);
  });

  test("other parameters and the credentials survive", () => {
    const cfg = config(`${OTHER}?sslmode=require&application_name=my%20app&options=-c%20search_path%3Dx`);
    const parsed = new pg.Client(cfg) as unknown as {
      connectionParameters: { user: string; password: string; application_name: string; options: string };
    };
    expect(parsed.connectionParameters.user).toBe("app");
    expect(parsed.connectionParameters.password).toBe("pw");
    expect(parsed.connectionParameters.application_name).toBe("my app");
    expect(parsed.connectionParameters.options).toBe("-c search_path=x");
  });
});

describe("connectionConfig: Supabase's transaction pooler is refused", () => {
  test("port 6543 on the shared pooler, with the reason and where the Session pooler string is", () => {
    expect(() => config(POOLER.replace(":5432/", ":6543/"))).toThrow(
      /aws-0-eu-central-1\.pooler\.supabase\.com:6543 is Supabase's transaction pooler.*session advisory lock.*prepared statements.*Connect button → Session pooler.*port 5432/,
    );
  });

  test("port 6543 on the direct host (the dedicated PgBouncer) too, naming the project's pooler user", () => {
    expect(() => config(DIRECT.replace(":5432/", ":6543/"))).toThrow(/user postgres\.abcdefghijklmnopqrst/);
  });

  test("port 6543 elsewhere is just a port", () => {
    expect(config("postgres://u@db.example.com:6543/db").ssl).toBeTruthy();
  });
});

describe("describeConnectionError", () => {
  const errno = (code: string, message = code) => Object.assign(new Error(message), { code });

  test.each([
    "ENETUNREACH",
    "EHOSTUNREACH",
    "EADDRNOTAVAIL",
    "ENOTFOUND",
  ])("%s on a direct db.<ref> host: IPv6-only, use the Session pooler", (code) => {
    expect(describeConnectionError(DIRECT, errno(code))).toBe(
      "supaqueue: cannot connect to db.abcdefghijklmnopqrst.supabase.co:5432 as postgres: db.abcdefghijklmnopqrst.supabase.co is the project's direct connection, which Supabase serves over IPv6 only, and this machine cannot reach it over IPv6 (GitHub's hosted runners are IPv4-only). Use the Session pooler string instead: the project dashboard's Connect button → Session pooler (user postgres.abcdefghijklmnopqrst, host aws-0-<region>.pooler.supabase.com: copy it, the number and region vary; port 5432)",
    );
  });

  test("the same codes elsewhere keep their plain meaning", () => {
    expect(describeConnectionError(OTHER, errno("ENETUNREACH"))).toMatch(/no network route/);
  });

  test("a certificate from an unknown CA says which CAs were tried and what to do", () => {
    const message = describeConnectionError(
      POOLER,
      errno("SELF_SIGNED_CERT_IN_CHAIN", "self-signed certificate in certificate chain"),
    );
    expect(message).toMatch(/not signed by a CA this connection trusts/);
    expect(message).toMatch(/Supabase's root CA/);
    expect(message).toMatch(/sslrootcert=<file>/);
  });

  test("a server without TLS: sslmode=disable, only for a trusted network", () => {
    const noTls = new Error("The server does not support SSL connections");
    expect(describeConnectionError(OTHER, noTls)).toMatch(
      /does not offer TLS.*\(the default for every host that is not local\).*trusted.*sslmode=disable/,
    );
    expect(describeConnectionError(`${LOCAL}?sslmode=require`, noTls)).toMatch(
      /asks for \(sslmode=require\)/,
    );
  });

  test("Supabase's SSL enforcement refusing a plain connection", () => {
    expect(
      describeConnectionError(`${POOLER}?sslmode=disable`, errno("XX000", "SSL connection is required")),
    ).toMatch(/accepts only encrypted connections.*remove sslmode=disable/);
  });

  test("never echoes the password", () => {
    const url = "postgres://u:s3cret-pw@db.example.com:5432/db?sslmode=disable";
    for (const error of [errno("ENOTFOUND"), errno("28P01"), new Error("x")]) {
      expect(describeConnectionError(url, error)).not.toContain("s3cret-pw");
    }
    expect(describeConnectionError("not a url s3cret-pw", new Error("x"))).not.toContain("s3cret-pw");
  });
});

test("README, action.yml and the deploy workflow name the Session pooler's place in the same words as the errors", () => {
  for (const file of ["README.md", "action.yml", ".github/workflows/deploy.yml"]) {
    expect(readFileSync(join(projectRoot(), file), "utf8"), file).toContain(SESSION_POOLER_PLACE);
  }
});

describe("the shipped Supabase root CA", () => {
  test("is Supabase Root 2021 CA, pinned by its SHA-256 fingerprint", () => {
    const cert = new X509Certificate(SUPABASE_ROOT_CA_2021);
    expect(cert.fingerprint256).toBe(
      "80:70:25:AD:50:D4:ED:21:9D:2C:9C:7D:29:9C:00:4F:82:4E:B0:0C:F7:F6:5A:FE:F6:07:D0:7B:72:E6:CA:FA",
    );
    expect(cert.subject).toBe("C=US\nST=Delware\nL=New Castle\nO=Supabase Inc\nCN=Supabase Root 2021 CA");
    expect(cert.issuer).toBe(cert.subject);
    expect(cert.ca).toBe(true);
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(new Date(cert.validFrom).toISOString()).toBe("2021-04-28T10:56:53.000Z");
    expect(new Date(cert.validTo).toISOString()).toBe("2031-04-26T10:56:53.000Z");
  });
});

describe.skipIf(tlsClusterMissing !== null)(
  `a Postgres that speaks TLS only${tlsClusterMissing ? ` (skipped: ${tlsClusterMissing})` : ""}`,
  () => {
    let cluster: TlsCluster;
    beforeAll(async () => {
      cluster = await startTlsCluster();
    }, 30_000);
    afterAll(() => cluster?.stop());

    const url = (query: string, host = "127.0.0.1") =>
      `postgres://postgres@${host}:${cluster.port}/postgres${query ? `?${query}` : ""}`;

    /** Connects as supaqueue does and answers whether the session is encrypted. */
    async function encrypted(connectionString: string): Promise<boolean> {
      const client = await connect(connectionString);
      try {
        const { rows } = await client.query<{ ssl: boolean }>(
          "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
        );
        return rows[0]?.ssl ?? false;
      } finally {
        await client.end();
      }
    }

    test("verify-full with the server's CA connects, encrypted", async () => {
      expect(await encrypted(url(`sslmode=verify-full&sslrootcert=${cluster.caFile}`))).toBe(true);
    });

    test("verify-full against another CA is refused, saying which CA was tried and what to do", async () => {
      await expect(encrypted(url(`sslmode=verify-full&sslrootcert=${cluster.otherCaFile}`))).rejects.toThrow(
        `supaqueue: cannot connect to 127.0.0.1:${cluster.port} as postgres: the server's TLS certificate is not signed by a CA this connection trusts (checked against the CA in ${cluster.otherCaFile}`,
      );
    });

    test("verify-full to an address the certificate does not name is refused; verify-ca accepts it", async () => {
      await expect(
        encrypted(url(`sslmode=verify-full&sslrootcert=${cluster.caFile}`, "127.0.0.2")),
      ).rejects.toThrow(/not issued for 127\.0\.0\.2 .*use sslmode=verify-ca/);
      expect(await encrypted(url(`sslmode=verify-ca&sslrootcert=${cluster.caFile}`, "127.0.0.2"))).toBe(true);
    });

    test("require encrypts without a CA; with sslrootcert it checks the chain, as in libpq", async () => {
      expect(await encrypted(url("sslmode=require"))).toBe(true);
      await expect(encrypted(url(`sslmode=require&sslrootcert=${cluster.otherCaFile}`))).rejects.toThrow(
        /not signed by a CA this connection trusts/,
      );
    });

    test("sslmode=disable is refused by the server, with what to change", async () => {
      await expect(encrypted(url("sslmode=disable"))).rejects.toThrow(
        `supaqueue: cannot connect to 127.0.0.1:${cluster.port} as postgres: the server accepts only encrypted connections, and this one was not: remove sslmode=disable`,
      );
    });

    test("a local host gets no TLS by default, so this server refuses it the same way", async () => {
      await expect(encrypted(url(""))).rejects.toThrow(/accepts only encrypted connections/);
    });
  },
);
