import pg from "pg";
import { describe, expect, test } from "vitest";
import { startEmbeddedPostgres } from "../src/local/embedded.ts";

describe("embedded Postgres (what dev uses when no database is given)", () => {
  test("starts with no install, accepts connections, and stop() removes its data", async () => {
    const server = await startEmbeddedPostgres();
    const url = new URL(server.adminUrl);
    try {
      const client = new pg.Client({ connectionString: server.adminUrl });
      await client.connect();
      const { rows } = await client.query(
        "select current_setting('server_version_num')::int / 10000 as major, rolsuper from pg_roles where rolname = current_user",
      );
      await client.end();
      expect(rows[0]).toEqual({ major: 15, rolsuper: true });
    } finally {
      await server.stop();
    }
    expect(url.hostname).toBe("127.0.0.1");
    const leftover = new pg.Client({ connectionString: server.adminUrl, connectionTimeoutMillis: 1000 });
    await expect(leftover.connect()).rejects.toThrow();
    await leftover.end().catch(() => {});
  }, 60_000);
});
