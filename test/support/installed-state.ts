import type { ExistingQueue, InstalledState } from "../../src/install/model.ts";

/**
 * A queue as readInstalledState returns it: managed by supaqueue.yml, every setting at its default, one worker, no
 * unfinished job. Typed as ExistingQueue, so a column added to the queue row must be added here once.
 */
function existingQueue(name: string, overrides: Partial<ExistingQueue> = {}): ExistingQueue {
  return {
    name,
    url: null,
    url_secret: null,
    function_name: "f",
    method: "POST",
    headers: {},
    secret_headers: {},
    max_attempts: 3,
    timeout_ms: 30_000,
    callback_timeout_ms: null,
    backoff_base_ms: 10_000,
    backoff_max_ms: 3_600_000,
    success_codes: null,
    retry_codes: null,
    rate_limit_per_second: null,
    slow_down: false,
    honor_retry_after: "job",
    per_key_concurrency: null,
    ordered: false,
    hold_key_on_failure: false,
    key_field: null,
    dead_letter_queue: null,
    on_success_queue: null,
    on_success_payload: "response",
    on_success_field: null,
    fan_out: false,
    fan_out_max: 100,
    alert_queue: null,
    alert_failure_rate: null,
    alert_oldest_due_ms: null,
    alert_dead_letters: null,
    alert_link: null,
    payload_schema: null,
    paused: false,
    managed_by: "supaqueue.yml",
    signing_key_secret: null,
    workers: 1,
    unfinished_jobs: 0,
    ...overrides,
  };
}

/** An installed database holding these queues (by name) and Vault secrets (by name), pg_cron 1.6, no schedule. */
export function installedState(
  queues: Record<string, Partial<ExistingQueue>> = {},
  secrets: Record<string, string> = {},
): InstalledState {
  return {
    schemaInstalled: true,
    appliedVersions: [1],
    recordedMigrations: [{ version: 1, name: "0001_supaqueue", checksum: "c1" }],
    maxCallTimeoutMs: 140_000,
    functionsUrl: "https://r.supabase.co/functions/v1",
    queues: new Map(Object.entries(queues).map(([name, q]) => [name, existingQueue(name, q)])),
    secrets: new Map(Object.entries(secrets).map(([name, value]) => [name, { id: `id-${name}`, value }])),
    cronVersion: "1.6",
    schedules: new Map(),
  };
}
