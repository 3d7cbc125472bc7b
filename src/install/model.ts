import type { SettingColumns } from "../config/settings.ts";
import { COLUMN_SETTINGS } from "../config/settings.ts";
import type { ConfigProblem } from "../config/types.ts";
import type { RecordedMigration } from "../db/migrate.ts";
import type { Check } from "./doctor.ts";
import type { ProbeOptions, ProbeResult } from "./probe.ts";
import type { TickMode, TickState } from "./tick.ts";
import type { StoredSecret } from "./vault.ts";

// What the installer reads, plans and reports, as types and names every step shares: read (state.ts) → plan
// (plan.ts) → apply (apply.ts) → present (present.ts). A leaf: it imports types only, and one list.

/** Queues from supaqueue.yml carry this in supaqueue.queue.managed_by; the installer touches no other queue. */
export const MANAGED_BY = "supaqueue.yml";

/**
 * The columns of supaqueue.queue that say where to call and with which headers (each filled from two keys), and
 * where its alerts go (filled from alerts.webhook and the file's dashboard_url).
 */
interface TargetColumns {
  /** As written in the file: a URL holding ${VAR} shows them, and url_secret names the Vault secret with it whole. */
  url: string | null;
  url_secret: string | null;
  function_name: string | null;
  headers: Record<string, string>;
  /** Header name → the Vault secret holding its value. */
  secret_headers: Record<string, string>;
  /** The queue "<queue>-alerts" made from alerts.webhook, and the link alerts end with (dashboard_url). */
  alert_queue: string | null;
  alert_link: string | null;
}

/** The columns of supaqueue.queue that supaqueue.yml sets: where to call, and every setting with a column. */
export type QueueRow = TargetColumns & SettingColumns;

/** QueueRow's columns, in the order the installer reads and writes them. */
export const QUEUE_COLUMNS = [
  "url",
  "url_secret",
  "function_name",
  "headers",
  "secret_headers",
  "alert_queue",
  "alert_link",
  ...COLUMN_SETTINGS.map((s) => s.column),
] as (keyof QueueRow)[];

/** The columns of QUEUE_COLUMNS that are jsonb. */
export const JSON_COLUMNS: ReadonlySet<keyof QueueRow> = new Set([
  "headers",
  "secret_headers",
  "payload_schema",
]);

export interface ExistingQueue extends QueueRow {
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

interface QueueChange {
  name: string;
  action: "create" | "update" | "unchanged";
  /** What differs, for people: "method: POST → PUT", "header X-Api-Key: secret value changed". Never a value of a secret. */
  changes: string[];
  /** Whether the supaqueue.queue row itself is written (a changed secret alone does not need it). */
  rowChanged: boolean;
  workers: { from: number | null; to: number };
  row: QueueRow;
}

interface QueueRemoval {
  name: string;
  unfinishedJobs: number;
  /** remove: empty, goes now; pause: has unfinished jobs, paused until empty; keep-paused: already paused, still has jobs. */
  action: "remove" | "pause" | "keep-paused";
}

interface SecretChange {
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

export interface DeployOptions {
  /** The Supabase project, e.g. abcdefghijklmnopqrst. */
  projectRef: string;
  /** A Supabase personal access token; needed unless dryRun. */
  accessToken?: string;
  /** Postgres connection string of the project, as its `postgres` role. */
  dbUrl: string;
  /** The key of the wakeups' HMAC, shared by the database and the function; when absent the one in Vault is kept (or one is made). */
  supaqueueSecret?: string;
  /** Where to read supaqueue.yml. */
  configPath: string;
  /** How to name it in messages and annotations (relative to the repository). */
  configFile: string;
  /** Overrides https://<project-ref>.supabase.co/functions/v1 (self-hosted or local stacks). */
  functionsUrl?: string;
  /** Plan only: validate, connect, read, print what would change, and change nothing. */
  dryRun: boolean;
  /** Where `${VAR}` in supaqueue.yml comes from. */
  env: Record<string, string | undefined>;
  /** Who runs tick() every second: pg_cron (enabled when missing) or the user's own scheduler. */
  tick: TickMode;
  /** After installing, prove the whole loop with a probe (and fail the run, naming the broken link, when it does not). */
  probe: boolean;
  probeOptions?: ProbeOptions;
}

export interface DeployResult {
  dryRun: boolean;
  /** Schema version after the run (before it, for a dry run; null when Supaqueue is not installed). */
  schemaVersion: number | null;
  /** Migrations applied by this run; for a dry run, those it would apply. */
  migrations: string[];
  functionsUrl: string;
  /** URL of execute_current_job, which pg_net calls. */
  functionUrl: string;
  /** What was done to queues, workers, header secrets, signing keys and schedules (for a dry run, what would be). */
  plan: Plan;
  /** Whether anything changed in the database (or would, for a dry run). */
  changed: boolean;
  /** Whether supaqueue.config.functions_url was (or would be) changed by this run. */
  functionsUrlChanged: boolean;
  /** How tick() runs after the run; undefined for a dry run. */
  tick?: TickState;
  /** The probe of the whole loop (undefined when skipped or for a dry run). */
  probe?: ProbeResult;
  /** What `supaqueue doctor` finds after the run (the probe aside); none for a dry run. */
  checks?: Check[];
  /** Whether the shared secret was created by this run (first install). */
  secretCreated?: boolean;
}
