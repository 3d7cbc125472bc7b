// pg_cron's schedule syntax: five cron fields (minute hour day-of-month month day-of-week), or "N seconds" for
// 1 to 59 seconds (pg_cron 1.5 and later). Checked here so that a typo is reported at its line before any change,
// not by pg_cron halfway through an install.

export const CRON_FORMS =
  'five cron fields, minute hour day-of-month month day-of-week (e.g. "0 3 * * *", "*/5 * * * *"), or "N seconds" with N from 1 to 59 (pg_cron 1.5+)';

const MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

interface Field {
  name: string;
  min: number;
  max: number;
  names?: string[];
  /** pg_cron's "$" (last day of the month) is allowed in day-of-month. */
  last?: boolean;
}

const FIELDS: Field[] = [
  { name: "minute", min: 0, max: 59 },
  { name: "hour", min: 0, max: 23 },
  { name: "day of month", min: 1, max: 31, last: true },
  { name: "month", min: 1, max: 12, names: MONTHS },
  { name: "day of week", min: 0, max: 7, names: DAYS },
];

const SECONDS = /^\s*(\d+)\s+seconds?\s*$/i;

/** Whether a schedule uses pg_cron's "N seconds" form, which needs pg_cron 1.5 or later. */
export function isSecondsSchedule(cron: string): boolean {
  return SECONDS.test(cron);
}

/** What is wrong with a pg_cron schedule, or null when pg_cron accepts it. */
export function cronProblem(cron: string): string | null {
  const seconds = SECONDS.exec(cron);
  if (seconds) {
    const n = Number(seconds[1]);
    return n >= 1 && n <= 59 ? null : `"${cron.trim()}": seconds must be from 1 to 59`;
  }
  const parts = cron.trim().split(/\s+/);
  if (parts.length !== 5) return `"${cron.trim()}" has ${parts.length} field(s), not 5`;
  for (const [i, part] of parts.entries()) {
    const field = FIELDS[i] as Field;
    const problem = fieldProblem(part, field);
    if (problem) return `"${cron.trim()}": ${field.name} "${part}" ${problem}`;
  }
  return null;
}

function fieldProblem(text: string, field: Field): string | null {
  for (const item of text.split(",")) {
    const [range = "", step, ...rest] = item.split("/");
    if (rest.length > 0 || (step !== undefined && !/^\d+$/.test(step)))
      return "has a bad step (write */N or A-B/N)";
    if (step !== undefined && Number(step) < 1) return "has a step of 0";
    if (range === "*" || (field.last && range === "$")) continue;
    const ends = range.split("-");
    if (ends.length > 2 || ends.some((end) => value(end, field) === null))
      return `is not a valid ${field.name} (*, ${field.min} to ${field.max}${field.names ? `, ${field.names.slice(0, 3).join(", ")}, ...` : ""}${field.last ? ", $" : ""}, ranges A-B, lists A,B, steps /N)`;
  }
  return null;
}

function value(text: string, field: Field): number | null {
  if (/^\d+$/.test(text)) {
    const n = Number(text);
    return n >= field.min && n <= field.max ? n : null;
  }
  const index = field.names?.indexOf(text.toLowerCase()) ?? -1;
  return index >= 0 ? index : null;
}
