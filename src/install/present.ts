import type { ConfigProblem } from "../config/types.ts";
import type { DeployResult, Plan, ScheduleChange } from "./model.ts";
import { describeTick } from "./tick.ts";
import { readKeyHint, secretLabel } from "./vault.ts";

const PAUSED_NOTE = "it is removed by a later run once its jobs are done";

/** The plan (or, with done, what was applied) as log lines. Never holds a secret value. */
export function planLines(plan: Plan, { done = false }: { done?: boolean } = {}): string[] {
  const lines: string[] = [];
  if (!done && plan.pendingMigrations.length > 0)
    lines.push(`migrations to apply: ${plan.pendingMigrations.join(", ")}`);
  if (!done && plan.prereleaseUpgrade)
    lines.push(
      "the pre-release install is replaced by this schema in one transaction: queues, jobs, calls in flight, history and Vault secrets are kept",
    );
  for (const q of plan.queues) {
    const workers = `${q.workers.to} worker${q.workers.to === 1 ? "" : "s"}`;
    if (q.action === "create")
      lines.push(`${done ? "created" : "create"} queue ${q.name} (${target(q.row)}, ${workers})`);
    else if (q.action === "update")
      lines.push(`${done ? "changed" : "change"} queue ${q.name}: ${q.changes.join("; ")}`);
  }
  for (const r of plan.removals) {
    const jobs = `${r.unfinishedJobs} unfinished job${r.unfinishedJobs === 1 ? "" : "s"}`;
    if (r.action === "remove")
      lines.push(`${done ? "removed" : "remove"} queue ${r.name} (not in the file, empty)`);
    else if (r.action === "pause")
      lines.push(`${done ? "paused" : "pause"} queue ${r.name} (not in the file, ${jobs}): ${PAUSED_NOTE}`);
    else lines.push(`queue ${r.name} stays paused (not in the file, ${jobs}): ${PAUSED_NOTE}`);
  }
  for (const s of plan.secrets) {
    const verb = {
      create: done ? "created" : "create",
      update: done ? "updated" : "update",
      delete: done ? "deleted" : "delete",
    }[s.action];
    lines.push(`${verb} Vault secret ${s.name} (${secretLabel(s.header)} of queue ${s.queue})`);
  }
  for (const k of plan.signing) {
    if (k.action === "create")
      lines.push(
        `queue ${k.queue}: signing key ${done ? "created" : "to create"}: read it with ${readKeyHint(k.queue)}`,
      );
    else
      lines.push(
        `queue ${k.queue}: signing key ${done ? "deleted" : "to delete"} (Vault secret ${k.vaultSecret})`,
      );
  }
  for (const s of plan.schedules) {
    const verb = {
      create: done ? "created" : "create",
      update: done ? "changed" : "change",
      remove: done ? "removed" : "remove",
      unchanged: "",
    }[s.action];
    if (s.action === "create") lines.push(`${verb} schedule ${s.name} (${scheduleText(s)})`);
    else if (s.action === "update") lines.push(`${verb} schedule ${s.name}: ${s.changes.join("; ")}`);
    else if (s.action === "remove") lines.push(`${verb} schedule ${s.name} (not in the file)`);
  }
  const unchanged = plan.queues.filter((q) => q.action === "unchanged").length;
  const schedules = plan.schedules.filter((s) => s.action === "unchanged").length;
  const schedulesNote =
    schedules > 0
      ? `; schedules: no changes (${schedules} schedule${schedules === 1 ? "" : "s"} up to date)`
      : "";
  if (lines.length === 0)
    lines.push(
      `queues: no changes (${unchanged} queue${unchanged === 1 ? "" : "s"} up to date)${schedulesNote}`,
    );
  else {
    if (unchanged > 0) lines.push(`${unchanged} other queue${unchanged === 1 ? "" : "s"} up to date`);
    if (schedules > 0) lines.push(`${schedules} other schedule${schedules === 1 ? "" : "s"} up to date`);
  }
  return lines;
}

/** "0 3 * * * → reports", the way a schedule reads in the plan. */
function scheduleText(s: ScheduleChange): string {
  return `${s.cron} → ${s.queue}`;
}

function target(row: Plan["queues"][number]["row"]): string {
  return row.function_name ? `${row.method} function ${row.function_name}` : `${row.method} ${row.url}`;
}

/** The `summary` output: what changed, as JSON. Names only, never a secret value. */
export function summaryJson(result: DeployResult) {
  const { plan } = result;
  return {
    dryRun: result.dryRun,
    changed: result.changed,
    schemaVersion: result.schemaVersion,
    migrations: result.migrations,
    functionUrl: result.functionUrl,
    functionsUrlChanged: result.functionsUrlChanged,
    ...(result.tick ? { tick: result.tick } : {}),
    ...(result.probe ? { probe: result.probe } : {}),
    ...(result.checks ? { health: result.checks } : {}),
    queues: {
      created: plan.queues.filter((q) => q.action === "create").map((q) => q.name),
      changed: plan.queues
        .filter((q) => q.action === "update")
        .map((q) => ({ name: q.name, changes: q.changes })),
      unchanged: plan.queues.filter((q) => q.action === "unchanged").map((q) => q.name),
      paused: plan.removals
        .filter((r) => r.action !== "remove")
        .map((r) => ({ name: r.name, unfinishedJobs: r.unfinishedJobs })),
      removed: plan.removals.filter((r) => r.action === "remove").map((r) => r.name),
    },
    workers: Object.fromEntries(plan.queues.map((q) => [q.name, q.workers.to])),
    secrets: plan.secrets.map((s) => ({ name: s.name, queue: s.queue, header: s.header, action: s.action })),
    schedules: {
      created: plan.schedules.filter((s) => s.action === "create").map((s) => s.name),
      changed: plan.schedules
        .filter((s) => s.action === "update")
        .map((s) => ({ name: s.name, changes: s.changes })),
      unchanged: plan.schedules.filter((s) => s.action === "unchanged").map((s) => s.name),
      removed: plan.schedules.filter((s) => s.action === "remove").map((s) => s.name),
    },
    signingKeys: plan.signing.map((k) => ({ queue: k.queue, action: k.action, vaultSecret: k.vaultSecret })),
  };
}

/** The job summary, in Markdown. */
export function summaryMarkdown(result: DeployResult): string {
  const { plan } = result;
  const out: string[] = [
    `## Supaqueue ${result.dryRun ? "plan (dry run: nothing was changed)" : "install"}`,
    "",
  ];
  out.push("| | |", "|---|---|");
  out.push(`| Schema version | ${result.schemaVersion ?? "not installed"} |`);
  out.push(
    `| Migrations ${result.dryRun ? "to apply" : "applied"} | ${result.migrations.length > 0 ? result.migrations.map((m) => `\`${m}\``).join(", ") : "none"} |`,
  );
  out.push(`| Function | ${result.functionUrl}${result.functionsUrlChanged ? " (changed)" : ""} |`);
  if (result.tick) out.push(`| Tick | ${escapeCell(describeTick(result.tick).replace(/^tick: /, ""))} |`);
  if (result.probe?.ok) out.push(`| The whole loop | a probe came back in ${result.probe.ms} ms |`);
  for (const check of result.checks ?? []) {
    out.push(
      `| ${escapeCell(check.name)} | ${check.ok ? "" : "**problem**: "}${escapeCell(check.detail)}${check.ok || !check.fix ? "" : ` — ${escapeCell(check.fix)}`} |`,
    );
  }
  out.push("");
  if (!result.changed) out.push("**No changes**: the database already matches the queue file.", "");
  const rows: string[] = [];
  for (const q of plan.queues) {
    const workers =
      q.workers.from === null || q.workers.from === q.workers.to
        ? `${q.workers.to}`
        : `${q.workers.from} → ${q.workers.to}`;
    const change = { create: "created", update: "changed", unchanged: "unchanged" }[q.action];
    rows.push(
      `| \`${q.name}\` | ${result.dryRun ? `would be ${change}` : change} | ${workers} | ${escapeCell(q.changes.join("; "))} |`,
    );
  }
  for (const r of plan.removals) {
    const change = r.action === "remove" ? "removed" : r.action === "pause" ? "paused" : "still paused";
    const detail =
      r.action === "remove"
        ? "not in the file; empty"
        : `not in the file; ${r.unfinishedJobs} unfinished job(s); ${PAUSED_NOTE}`;
    rows.push(`| \`${r.name}\` | ${result.dryRun ? `would be ${change}` : change} | | ${detail} |`);
  }
  if (rows.length > 0)
    out.push("### Queues", "", "| Queue | Change | Workers | Details |", "|---|---|---|---|", ...rows, "");
  if (plan.secrets.length > 0) {
    out.push(
      "### Header secrets in Vault",
      "",
      "| Vault secret | Queue | Header | Change |",
      "|---|---|---|---|",
    );
    for (const s of plan.secrets) out.push(`| \`${s.name}\` | \`${s.queue}\` | ${s.header} | ${s.action} |`);
    out.push("");
  }
  if (plan.signing.length > 0) {
    out.push("### Signing keys", "", "| Queue | Change | How to read the key |", "|---|---|---|");
    for (const k of plan.signing) {
      const change = k.action === "create" ? "signing key created" : "signing key deleted";
      const how = k.action === "create" ? `\`${readKeyHint(k.queue)}\`` : "";
      out.push(
        `| \`${k.queue}\` | ${result.dryRun ? `would be ${change.replace("signing key ", "")}` : change} | ${how} |`,
      );
    }
    out.push("");
  }
  if (plan.schedules.length > 0) {
    out.push("### Schedules", "", "| Schedule | Change | Cron | Queue | Details |", "|---|---|---|---|---|");
    for (const s of plan.schedules) {
      const change = { create: "created", update: "changed", unchanged: "unchanged", remove: "removed" }[
        s.action
      ];
      out.push(
        `| \`${s.name}\` | ${result.dryRun ? `would be ${change}` : change} | \`${escapeCell(s.cron)}\` | \`${s.queue}\` | ${escapeCell(s.action === "remove" ? "not in the file" : s.changes.join("; "))} |`,
      );
    }
    out.push("");
  }
  return out.join("\n");
}

function escapeCell(text: string): string {
  return text.replace(/\|/g, "\\|");
}

/** The job summary of a failed run: what stopped it, and for a bad queue file every problem with its place. */
export function failureMarkdown(message: string, problems: ConfigProblem[] = []): string {
  const out = ["## Supaqueue install failed", "", escapeCell(message), ""];
  if (problems.length > 0) {
    out.push("Nothing was changed.", "", "| Where | Field | Problem |", "|---|---|---|");
    for (const p of problems) {
      out.push(
        `| ${p.position.file}:${p.position.line}:${p.position.column} | \`${p.field}\` | ${escapeCell(p.message)} |`,
      );
    }
    out.push("");
  }
  return out.join("\n");
}
