const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

export const DURATION_FORMS = "250ms, 30s, 5m, 1h, or a number of seconds";

/**
 * A duration of supaqueue.yml in milliseconds: `250ms`, `30s`, `5m`, `1h`, or a plain number of seconds.
 * Returns null when the value is none of these (or is not a whole number of milliseconds).
 */
export function parseDuration(value: unknown): number | null {
  const ms = milliseconds(value);
  if (ms === null) return null;
  const rounded = Math.round(ms);
  return Math.abs(rounded - ms) < 1e-6 ? rounded : null;
}

/** Whether a value has a duration's form but is not a whole number of milliseconds, like `0.5ms`. */
export function isFractionOfMillisecond(value: unknown): boolean {
  return milliseconds(value) !== null && parseDuration(value) === null;
}

function milliseconds(value: unknown): number | null {
  let ms: number;
  if (typeof value === "number") {
    ms = value * 1000;
  } else if (typeof value === "string") {
    const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(value);
    if (!match) return null;
    ms = Number(match[1]) * (UNITS[match[2] ?? "s"] ?? 1000);
  } else {
    return null;
  }
  return Number.isFinite(ms) && ms >= 0 ? ms : null;
}

/** A duration in the shortest form that reads well: 250ms, 30s, 5m, 1h. */
export function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
