import { parseDuration } from "../config/duration.ts";
import { UsageError } from "./args.ts";

export const SPAN_FORMS = "250ms, 30s, 5m, 1h or 1d";

/** A span of time on the command line in milliseconds: what supaqueue.yml's durations accept, and days (`1d`). */
export function parseSpan(text: string): number | null {
  const days = /^\s*(\d+(?:\.\d+)?)\s*d\s*$/.exec(text);
  if (days) return Math.round(Number(days[1]) * 86_400_000);
  return parseDuration(text);
}

/**
 * A moment given as an ISO timestamp or as a span from now: ahead of now for `--run-at 30s`, back from now for
 * `--since 1d`. A UsageError naming the flag when it is neither.
 */
export function parseMoment(
  command: string,
  flag: string,
  text: string,
  direction: "ahead" | "ago",
  now: number = Date.now(),
): string {
  const span = parseSpan(text);
  if (span !== null) return new Date(direction === "ahead" ? now + span : now - span).toISOString();
  const date = Date.parse(text);
  if (Number.isNaN(date)) {
    throw new UsageError(
      command,
      `--${flag} must be an ISO timestamp (2026-12-01T09:00:00Z) or a span such as ${SPAN_FORMS}${direction === "ago" ? " (that long ago)" : ""}, not "${text}"`,
    );
  }
  return new Date(date).toISOString();
}
