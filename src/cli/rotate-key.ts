import { type CommandSpec, DB_URL_FLAG, type Parsed, requireDbUrl, stringFlag, UsageError } from "./args.ts";
import { operate } from "./database.ts";
import { parseSpan, SPAN_FORMS } from "./when.ts";

export const ROTATE_KEY: CommandSpec = {
  name: "rotate-key",
  brief: "give a signed queue a new signing key and print it",
  summary:
    "give a queue a new HMAC-SHA256 signing key (supaqueue.rotate_signing_key), stored in Vault, and print it: calls are signed with the new key and, until --overlap ends, the previous one too.",
  args: "<queue>",
  maxArgs: 1,
  flags: {
    "db-url": DB_URL_FLAG,
    overlap: {
      type: "string",
      value: "SPAN",
      description: `How long the previous key stays valid next to the new one: ${SPAN_FORMS}, or 0 for not at all (default 1d).`,
    },
  },
  notes: [
    "This prints the new key on stdout, on purpose: rotating is an operation, and the key is what you put in your",
    "target's secrets next (as `supabase projects api-keys` prints a project's keys). Only the key goes to stdout,",
    "so `KEY=$(supaqueue rotate-key <queue>)` works; the instructions go to stderr. Run it where the output is private.",
    "Read the current key again with: select decrypted_secret from vault.decrypted_secrets where name = 'supaqueue:signing:<queue>'",
    "For a queue of supaqueue.yml, set signed: true in the file too: a deploy deletes the key of a queue the file does not sign.",
  ],
};

export async function runRotateKey(parsed: Parsed, env: Record<string, string | undefined>): Promise<number> {
  const [queue] = parsed.positionals;
  if (!queue)
    throw new UsageError("rotate-key", "missing the queue name (usage: supaqueue rotate-key <queue>)");
  const overlapText = stringFlag(parsed.values, "overlap");
  const overlapMs = overlapText === undefined ? 86_400_000 : parseSpan(overlapText);
  if (overlapMs === null) {
    throw new UsageError("rotate-key", `--overlap must be ${SPAN_FORMS}, or 0, not "${overlapText}"`);
  }
  const url = requireDbUrl("rotate-key", parsed.values, env);
  return operate(url, async (client) => {
    const rotated = await client.query<{ key: string }>(
      "select supaqueue.rotate_signing_key($1, null, make_interval(secs => $2::float8 / 1000)) as key",
      [queue, overlapMs],
    );
    // A second statement: the first one's update is not visible to itself.
    const { rows } = await client.query<{ until: string | null }>(
      "select previous_signing_key_until::text as until from supaqueue.queue where name = $1",
      [queue],
    );
    const row = { key: rotated.rows[0]?.key as string, until: rows[0]?.until ?? null };
    process.stdout.write(`${row.key}\n`);
    process.stderr.write(
      `New signing key of queue ${queue} (in Vault as supaqueue:signing:${queue}), printed above: put it in your target's secrets. ${
        row.until
          ? `The previous key is still sent until ${row.until}.`
          : "No previous key is sent any more: targets that only know the old key now refuse the calls."
      }\n`,
    );
    return 0;
  });
}
