const SECONDS_PER: Record<string, number> = { s: 1, m: 60, h: 3600 };

export const RATE_FORMS =
  "a number of calls per second, minute or hour, more than 0: 10/s, 600/m, 1/h, 0.5/s";

/**
 * A rate limit of supaqueue.yml in calls per second: `10/s`, `600/m`, `1/h` (a number, then the unit). Returns
 * null for anything else, a bare number included: the unit is what makes `10` mean something. A rate of 0 is
 * returned as 0 for the caller to refuse with its own message.
 */
export function parseRate(value: unknown): number | null {
  if (typeof value !== "string") return null;
  const match = /^\s*(\d+(?:\.\d+)?)\s*\/\s*(s|m|h)\s*$/.exec(value);
  if (!match) return null;
  const perSecond = Number(match[1]) / (SECONDS_PER[match[2] as string] ?? 1);
  return Number.isFinite(perSecond) ? perSecond : null;
}

/** Calls per second in the unit that reads as a whole number when there is one: 10/s, 30/m, 1/h. */
export function formatRate(perSecond: number): string {
  for (const [unit, factor] of [
    ["s", 1],
    ["m", 60],
    ["h", 3600],
  ] as const) {
    const n = perSecond * factor;
    if (Math.abs(n - Math.round(n)) < 1e-9 && Math.round(n) > 0) return `${Math.round(n)}/${unit}`;
  }
  return `${Number(perSecond.toPrecision(6))}/s`;
}
