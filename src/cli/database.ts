import pg from "pg";
import { connect } from "../db/connect.ts";

/** Connects (naming the host and cause when it cannot), runs `fn`, and closes the connection whatever happens. */
export async function withDatabase<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = await connect(url);
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * Runs one operation on the database. What the database refuses (a Supaqueue function's own message, such as
 * `supaqueue: queue "x" does not exist`) is printed as it is, with its hint, and gives exit code 1.
 */
export async function operate(url: string, fn: (client: pg.Client) => Promise<number>): Promise<number> {
  try {
    return await withDatabase(url, fn);
  } catch (error) {
    if (!(error instanceof pg.DatabaseError)) throw error;
    process.stderr.write(`${databaseMessage(error)}\n`);
    return 1;
  }
}

function databaseMessage(error: pg.DatabaseError): string {
  // No supaqueue schema, or an older one without this function.
  if (error.code === "3F000" || (error.code === "42883" && /supaqueue\./.test(error.message))) {
    return "supaqueue: Supaqueue is not installed in this database (or is older than this command); run supaqueue deploy first.";
  }
  return `${error.message}${error.hint ? `\nhint: ${error.hint}` : ""}`;
}
