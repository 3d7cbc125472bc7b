import { isDeepStrictEqual } from "node:util";
import { ALERT_QUEUE_SUFFIX } from "../config/alerts.ts";
import { isSecondsSchedule } from "../config/cron.ts";
import { COLUMN_SETTINGS, type SettingColumns } from "../config/settings.ts";
import type { Position, QueueFile, QueueSpec } from "../config/types.ts";
import { loadMigrations, type Migration, migrationStatus } from "../db/migrate.ts";
import { type InstalledState, MANAGED_BY, type Plan, type QueueRow, type SigningChange } from "./model.ts";
import {
  headerSecretName,
  secretLabel,
  signingSecretName,
  URL_SECRET_HEADER,
  urlSecretName,
} from "./vault.ts";

// The diff: what a run would do to bring the database (as state.ts read it) in line with the file. Changes nothing.

/** The supaqueue.queue row a queue of the file asks for. */
function desiredRow(spec: QueueSpec): QueueRow {
  const settings = Object.fromEntries(
    COLUMN_SETTINGS.map((s) => [s.column, spec[s.field]]),
  ) as SettingColumns;
  return {
    url: spec.url,
    url_secret: spec.urlSecret ? urlSecretName(spec.name) : null,
    function_name: spec.functionName,
    headers: spec.headers,
    secret_headers: Object.fromEntries(
      spec.secretHeaders.map((h) => [h.header, headerSecretName(spec.name, h.header)]),
    ),
    alert_queue: spec.alertWebhook ? `${spec.name}${ALERT_QUEUE_SUFFIX}` : null,
    alert_link: spec.alertLink,
    ...settings,
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
    // A dead-letter or on_success queue is another queue of the file, or one the file does not manage (made by hand).
    const missing = linkedQueues(spec).find(({ name }) => {
      const other = state.queues.get(name);
      return !wanted.has(name) && (!other || other.managed_by === MANAGED_BY);
    });
    if (missing) {
      plan.conflicts.push({
        position: missing.position,
        field: `queues.${spec.name}.${missing.key}`,
        message: state.queues.has(missing.name)
          ? `"${missing.name}" is taken out of the file by this change, but this queue still sends ${missing.what} there; keep it in the file, or name another queue`
          : `there is no queue "${missing.name}" in the file or the database; allowed: the name of another queue`,
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

/** How the plan's change lines name a column and show its value: where to call, then each setting with a column. */
const LABELS: [keyof QueueRow, string, (v: never) => string][] = [
  ["url", "url", String],
  ["function_name", "function", String],
  ["alert_queue", "alerts", String],
  ["alert_link", "alerts link", String],
  ...COLUMN_SETTINGS.map((s): [keyof QueueRow, string, (v: never) => string] => [
    s.column,
    s.label,
    s.format,
  ]),
];

/** A queue's Vault secrets, as [what it belongs to, Vault name]: its secret headers, and its URL's. */
function ownedSecrets(queue: QueueRow): [string, string][] {
  return [
    ...Object.entries(queue.secret_headers),
    ...(queue.url_secret ? [[URL_SECRET_HEADER, queue.url_secret] as [string, string]] : []),
  ];
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

/** What `signed:` asks of a queue: a first key when it has none, or no key when the file says unsigned. */
function signingChange(
  spec: QueueSpec,
  existing: { signing_key_secret: string | null } | undefined,
): SigningChange | null {
  const hasKey = (existing?.signing_key_secret ?? null) !== null;
  if (spec.signed === hasKey) return null;
  return {
    queue: spec.name,
    action: spec.signed ? "create" : "clear",
    vaultSecret: signingSecretName(spec.name),
  };
}

/**
 * Plans the schedules of the file: create, change or keep each one, and remove the ones this file made that are
 * no longer in it. Schedules not made from the file are never touched; a file schedule with the name of one is a
 * conflict, and so is a schedule whose queue will not exist, or any schedule without pg_cron.
 */
function computeSchedules(config: QueueFile, state: InstalledState, plan: Plan): void {
  const fileQueues = new Set(config.queues.map((q) => q.name));
  for (const spec of config.schedules) {
    const field = `schedules.${spec.name}`;
    if (state.cronVersion === null) {
      plan.conflicts.push({
        position: spec.position,
        field,
        message:
          "recurring calls need the pg_cron extension, which is not installed in this database; enable it (Supabase dashboard: Database > Extensions > pg_cron, or: create extension pg_cron) and run again",
      });
      continue;
    }
    if (isSecondsSchedule(spec.cron) && olderThan(state.cronVersion, [1, 5])) {
      plan.conflicts.push({
        position: spec.cronPosition,
        field: `${field}.cron`,
        message: `"${spec.cron}" needs pg_cron 1.5 or later, and this database has ${state.cronVersion}; allowed here: five cron fields (at most once a minute)`,
      });
      continue;
    }
    const existing = state.schedules.get(spec.name);
    if (existing && existing.managed_by !== MANAGED_BY) {
      plan.conflicts.push({
        position: spec.position,
        field,
        message: `a schedule named "${spec.name}" already exists and was not created from ${MANAGED_BY}, so Supaqueue will not touch it; rename the schedule in the file, or hand it over with: update supaqueue.schedule set managed_by = '${MANAGED_BY}' where name = '${spec.name}'`,
      });
      continue;
    }
    const queue = state.queues.get(spec.queue);
    if (!fileQueues.has(spec.queue) && (!queue || queue.managed_by === MANAGED_BY)) {
      plan.conflicts.push({
        position: spec.queuePosition,
        field: `${field}.queue`,
        message: queue
          ? `"${spec.queue}" is taken out of the file by this change, but this schedule still enqueues into it; keep the queue in the file, or point the schedule at another queue`
          : `there is no queue "${spec.queue}" in the file or the database; allowed: a queue of this file or one that exists`,
      });
      continue;
    }
    const change = { name: spec.name, cron: spec.cron, queue: spec.queue, payload: spec.payload };
    if (!existing) {
      plan.schedules.push({ ...change, action: "create", changes: [] });
      continue;
    }
    const changes: string[] = [];
    if (existing.cron !== spec.cron) changes.push(`cron: ${existing.cron} → ${spec.cron}`);
    if (existing.queue_name !== spec.queue) changes.push(`queue: ${existing.queue_name} → ${spec.queue}`);
    if (!isDeepStrictEqual(existing.payload, spec.payload)) changes.push("payload changed");
    if (changes.length === 0 && existing.cron_job === false) changes.push("pg_cron job restored");
    plan.schedules.push({ ...change, action: changes.length > 0 ? "update" : "unchanged", changes });
  }
  const wanted = new Set(config.schedules.map((s) => s.name));
  for (const existing of state.schedules.values()) {
    if (existing.managed_by !== MANAGED_BY || wanted.has(existing.name)) continue;
    plan.schedules.push({
      name: existing.name,
      action: "remove",
      changes: [],
      cron: existing.cron,
      queue: existing.queue_name,
      payload: existing.payload,
    });
  }
}

function olderThan(version: string, [major, minor]: [number, number]): boolean {
  const [a = 0, b = 0] = version.split(".").map((part) => Number.parseInt(part, 10) || 0);
  return a < major || (a === major && b < minor);
}

/** The other queues a queue sends jobs to: its dead-letter queue and its on_success queue, where it names them. */
function linkedQueues(spec: QueueSpec): { name: string; key: string; what: string; position: Position }[] {
  return [
    ...(spec.deadLetterQueue
      ? [
          {
            name: spec.deadLetterQueue,
            key: "dead_letter_queue",
            what: "its failed jobs",
            position: spec.deadLetterPosition,
          },
        ]
      : []),
    ...(spec.onSuccessQueue
      ? [
          {
            name: spec.onSuccessQueue,
            key: "on_success.queue",
            what: "the next step of its successful jobs",
            position: spec.onSuccessPosition,
          },
        ]
      : []),
  ];
}
