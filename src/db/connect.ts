import pg from "pg";

/**
 * Connects and turns the usual failures into one message that names the host and the likely cause.
 * The connection string itself is never echoed: it may hold a password.
 */
export async function connect(connectionString: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString, application_name: "supaqueue" });
  try {
    await client.connect();
  } catch (error) {
    await client.end().catch(() => {});
    throw new Error(describeConnectionError(connectionString, error));
  }
  return client;
}

export function describeConnectionError(connectionString: string, error: unknown): string {
  let where = "the database";
  try {
    const url = new URL(connectionString);
    where = `${url.hostname}:${url.port || "5432"} as ${decodeURIComponent(url.username) || "the default user"}`;
  } catch {
    return "supaqueue: the database URL is not a valid postgres:// connection string";
  }
  const code = (error as { code?: string }).code;
  const message = error instanceof Error ? error.message : String(error);
  const cause =
    code === "28P01" || code === "28000"
      ? "the password or user is wrong (check the database password in the connection string)"
      : code === "3D000"
        ? "the database does not exist"
        : code === "ECONNREFUSED"
          ? "nothing is listening there (is the host and port right, and is the database running?)"
          : code === "ENOTFOUND" || code === "EAI_AGAIN"
            ? "the host name does not resolve"
            : code === "ETIMEDOUT"
              ? "the connection timed out (a firewall, or the wrong host)"
              : message;
  return `supaqueue: cannot connect to ${where}: ${cause}`;
}
