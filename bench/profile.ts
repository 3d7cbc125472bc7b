import pg from "pg";

/**
 * A statement-level profile of a call, from auto_explain loaded in one superuser session (no
 * shared_preload_libraries needed): every statement run inside it, nested ones and triggers included, is explained
 * with ANALYZE and sent back to this client as a NOTICE. Timing with ANALYZE inflates every figure alike, so the
 * profile ranks statements; it does not give their exact cost.
 */

interface StatementCost {
  /** The first line of the statement's text, whitespace collapsed. */
  statement: string;
  calls: number;
  /** Mean inclusive milliseconds (nested statements and triggers fired by it included). */
  meanMs: number;
}

export interface Profile {
  calls: number;
  statements: StatementCost[];
  /** Mean ms per call of each trigger reported by auto_explain (foreign keys included). */
  triggers: { name: string; meanMs: number }[];
}

/** Runs `sql` (one call, autocommit) `calls` times after `warmup` unprofiled runs and profiles it. */
export async function profileStatements(
  adminUrl: string,
  sql: string,
  calls: number,
  warmup = 20,
): Promise<Profile> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  const notices: string[] = [];
  let collecting = false;
  client.on("notice", (n) => {
    if (collecting && n.message) notices.push(n.message);
  });
  try {
    for (let i = 0; i < warmup; i++) await client.query(sql);
    await client.query(`
      load 'auto_explain';
      set auto_explain.log_min_duration = 0;
      set auto_explain.log_analyze = on;
      set auto_explain.log_timing = on;
      set auto_explain.log_triggers = on;
      set auto_explain.log_nested_statements = on;
      set auto_explain.log_level = notice;
      set client_min_messages = notice;`);
    collecting = true;
    for (let i = 0; i < calls; i++) await client.query(sql);
    collecting = false;
  } finally {
    await client.end();
  }
  const statements = new Map<string, { calls: number; ms: number }>();
  const triggers = new Map<string, number>();
  for (const message of notices) {
    const duration = /duration: ([\d.]+) ms/.exec(message);
    const text = /Query Text: ([^\n]*)/.exec(message);
    if (!duration?.[1] || text?.[1] === undefined) continue;
    const key = text[1].replace(/\s+/g, " ").trim().slice(0, 110) || "(expression)";
    const s = statements.get(key) ?? { calls: 0, ms: 0 };
    s.calls++;
    s.ms += Number(duration[1]);
    statements.set(key, s);
    for (const t of message.matchAll(
      /Trigger (?:for constraint )?([\w.]+)(?: on [\w.]+)?: time=([\d.]+) calls=\d+/g,
    )) {
      if (t[1] && t[2]) triggers.set(t[1], (triggers.get(t[1]) ?? 0) + Number(t[2]));
    }
  }
  return {
    calls,
    statements: [...statements.entries()]
      .map(([statement, s]) => ({ statement, calls: s.calls, meanMs: s.ms / calls }))
      .sort((a, b) => b.meanMs - a.meanMs),
    triggers: [...triggers.entries()]
      .map(([name, ms]) => ({ name, meanMs: ms / calls }))
      .sort((a, b) => b.meanMs - a.meanMs),
  };
}
