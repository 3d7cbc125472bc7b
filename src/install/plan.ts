import { isDeepStrictEqual } from "node:util";
import type pg from "pg";
import { formatDuration } from "../config/duration.ts";
import { formatRate } from "../config/rate.ts";
import type { ConfigProblem, QueueFile, QueueSpec } from "../config/types.ts";
import {
  loadMigrations,
  type Migration,
  migrationStatus,
  type RecordedMigration,
  readRecordedMigrations,
} from "../db/migrate.ts";
import {
  headerSecretName,
  readHeaderSecrets,
  type StoredSecret,
  URL_SECRET_HEADER,
  urlSecretName,
} from "./header-secrets.ts";
import { computeSchedules, readCron, readSchedules } from "./schedules.ts";
import { signingChange, signingSecretName } from "./signing.ts";

/** Queues from supaqueue.yml carry this in supaqueue.queue.managed_by; the installer touches no other queue. */
export const MANAGED_BY = "supaqueue.yml";

/** The columns of supaqueue.queue that supaqueue.yml sets. */
export interface QueueRow {
  /** As written in the file: a URL holding ${VAR} shows them, and url_secret names the Vault secret with it whole. */
  url: string | null;
  url_secret: string | null;
  function_name: string | null;
  method: string;
  headers: Record<string, string>;
  secret_headers: Record<string, string>;
  max_attempts: number;
  timeout_ms: number;
  backoff_base_ms: number;
  backoff_max_ms: number;
  success_codes: number[] | null;
  retry_codes: number[] | null;
  rate_limit_per_second: number | null;
  dead_letter_queue: string | null;
  paused: boolean;
}

interface ExistingQueue extends QueueRow {
  name: string;
  managed_by: string | null;
  /** Vault name of the queue's signing key, null when its calls are not signed. */
  signing_key_secret: string | null;
  workers: number;
  unfinished_jobs: number;
}

/** What the database holds now, as far as the installer cares. Read without changing anything. */
export interface InstalledState {
  schemaInstalled: boolean;
  appliedVersions: number[];
  /** What supaqueue.migration records (empty when not installed), checked against the shipped files. */
  recordedMigrations: RecordedMigration[];
  maxCallTimeoutMs: number | null;
  /** supaqueue.config.functions_url, null when not installed. */
  functionsUrl: string | null;
  queues: Map<string, ExistingQueue>;
  secrets: Map<string, StoredSecret>;
  /** pg_cron's version when the extension is installed, else null. */
  cronVersion: string | null;
  /** supaqueue.schedule rows by name (each with whether its pg_cron job is there). */
  schedules: Map<string, ExistingSchedule>;
}

export interface ExistingSchedule {
  name: string;
  cron: string;
  queue_name: string;
  payload: unknown;
  managed_by: string | null;
  /** Whether pg_cron has its job 'supaqueue:<name>' (null when that cannot be read). */
  cron_job: boolean | null;
}

export interface ScheduleChange {
  name: string;
  action: "create" | "update" | "unchanged" | "remove";
  /** What differs, for people: "cron: 0 3 * * * → 30 3 * * *". */
  changes: string[];
  cron: string;
  queue: string;
  payload: unknown;
}

/** A queue's signing key: made on the first deploy with signed: true, cleared (and deleted from Vault) when off. */
export interface SigningChange {
  queue: string;
  action: "create" | "clear";
  /** The Vault secret that holds (create) or held (clear) the key. */
  vaultSecret: string;
}

export interface QueueChange {
  name: string;
  action: "create" | "update" | "unchanged";
  /** What differs, for people: "method: POST → PUT", "header X-Api-Key: secret value changed". Never a value of a secret. */
  changes: string[];
  /** Whether the supaqueue.queue row itself is written (a changed secret alone does not need it). */
  rowChanged: boolean;
  workers: { from: number | null; to: number };
  row: QueueRow;
}

export interface QueueRemoval {
  name: string;
  unfinishedJobs: number;
  /** remove: empty, goes now; pause: has unfinished jobs, paused until empty; keep-paused: already paused, still has jobs. */
  action: "remove" | "pause" | "keep-paused";
}

export interface SecretChange {
  /** Vault name of the secret. */
  name: string;
  queue: string;
  header: string;
  action: "create" | "update" | "delete";
}

/** Everything a run would do, computed before anything is done. Holds no secret values. */
export interface Plan {
  schemaInstalled: boolean;
  pendingMigrations: string[];
  /** The database holds a pre-release install, which the run replaces with today's schema (data kept). */
  prereleaseUpgrade: boolean;
  queues: QueueChange[];
  removals: QueueRemoval[];
  secrets: SecretChange[];
  schedules: ScheduleChange[];
  signing: SigningChange[];
  /** File queues whose names belong to queues created by hand: an error, checked before any change. */
  conflicts: ConfigProblem[];
}

/** Whether applying the plan would change the database (migrations aside). */
export function planChangesQueues(plan: Plan): boolean {
  return (
    plan.queues.some((q) => q.action !== "unchanged") ||
    plan.removals.some((r) => r.action !== "keep-paused") ||
    plan.secrets.length > 0 ||
    plan.schedules.some((s) => s.action !== "unchanged") ||
    plan.signing.length > 0
  );
}

export async function readInstalledState(client: pg.ClientBase): Promise<InstalledState> {
  const installed = await client.query<{ queue: boolean; migration: boolean }>(
    "select to_regclass('supaqueue.queue') is not null as queue, to_regclass('supaqueue.migration') is not null as migration",
  );
  const secrets = await readHeaderSecrets(client);
  const state: InstalledState = {
    schemaInstalled: installed.rows[0]?.queue ?? false,
    appliedVersions: [],
    recordedMigrations: [],
    maxCallTimeoutMs: null,
    functionsUrl: null,
    queues: new Map(),
    secrets,
    cronVersion: await readCron(client),
    schedules: new Map(),
  };
  if (installed.rows[0]?.migration) {
    state.recordedMigrations = await readRecordedMigrations(client);
    state.appliedVersions = state.recordedMigrations.map((r) => r.version);
  }
  if (!state.schemaInstalled) return state;
  const config = await client.query<{ max: number; url: string | null }>(
    "select max_call_timeout_ms as max, functions_url as url from supaqueue.config",
  );
  state.maxCallTimeoutMs = config.rows[0]?.max ?? null;
  state.functionsUrl = config.rows[0]?.url ?? null;
  const { rows } = await client.query<ExistingQueue>(`
    select q.name, q.url, q.url_secret, q.function_name, q.method, q.headers, q.secret_headers, q.max_attempts, q.timeout_ms,
           q.backoff_base_ms, q.backoff_max_ms, q.success_codes, q.retry_codes, q.rate_limit_per_second,
           q.dead_letter_queue, q.paused, q.managed_by, q.signing_key_secret,
           (select count(*)::int from supaqueue.worker w where w.queue_id = q.id and not w.retiring) as workers,
           (select count(*)::int from supaqueue.job j
             where j.queue_id = q.id and j.status in ('pending', 'in_progress')) as unfinished_jobs
    from supaqueue.queue q order by q.name`);
  for (const row of rows) state.queues.set(row.name, row);
  state.schedules = await readSchedules(client, state.cronVersion !== null);
  return state;
}

/** The supaqueue.queue row a queue of the file asks for. */
export function desiredRow(spec: QueueSpec): QueueRow {
  return {
    url: spec.url,
    url_secret: spec.urlSecret ? urlSecretName(spec.name) : null,
    function_name: spec.functionName,
    method: spec.method,
    headers: spec.headers,
    secret_headers: Object.fromEntries(
      spec.secretHeaders.map((h) => [h.header, headerSecretName(spec.name, h.header)]),
    ),
    max_attempts: spec.maxAttempts,
    timeout_ms: spec.timeoutMs,
    backoff_base_ms: spec.backoffBaseMs,
    backoff_max_ms: spec.backoffMaxMs,
    success_codes: spec.successCodes,
    retry_codes: spec.retryCodes,
    rate_limit_per_second: spec.rateLimitPerSecond,
    dead_letter_queue: spec.deadLetterQueue,
    paused: spec.paused,
  };
}

/** Computes what a run would do to bring the database in line with the file. Changes nothing. */
export function computePlan(
  config: QueueFile,
  state: InstalledState,
  migrations: Migration[] = loadMigrations(),
): Plan {
  // A history this version cannot continue stops the run here, before any change.
  const migrationsToApply = migrationStatus(state.recordedMigrations, migrations);
  const plan: Plan = {
    schemaInstalled: state.schemaInstalled,
    pendingMigrations: migrationsToApply.pending,
    prereleaseUpgrade: migrationsToApply.prerelease,
    queues: [],
    removals: [],
    secrets: [],
    schedules: [],
    signing: [],
    conflicts: [],
  };
  const wanted = new Set(config.queues.map((q) => q.name));
  // Secret names still used by a managed queue after the run; any other header secret of a managed queue goes.
  const keptSecrets = new Set<string>();
  // Which (queue, header) each secret name belongs to, for the plan-time check below.
  const secretOwners = new Map<string, { queue: string; header: string }>();

  for (const spec of config.queues) {
    const existing = state.queues.get(spec.name);
    if (existing && existing.managed_by !== MANAGED_BY) {
      plan.conflicts.push({
        position: spec.position,
        field: `queues.${spec.name}`,
        message: `a queue named "${spec.name}" already exists and was not created from ${MANAGED_BY} (managed_by is ${existing.managed_by === null ? "null: made by hand" : `"${existing.managed_by}"`}), so Supaqueue will not touch it; rename the queue in the file, or hand it over with: update supaqueue.queue set managed_by = '${MANAGED_BY}' where name = '${spec.name}'`,
      });
      continue;
    }
    // A dead-letter queue is another queue of the file, or one the file does not manage (made by hand).
    const deadLetter = spec.deadLetterQueue ? state.queues.get(spec.deadLetterQueue) : undefined;
    if (
      spec.deadLetterQueue &&
      !wanted.has(spec.deadLetterQueue) &&
      (!deadLetter || deadLetter.managed_by === MANAGED_BY)
    ) {
      plan.conflicts.push({
        position: spec.deadLetterPosition,
        field: `queues.${spec.name}.dead_letter_queue`,
        message: deadLetter
          ? `"${spec.deadLetterQueue}" is taken out of the file by this change, but this queue still sends its failed jobs there; keep it in the file, or name another dead-letter queue`
          : `there is no queue "${spec.deadLetterQueue}" in the file or the database; allowed: the name of another queue`,
      });
      continue;
    }
    const row = desiredRow(spec);
    const changes: string[] = [];
    // The URL's secret (the whole URL, its ${VAR} resolved) is kept like a secret header's value.
    const secrets = [
      ...spec.secretHeaders,
      ...(spec.urlSecret ? [{ header: URL_SECRET_HEADER, value: spec.urlSecret.value }] : []),
    ];
    for (const header of secrets) {
      const name =
        header.header === URL_SECRET_HEADER
          ? urlSecretName(spec.name)
          : headerSecretName(spec.name, header.header);
      // The naming rule makes two (queue, header) pairs share a Vault secret impossible; should it ever change,
      // this stops the run before one queue sends another's secret.
      const owner = secretOwners.get(name);
      if (
        owner &&
        (owner.queue !== spec.name || owner.header.toLowerCase() !== header.header.toLowerCase())
      ) {
        plan.conflicts.push({
          position: spec.position,
          field: `queues.${spec.name}.headers.${header.header}`,
          message: `its Vault secret would be named ${name}, like header ${owner.header} of queue ${owner.queue}; rename one of them`,
        });
      }
      secretOwners.set(name, { queue: spec.name, header: header.header });
      keptSecrets.add(name);
      const stored = state.secrets.get(name);
      if (!stored) {
        plan.secrets.push({ name, queue: spec.name, header: header.header, action: "create" });
        if (existing?.secret_headers[header.header] === name || existing?.url_secret === name)
          changes.push(`${secretLabel(header.header)}: secret restored in Vault`);
      } else if (stored.value !== header.value) {
        plan.secrets.push({ name, queue: spec.name, header: header.header, action: "update" });
        changes.push(`${secretLabel(header.header)}: secret value changed`);
      }
    }
    const signing = signingChange(spec, existing);
    if (signing) {
      plan.signing.push(signing);
      changes.push(
        signing.action === "create" ? "signing key created" : "signed: true → false (key deleted)",
      );
    }
    if (!existing) {
      plan.queues.push({
        name: spec.name,
        action: "create",
        changes,
        rowChanged: true,
        workers: { from: null, to: spec.workers },
        row,
      });
      continue;
    }
    const rowChanges = describeRowChanges(existing, row);
    changes.push(...rowChanges);
    if (existing.workers !== spec.workers) changes.push(`workers: ${existing.workers} → ${spec.workers}`);
    for (const [header, name] of ownedSecrets(existing)) {
      if (!keptSecrets.has(name) && state.secrets.has(name)) {
        plan.secrets.push({ name, queue: spec.name, header, action: "delete" });
      }
    }
    plan.queues.push({
      name: spec.name,
      action: changes.length > 0 ? "update" : "unchanged",
      changes,
      rowChanged: rowChanges.length > 0,
      workers: { from: existing.workers, to: spec.workers },
      row,
    });
  }

  for (const existing of state.queues.values()) {
    if (existing.managed_by !== MANAGED_BY || wanted.has(existing.name)) continue;
    const unfinished = existing.unfinished_jobs;
    plan.removals.push({
      name: existing.name,
      unfinishedJobs: unfinished,
      action: unfinished === 0 ? "remove" : existing.paused ? "keep-paused" : "pause",
    });
    if (unfinished === 0) {
      if (existing.signing_key_secret !== null)
        plan.signing.push({
          queue: existing.name,
          action: "clear",
          vaultSecret: signingSecretName(existing.name),
        });
      for (const [header, name] of ownedSecrets(existing)) {
        if (state.secrets.has(name))
          plan.secrets.push({ name, queue: existing.name, header, action: "delete" });
      }
    }
  }
  computeSchedules(config, state, plan);
  return plan;
}

const LABELS: [keyof QueueRow, string, (v: never) => string][] = [
  ["url", "url", String],
  ["function_name", "function", String],
  ["method", "method", String],
  ["max_attempts", "max_attempts", String],
  ["timeout_ms", "timeout", formatDuration],
  ["backoff_base_ms", "backoff.base", formatDuration],
  ["backoff_max_ms", "backoff.max", formatDuration],
  ["success_codes", "success_codes", (v: number[] | null) => (v ? `[${v.join(", ")}]` : "default")],
  ["retry_codes", "retry_codes", (v: number[] | null) => (v ? `[${v.join(", ")}]` : "default")],
  ["rate_limit_per_second", "rate_limit", formatRate],
  ["dead_letter_queue", "dead_letter_queue", String],
  ["paused", "paused", String],
];

/** A queue's Vault secrets, as [what it belongs to, Vault name]: its secret headers, and its URL's. */
function ownedSecrets(queue: QueueRow): [string, string][] {
  return [
    ...Object.entries(queue.secret_headers),
    ...(queue.url_secret ? [[URL_SECRET_HEADER, queue.url_secret] as [string, string]] : []),
  ];
}

/** How a secret of the plan is named in words. */
export function secretLabel(header: string): string {
  return header === URL_SECRET_HEADER ? "url" : `header ${header}`;
}

function describeRowChanges(existing: QueueRow, row: QueueRow): string[] {
  const changes: string[] = [];
  for (const [key, label, show] of LABELS) {
    if (!isDeepStrictEqual(existing[key], row[key])) {
      const before = existing[key] === null ? "none" : show(existing[key] as never);
      const after = row[key] === null ? "none" : show(row[key] as never);
      changes.push(`${label}: ${before} → ${after}`);
    }
  }
  for (const header of new Set([...Object.keys(existing.headers), ...Object.keys(row.headers)])) {
    const before = existing.headers[header];
    const after = row.headers[header];
    if (before !== after) {
      changes.push(
        `header ${header}: ${before === undefined ? "added" : after === undefined ? "removed" : "value changed"}`,
      );
    }
  }
  for (const header of new Set([
    ...Object.keys(existing.secret_headers),
    ...Object.keys(row.secret_headers),
  ])) {
    const before = existing.secret_headers[header];
    const after = row.secret_headers[header];
    if (before === undefined && after !== undefined) {
      changes.push(`header ${header}: secret added`);
    } else if (before !== undefined && after === undefined) {
      changes.push(`header ${header}: secret removed`);
    } else if (before !== after) {
      changes.push(`header ${header}: Vault secret renamed`);
    }
  }
  return changes;
}
