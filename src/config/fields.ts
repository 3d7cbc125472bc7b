import { isMap, isScalar, isSeq, type Node, type Pair, type YAMLMap } from "yaml";
import { DURATION_FORMS, formatDuration, isFractionOfMillisecond, parseDuration } from "./duration.ts";
import { atMost, count, LIMITS, type Limit } from "./limits.ts";
import { parseRate, RATE_FORMS } from "./rate.ts";
import type { Position } from "./types.ts";

// Readers for one field of supaqueue.yml each: they report what is wrong at the node's place and return the value
// (or null when it is unusable), so a queue can be checked field by field and every problem shown at once.

/** Queue and schedule names: what supaqueue.queue and supaqueue.schedule accept. */
export const NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
export const NAME_RULE = '1 to 63 lowercase letters, digits, "-" and "_", starting with a letter or digit';

export type Report = (node: Node | Pair["key"] | null | undefined, field: string, message: string) => void;
export type At = (node: Node | Pair["key"] | null | undefined) => Position;

export function checkKeys(map: YAMLMap, prefix: string, allowed: string[], report: Report): void {
  for (const pair of map.items) {
    const key = isScalar(pair.key) ? pair.key.value : undefined;
    if (typeof key !== "string" || !allowed.includes(key)) {
      report(
        pair.key as Node,
        `${prefix}${String(key)}`,
        `unknown key "${String(key)}"; allowed keys: ${allowed.join(", ")}`,
      );
    }
  }
}

/** An integer from `min` to `limit.max`, written as one: YAML reads `1e9` and `2.0` as floats. */
export function integer(
  node: Node | undefined,
  field: string,
  min: number,
  limit: Limit,
  fallback: number,
  report: Report,
): number | null {
  if (node === undefined) return fallback;
  const value = scalar(node);
  const allowed = `an integer from ${min} to ${limit.label}`;
  const float = floatForm(node);
  if (float) {
    report(node, field, `${float}; allowed: ${allowed}, written with digits only`);
    return null;
  }
  if (typeof value !== "number" || !Number.isInteger(value) || value < min) {
    report(node, field, `${show(value)} is not allowed; allowed: ${allowed}`);
    return null;
  }
  if (value > limit.max) {
    report(node, field, `${value} is too many; ${atMost(limit)}`);
    return null;
  }
  return value;
}

/**
 * "1e9 is a float in YAML (written with an exponent)" when a number is not written as an integer (decimal, 0x or
 * 0o), else null. Where an integer is wanted this is refused even when the value is whole: `workers: 1e9` was once
 * taken for a billion workers.
 */
function floatForm(node: Node): string | null {
  if (!isScalar(node) || typeof node.value !== "number" || node.source === undefined) return null;
  const source = node.source;
  if (/^[-+]?[0-9]+$|^0x[0-9a-fA-F]+$|^0o[0-7]+$/.test(source)) return null;
  const how = /[eE]/.test(source)
    ? " (written with an exponent)"
    : source.includes(".") && Number.isFinite(node.value)
      ? " (written with a decimal point)"
      : "";
  return `${source} is a float in YAML${how}`;
}

/** A duration in milliseconds, at most `limit` when one is given (the timeout's bound comes from the database). */
export function duration(
  node: Node | undefined,
  field: string,
  fallback: number,
  report: Report,
  limit?: Limit,
): number | null {
  if (node === undefined) return fallback;
  const value = scalar(node);
  const ms = parseDuration(value);
  if (ms === null) {
    const problem = isFractionOfMillisecond(value)
      ? `${show(value)} is not a whole number of milliseconds`
      : `invalid duration ${show(value)}`;
    report(node, field, `${problem}; allowed: ${DURATION_FORMS}`);
    return null;
  }
  if (limit && ms > limit.max) {
    report(node, field, `${formatDuration(ms)} is too long; ${atMost(limit)}`);
    return null;
  }
  return ms;
}

export function boolean(node: Node | undefined, field: string, fallback: boolean, report: Report): boolean {
  if (node === undefined) return fallback;
  const value = scalar(node);
  if (typeof value === "boolean") return value;
  report(node, field, `${show(value)} is not allowed; allowed values: true, false`);
  return fallback;
}

/** `rate_limit: 10/s` in calls per second, null when absent (or wrong, which is reported). */
export function rate(node: Node | undefined, field: string, report: Report): number | null {
  if (node === undefined) return null;
  const value = scalar(node);
  const perSecond = parseRate(value);
  if (perSecond === null) {
    const hint = typeof value === "number" && value > 0 ? ` (write "${value}/s" for ${value} a second)` : "";
    report(node, field, `${show(value)} is not a rate${hint}; allowed: ${RATE_FORMS}`);
    return null;
  }
  if (perSecond === 0) {
    report(
      node,
      field,
      `${show(value)} would never call (to stop calls, set paused: true or workers: 0); allowed: ${RATE_FORMS}`,
    );
    return null;
  }
  if (perSecond > LIMITS.ratePerSecond.max) {
    report(node, field, `${show(value)} is too fast; ${atMost(LIMITS.ratePerSecond)}`);
    return null;
  }
  return perSecond;
}

export function statusCodes(node: Node | undefined, field: string, report: Report): number[] | null {
  if (node === undefined) return null;
  if (!isSeq(node)) {
    report(node, field, "must be a list of HTTP statuses, e.g. [200, 201]");
    return null;
  }
  if (node.items.length > LIMITS.statusCodes.max) {
    report(node, field, `has ${count(node.items.length)} statuses; ${atMost(LIMITS.statusCodes)}`);
    return null;
  }
  const codes: number[] = [];
  for (const item of node.items) {
    const value = scalar(item as Node);
    const float = floatForm(item as Node);
    if (float || typeof value !== "number" || !Number.isInteger(value) || value < 100 || value > 599) {
      report(
        item as Node,
        field,
        `${float ?? `${show(value)} is not an HTTP status`}; allowed: integers from 100 to 599`,
      );
    } else codes.push(value);
  }
  return codes;
}

export function scalar(node: Node | null | undefined): unknown {
  if (isScalar(node)) return node.value;
  if (isMap(node)) return { kind: "mapping" };
  if (isSeq(node)) return { kind: "list" };
  return null;
}

export function show(value: unknown): string {
  if (value === null || value === undefined) return "(empty)";
  if (typeof value === "object" && "kind" in value) return `a ${(value as { kind: string }).kind}`;
  return JSON.stringify(value);
}
