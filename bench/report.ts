import type { BulkResult } from "./bulk.ts";
import { type ChainResult, summarize } from "./chain.ts";
import { CLAIM_STATES, type ClaimResult } from "./claim.ts";
import type { ClientResult } from "./client.ts";
import { CLAIM_WITHIN_MS, CYCLE_SHAPES, type CycleResult, REPORT_MODES, type ReportMode } from "./cycle.ts";
import type { DiagnosisResult } from "./diagnose.ts";
import type { EdgeResult } from "./edge.ts";
import type { Environment } from "./environment.ts";
import type { LimitResult } from "./limit.ts";
import type { PeersResult } from "./peers.ts";
import { FAN_OUT, type StepsResult } from "./steps.ts";
import { median } from "./support.ts";

/** Everything one `npm run bench` measured; sections that were skipped are absent. */
export interface BenchResults {
  env: Environment;
  repeats: number;
  minutes: number;
  loadAverageAtEnd: number[];
  /** Load average (1 min) when each section ended. */
  loadBySection: Record<string, number>;
  limit?: LimitResult;
  cycle?: CycleResult;
  bulk?: BulkResult;
  client?: ClientResult;
  claim?: ClaimResult;
  edge?: EdgeResult;
  peers?: PeersResult;
  diagnosis?: DiagnosisResult;
  chain?: ChainResult;
  steps?: StepsResult;
}

const int = (n: number | undefined) =>
  n === undefined || Number.isNaN(n) ? "–" : Math.round(n).toLocaleString("en-US");
const fixed = (n: number | undefined, digits = 2) =>
  n === undefined || Number.isNaN(n) ? "–" : n.toFixed(digits);
const ratio = (a: number | undefined, b: number | undefined) =>
  a === undefined || b === undefined || !b ? "–" : `${(a / b).toFixed(2)}`;
const verdict = (ok: boolean) => (ok ? "**met**" : "**missed**");
const spread = (values: number[] | undefined) => (values ?? []).map((v) => int(v)).join(" / ");

const REPORT_LABEL: Record<ReportMode, string> = {
  continued: "reports take the next calls (complete_and_claim), as execute_current_job does",
  woken: "reports without continuations (complete_current_jobs), next calls woken through pg_net",
};

export interface TargetRow {
  target: string;
  value: string;
  met: boolean;
}

/** The issue's targets, judged on this run's medians. */
export function targets(r: BenchResults): TargetRow[] {
  const rows: TargetRow[] = [];
  const update8 = r.limit?.median["update@8"];
  if (r.cycle && update8) {
    for (const mode of REPORT_MODES) {
      const best = Math.max(
        ...CYCLE_SHAPES.map((s) => r.cycle?.median[`${mode}|${s.label}`] ?? Number.NaN).filter(
          (v) => !Number.isNaN(v),
        ),
      );
      if (!Number.isFinite(best)) continue;
      rows.push({
        target: `cycle at 8 connections ≥ 0.50 × UPDATE@8 (${REPORT_LABEL[mode]}, best shape)`,
        value: `${int(best)} jobs/s = ${ratio(best, update8)} × ${int(update8)}`,
        met: best / update8 >= 0.5,
      });
    }
  }
  const keyed = CYCLE_SHAPES.find((s) => s.keys);
  const keyedCycle = keyed && r.cycle?.median[`continued|${keyed.label}`];
  if (keyed && keyedCycle && update8) {
    rows.push({
      target: `cycle of ${keyed.label} ≥ 0.50 × UPDATE@8 (reports take the next calls)`,
      value: `${int(keyedCycle)} jobs/s = ${ratio(keyedCycle, update8)} × ${int(update8)}`,
      met: keyedCycle / update8 >= 0.5,
    });
  }
  if (r.diagnosis && update8) {
    for (const v of r.diagnosis.variants) {
      rows.push({
        target: `database cycle alone (pgbench, section 7) at 8 connections ≥ 0.50 × UPDATE@8: ${v.label}`,
        value: `${int(v.tps8)} jobs/s = ${ratio(v.tps8, update8)} × ${int(update8)}`,
        met: v.tps8 / update8 >= 0.5,
      });
    }
  }
  if (r.bulk) {
    const sq = r.bulk.median.supaqueue;
    const copy = r.bulk.median.copy;
    if (sq !== undefined && copy !== undefined) {
      rows.push({
        target: "bulk enqueue ≥ 0.50 × trigger-less insert",
        value: `${int(sq)} rows/s = ${ratio(sq, copy)} × ${int(copy)}`,
        met: sq / copy >= 0.5,
      });
    }
  }
  if (r.client) {
    const { median: m, roundTripMedian: t } = r.client;
    rows.push({
      target: `client enqueueMany of ${int(r.client.jobs)} jobs through the PostgREST stand-in ≥ 0.50 × the same enqueue_many over a direct connection`,
      value: `${int(m.client)} jobs/s = ${ratio(m.client, m.direct)} × ${int(m.direct)}`,
      met: (m.client ?? 0) / (m.direct ?? Number.POSITIVE_INFINITY) >= 0.5,
    });
    rows.push({
      target: `client enqueueMany of ${int(r.client.jobs)} jobs ≥ 0.50 × a plain insert ... select of as many jobs over a direct connection`,
      value: `${int(m.client)} jobs/s = ${ratio(m.client, m.insert)} × ${int(m.insert)}`,
      met: (m.client ?? 0) / (m.insert ?? Number.POSITIVE_INFINITY) >= 0.5,
    });
    rows.push({
      target: "one client enqueue adds ≤ 2 ms (median) over the raw RPC",
      value: `${fixed(t.client)} − ${fixed(t.rpc)} = ${fixed((t.client ?? 0) - (t.rpc ?? 0))} ms`,
      met: (t.client ?? 0) - (t.rpc ?? 0) <= 2,
    });
  }
  if (r.claim) {
    for (const state of CLAIM_STATES.filter((s) => s.key !== "small")) {
      const small = r.claim.median["dispatch|small"];
      const large = r.claim.median[`dispatch|${state.key}`];
      if (small === undefined || large === undefined) continue;
      rows.push({
        target: `claim cost ${state.label} ÷ small ≤ 1.5`,
        value: `${int(large)} µs ÷ ${int(small)} µs = ${ratio(large, small)}`,
        met: large / small <= 1.5,
      });
    }
  }
  if (r.edge?.median) {
    const e = r.edge.median;
    rows.push({
      target: "edge added latency, median ≤ 5 ms",
      value: `${fixed(e.addedMedianMs)} ms`,
      met: e.addedMedianMs <= 5,
    });
    rows.push({
      target: "edge added latency, p99 ≤ 20 ms",
      value: `${fixed(e.addedP99Ms)} ms`,
      met: e.addedP99Ms <= 20,
    });
    rows.push({
      target: "edge peak memory ≤ 100 MB",
      value: `${fixed(e.peakRssMb, 0)} MB`,
      met: e.peakRssMb <= 100,
    });
  }
  if (r.chain) rows.push(...chainTargets(r.chain));
  return rows;
}

/** The whole chain's targets: throughput against direct calls, hops per job, and the function's memory. */
function chainTargets(c: ChainResult): TargetRow[] {
  const rows: TargetRow[] = [];
  const row = (key: string) => c.rows.find((x) => x.key === key);
  for (const [key, label, floor] of [
    ["w100@50", "100 workers", 0.8],
    ["w1@50", "1 worker", 0.7],
  ] as const) {
    const found = row(key);
    if (!found) continue;
    const s = summarize(found);
    rows.push({
      target: `whole chain, ${label}, 50 ms target ≥ ${floor} × direct calls`,
      value: `${int(s.chainJobsPerSecond)} ÷ ${int(s.directJobsPerSecond)} jobs/s = ${fixed(s.ratio)} (repeats ${s.ratios.map((x) => fixed(x)).join(" / ")})`,
      met: s.ratio >= floor,
    });
  }
  const w100 = c.rows.filter((x) => x.key.startsWith("w100@"));
  for (const [what, pick] of [
    ["pg_net requests", (s: ReturnType<typeof summarize>) => s.requestsPerJob],
    ["function invocations", (s: ReturnType<typeof summarize>) => s.invocationsPerJob],
  ] as const) {
    if (w100.length === 0) continue;
    const values = w100.map((x) => ({ delay: x.delayMs, value: pick(summarize(x)) }));
    rows.push({
      target: `whole chain, 100 workers: ${what} per job ≤ 0.1`,
      value: values.map((v) => `${fixed(v.value, 4)} (${v.delay} ms target)`).join(", "),
      met: values.every((v) => v.value <= 0.1),
    });
  }
  const memory = c.memory?.variants[0];
  if (memory) {
    rows.push({
      target:
        "whole chain: the function's peak memory, 100 calls in flight with 64 KB payloads and answers ≤ 150 MB",
      value: `${fixed(memory.peakRssMb, 0)} MB (repeats ${memory.runs.map((x) => fixed(x.peakRssMb, 0)).join(" / ")})`,
      met: memory.peakRssMb <= 150,
    });
  }
  return rows;
}

export function renderResults(r: BenchResults): string {
  const out: string[] = [];
  const e = r.env;
  const update8 = r.limit?.median["update@8"];
  const update1 = r.limit?.median["update@1"];
  out.push("# Supaqueue benchmark results", "");
  out.push(
    `Generated by \`npm run bench\` (bench/run.ts) on ${e.date.slice(0, 16).replace("T", " ")} UTC in ${fixed(r.minutes, 1)} minutes. ` +
      `Every figure is the median of ${r.repeats} repeats (each repeat on a fresh database) unless said otherwise; ` +
      "ratios are to the limit measured in the same run. A benchmark measures: it does not pass or fail CI.",
    "",
  );

  out.push("## Machine, versions, settings", "");
  out.push(`- CPU: ${e.cpuModel}, ${e.cores} cores; memory ${fixed(e.memoryGb, 1)} GB`);
  out.push(
    `- Load average (1/5/15 min) at start ${e.loadAverageAtStart.map((l) => fixed(l, 1)).join(" / ")}, ` +
      `at end ${r.loadAverageAtEnd.map((l) => fixed(l, 1)).join(" / ")}; after each section: ` +
      `${Object.entries(r.loadBySection)
        .map(([k, v]) => `${k} ${fixed(v, 1)}`)
        .join(", ")}. The machine is shared: other work running at the same time shows up as noise.`,
  );
  out.push(
    `- ${e.postgres}${e.embeddedServer ? " (embedded, started by the bench)" : " (the machine's server)"}`,
  );
  out.push(`- ${e.pgbench}; Node ${e.node}; ${e.deno}`);
  out.push(
    `- Peers: ${Object.entries(e.peers)
      .map(([k, v]) => `${k} ${v}`)
      .join(", ")}`,
  );
  out.push(
    `- Server settings: ${Object.entries(e.settings)
      .map(([k, v]) => `${k}=${v}`)
      .join(", ")}`,
  );
  out.push("");

  const rows = targets(r);
  if (rows.length) {
    out.push("## Targets (issue 6)", "", "| Target | This run | |", "|---|---|---|");
    for (const t of rows) out.push(`| ${t.target} | ${t.value} | ${verdict(t.met)} |`);
    out.push("");
  }

  if (r.limit) {
    const l = r.limit;
    out.push("## 1. The limit: single-row transactions (pgbench)", "");
    out.push(
      `Custom pgbench scripts, ${l.seconds} s each, autocommit: \`insert into t (payload) values ('{}')\` into a table ` +
        "with an identity key, and `update t set n = n + 1 where id = :random` over 100,000 rows.",
      "",
      "| Transaction | Connections | tps (median) | repeats | ÷ UPDATE@8 |",
      "|---|---|---|---|---|",
    );
    for (const kind of ["insert", "update"]) {
      for (const c of [1, 8]) {
        const key = `${kind}@${c}`;
        out.push(
          `| single-row ${kind.toUpperCase()} | ${c} | ${int(l.median[key])} | ${spread(l.runs[key])} | ${ratio(l.median[key], update8)} |`,
        );
      }
    }
    out.push("");
  }

  if (r.cycle) {
    const c = r.cycle;
    out.push("## 2. Supaqueue's database cycle", "");
    out.push(
      `${int(c.jobs)} jobs enqueued in bulk, then the workers inserted. The HTTP hops are played by one Node process ` +
        "so that only the database's work counts. One session plays pg_net's worker: it takes committed wakeups " +
        "from net.http_request_queue, up to 200 at a time, hands them out and waits until every one has been " +
        "claimed (pg_net waits for every request of its batch), polling every millisecond for the next (real " +
        "pg_net is woken by a latch). 8 connections as service_role play the function: a wakeup's calls are " +
        "claimed with `supaqueue.claim_current_jobs`, made at once, and their outcomes reported as " +
        "functions/execute_current_job/reporter.ts reports (an outcome that finds a connection idle goes alone; " +
        "those that arrive while all are busy go together in the next report, up to 100). Continued: reports " +
        `through \`supaqueue.complete_and_claim(outcomes, ${CLAIM_WITHIN_MS})\`, whose next calls go straight back to the ` +
        "connections, as the function does while its instance may go on. Woken: reports through " +
        "`supaqueue.complete_current_jobs(outcomes)`, whose next calls get a wakeup at commit (the reference " +
        "without continuations). Jobs per second from the first claim to the last success, all in one Node process " +
        "on the same 2 cores as the server.",
      "",
      "| Shape | Reports | jobs/s (median) | repeats | ÷ UPDATE@8 | ÷ UPDATE@1 | pg_net requests per job | outcomes per report |",
      "|---|---|---|---|---|---|---|---|",
    );
    for (const mode of REPORT_MODES) {
      for (const s of CYCLE_SHAPES) {
        const key = `${mode}|${s.label}`;
        if (c.median[key] === undefined) continue;
        out.push(
          `| ${s.label} | ${REPORT_LABEL[mode]} | ${int(c.median[key])} | ${spread(c.runs[key])} | ${ratio(c.median[key], update8)} | ${ratio(c.median[key], update1)} | ${fixed(c.requestsPerJob[key], 3)} | ${fixed(c.outcomesPerReport[key], 1)} |`,
        );
      }
    }
    out.push("");
  }

  if (r.bulk) {
    const b = r.bulk;
    out.push("## 3. Bulk enqueue", "");
    out.push(
      `One \`insert ... select\` of ${int(b.jobs)} jobs into a queue with 10 free workers. The fair copy is ` +
        "`create table ... (like supaqueue.job including all)`: same columns, defaults (uuid, identity), checks and " +
        "all five indexes, partial ones included; no foreign key (LIKE never copies one) and no trigger. A foreign key " +
        "is itself a per-row trigger, so the target is judged against that copy; a second copy with the foreign key " +
        "to supaqueue.queue added shows how much of the gap is the key.",
      "",
      "| Table | rows/s (median) | repeats | ÷ copy without triggers |",
      "|---|---|---|---|",
    );
    const names: Record<string, string> = {
      supaqueue: "supaqueue.job (FK + dispatch trigger)",
      copy: "copy, no triggers",
      "copy+fk": "copy + foreign key",
    };
    for (const key of ["supaqueue", "copy+fk", "copy"]) {
      out.push(
        `| ${names[key]} | ${int(b.median[key])} | ${spread(b.runs[key])} | ${ratio(b.median[key], b.median.copy)} |`,
      );
    }
    out.push("");
  }

  if (r.client) {
    const c = r.client;
    out.push("## 3b. The client (src/client on supabase-js)", "");
    out.push(
      `enqueueMany of ${int(c.jobs)} jobs (payloads checked against the queue's schema first) through the PostgREST ` +
        "stand-in, which runs each RPC as service_role in its own transaction, against the same " +
        "supaqueue.enqueue_many over a direct connection and a plain `insert ... select` of as many jobs; then one enqueue at a time, the client against the raw " +
        `supabase.rpc("supaqueue_enqueue") through the same stand-in, ${int(c.roundTrips)} of each, alternating. ` +
        "The stand-in is a Node server, not PostgREST: it reads the function's signature on every call.",
      "",
      "| | median | repeats |",
      "|---|---|---|",
      `| enqueueMany through the stand-in, jobs/s | ${int(c.median.client)} | ${spread(c.runs.client)} |`,
      `| enqueue_many over a direct connection, jobs/s | ${int(c.median.direct)} | ${spread(c.runs.direct)} |`,
      `| insert into supaqueue.job ... select over a direct connection, jobs/s | ${int(c.median.insert)} | ${spread(c.runs.insert)} |`,
      `| one client enqueue, ms | ${fixed(c.roundTripMedian.client)} | ${(c.roundTrip.client ?? []).map((v) => fixed(v)).join(" / ")} |`,
      `| one raw rpc("supaqueue_enqueue"), ms | ${fixed(c.roundTripMedian.rpc)} | ${(c.roundTrip.rpc ?? []).map((v) => fixed(v)).join(" / ")} |`,
      "",
    );
  }

  if (r.claim) {
    const c = r.claim;
    out.push("## 4. Claim cost as the system grows", "");
    out.push(
      "Server-side time (clock_timestamp) of one `supaqueue._dispatch(target, 1)` (claim a free worker and the next " +
        "due job, start the call) and of one `supaqueue.enqueue('target')` into a queue with a free worker (insert, " +
        `statement trigger, the same dispatch), each rolled back in a subtransaction; ${c.iterations} of each per ` +
        "repeat, median per repeat, vacuum between repeats. The small state: one queue, 10 free workers, 1 due job.",
      "",
      "| State | dispatch µs | ÷ small | p90 µs | enqueue µs | ÷ small | p90 µs | buffers: worker claim / job claim | job table MB |",
      "|---|---|---|---|---|---|---|---|---|",
    );
    for (const s of CLAIM_STATES) {
      const d = c.median[`dispatch|${s.key}`];
      const q = c.median[`enqueue|${s.key}`];
      out.push(
        `| ${s.label} | ${int(d)} | ${ratio(d, c.median["dispatch|small"])} | ${int(c.p90[`dispatch|${s.key}`])} | ${int(q)} | ${ratio(q, c.median["enqueue|small"])} | ${int(c.p90[`enqueue|${s.key}`])} | ${c.buffers[s.key]?.worker ?? "–"} / ${c.buffers[s.key]?.job ?? "–"} | ${fixed(c.buffers[s.key]?.tableMb, 0)} |`,
      );
    }
    out.push("");
  }

  out.push("## 5. The edge function's own cost", "");
  if (!r.edge) {
    out.push("Not run in this session.", "");
  } else if (!r.edge.available) {
    out.push(
      `Not measured: ${r.edge.reason}. The code path (bench/edge.ts) is ready and runs once it exists.`,
      "",
    );
  } else {
    const m = r.edge.median;
    out.push(
      `The real execute_current_job in Deno (served like the tests serve it), ${int(r.edge.calls)} calls one at a time ` +
        "per repeat after 200 warm-up calls, a fresh Deno process per repeat. A local Node server plays " +
        "SUPABASE_URL without a database (the claim RPC hands out one call's details, the report RPC finishes the " +
        "ids it was sent and hands back no next call); the target is a Node server in a process of its own " +
        "(200 at once). End to end: POST of a wakeup naming one call, signed as the database signs it (before the " +
        "clock starts) → the function checks it, claims the call and answers 200 → it calls the target → its report " +
        "arrives. Direct: the same client calls the target, interleaved call by call. Added = end to end − direct.",
      "",
      "| Figure | median | p99 |",
      "|---|---|---|",
      `| POST of the wakeup → 200 once claimed (what pg_net waits for) | ${fixed(m?.acceptMedianMs)} ms | |`,
      `| end to end through the function | ${fixed(m?.endToEndMedianMs)} ms | ${fixed(m?.endToEndP99Ms)} ms |`,
      `| calling the target directly | ${fixed(m?.directMedianMs)} ms | ${fixed(m?.directP99Ms)} ms |`,
      `| **added by the function** | **${fixed(m?.addedMedianMs)} ms** | **${fixed(m?.addedP99Ms)} ms** |`,
      "",
      `Deno's resident memory: ${fixed(m?.idleRssMb, 0)} MB once started, peak ${fixed(m?.peakRssMb, 0)} MB ` +
        `(VmHWM) over the calls; repeats ${(r.edge.runs ?? []).map((x) => fixed(x.peakRssMb, 0)).join(" / ")} MB.`,
      "",
    );
    const c = r.edge.capped;
    if (c) {
      out.push(
        `One more run with V8's heap bounded (\`DENO_V8_FLAGS=${r.edge.cappedFlags}\`): peak ${fixed(c.peakRssMb, 0)} MB, ` +
          `added ${fixed(c.addedMedianMs)} ms median / ${fixed(c.addedP99Ms)} ms p99. If it stays this low and the ` +
          "calls still succeed, the peak above is garbage V8 had not yet collected (it sizes its heap lazily), not " +
          "memory the function holds.",
        "",
      );
    }
  }

  if (r.peers) {
    const p = r.peers;
    out.push("## 6. Peers on the same server", "");
    out.push(
      `${int(p.jobs)} no-op jobs inserted in bulk, then processed one job per fetch and one completion per job by 8 ` +
        "concurrent workers (the 8 connections of section 2). graphile-worker runs its own runner (concurrency 8). " +
        "pg-boss's work() sleeps at least 0.5 s after each fetch, so the bench drives pg-boss's own fetch() " +
        "(batch size 1) and complete() in 8 loops: the same SQL, without the sleep.",
      "",
      "| Queue | jobs/s (median) | repeats | ÷ UPDATE@8 |",
      "|---|---|---|---|",
    );
    for (const [name, v] of Object.entries(p.median)) {
      out.push(
        `| ${name} ${p.versions[name] ?? ""} | ${int(v)} | ${spread(p.runs[name])} | ${ratio(v, update8)} |`,
      );
    }
    if (r.cycle) {
      for (const mode of REPORT_MODES) {
        const key = `${mode}|100 workers, 1 queue`;
        if (r.cycle.median[key] !== undefined)
          out.push(
            `| Supaqueue, 100 workers (section 2, ${REPORT_LABEL[mode]}) | ${int(r.cycle.median[key])} | ${spread(r.cycle.runs[key])} | ${ratio(r.cycle.median[key], update8)} |`,
          );
      }
    }
    out.push("");
  }

  if (r.diagnosis) out.push(renderDiagnosis(r.diagnosis));
  if (r.chain) out.push(renderChain(r.chain, r.loadBySection.chain));
  if (r.steps) out.push(renderSteps(r.steps));
  out.push(
    "## What limits Supaqueue, and what would help",
    "",
    "The reading of these figures (where the time goes, what the new hop changed, what is still missed and why, " +
      "and the product changes recommended) is in [ANALYSIS.md](ANALYSIS.md), which names the run it was written " +
      "from; the tables above are regenerated by every run.",
    "",
  );
  return `${out.join("\n")}\n`;
}

function renderDiagnosis(d: DiagnosisResult): string {
  const out: string[] = [];
  out.push("## 7. Diagnosis: where a completion's time goes", "");
  out.push(
    `pgbench reports outcomes directly against one queue of 400 workers and ${int(d.backlog)} pending jobs, newest ` +
      "call first (the oldest current_job ids are dead rows until vacuum, and walking them would bill the driver's " +
      "lookup to Supaqueue), one or a batch of the newest calls in flight per report: " +
      "`supaqueue.complete_current_jobs((select jsonb_agg(...) from (select id from supaqueue.current_job order by " +
      "id desc limit N for update skip locked) c))` followed by a second transaction that takes the wakeup it sent " +
      "(as pg_net does) and claims its calls with `supaqueue.claim_current_jobs` (next calls woken), or " +
      `\`supaqueue.complete_and_claim(..., ${CLAIM_WITHIN_MS})\`, which claims the next calls in the report's own ` +
      "transaction (next calls claimed: no wakeup). Each script is the whole database cycle of its jobs (finish " +
      "the attempts, claim the next jobs, start their calls, hand them to the function). Jobs per second are " +
      `counted from the jobs that succeeded during the run; ${d.seconds} s per figure, median of ${d.repeats}, ` +
      "vacuum before each. " +
      '"1 conn, sync off" is the server\'s work per job without the WAL flush; "8 conn" uses the server\'s own settings.',
    "",
    "| Reports | µs per job (1 conn, sync off) | jobs/s, 1 conn, sync off | jobs/s, 8 conn | ÷ UPDATE@8 |",
    "|---|---|---|---|---|",
  );
  for (const v of d.variants) {
    out.push(
      `| ${v.label} | ${int(1e6 / v.tpsCpu)} | ${int(v.tpsCpu)} | ${int(v.tps8)} | ${ratio(v.tps8, d.update8)} |`,
    );
  }
  for (const [way, label] of [
    ["woken", "the next call woken through pg_net, then claimed from its wakeup"],
    ["claimed", "the next call claimed in the same transaction (complete_and_claim)"],
  ] as const) {
    out.push(
      "",
      `Per-function time per call, one outcome reported alone, ${label} (track_functions = all, 1 connection, ` +
        "sync off):",
      "",
      "| Function | total µs | self µs |",
      "|---|---|---|",
    );
    for (const f of d.functions[way])
      out.push(`| ${f.name} | ${fixed(f.totalUs, 0)} | ${fixed(f.selfUs, 0)} |`);
  }
  out.push("");
  if (d.profile) {
    out.push(
      `Statement profile of one outcome reported alone with its next call claimed (auto_explain with ANALYZE in ` +
        `one session, ${d.profile.calls} reports, as shipped; ` +
        "inclusive times, inflated alike by the timing itself, so read them as a ranking):",
      "",
      "| Statement (first line) | mean ms, inclusive |",
      "|---|---|",
    );
    for (const s of d.profile.statements.slice(0, 14)) {
      out.push(`| \`${s.statement.replace(/\|/g, "\\|")}\` | ${fixed(s.meanMs, 3)} |`);
    }
    out.push("", "| Trigger | mean ms |", "|---|---|");
    for (const t of d.profile.triggers) out.push(`| ${t.name} | ${fixed(t.meanMs, 3)} |`);
    out.push("");
  }
  if (d.waits.length) {
    out.push(
      "Wait events of the database's active backends during the first 8-connection run (sampled every 10 ms):",
      "",
    );
    for (const w of d.waits) {
      out.push(
        `- ${w.variant}: ${w.shares.map((s) => `${s.wait} ${(s.share * 100).toFixed(0)}%`).join(", ")}`,
      );
    }
    out.push("");
  }
  if (d.claimBuffers) {
    const b = d.claimBuffers;
    out.push(
      `Finding the next due job (EXPLAIN (ANALYZE, BUFFERS) of the claim query) read ${int(b.afterCompletions)} ` +
        `buffers after ${int(b.completions)} completions since the last vacuum, and ${int(b.afterVacuum)} right ` +
        "after a vacuum: the claimed jobs' dead entries stay at the head of job_pending_due_idx until vacuum.",
      "",
    );
  }
  return out.join("\n");
}

function renderChain(c: ChainResult, load: number | undefined): string {
  const out: string[] = [];
  out.push("## 8. The whole chain", "");
  out.push(
    "Nothing played by the benchmark: Postgres with Supaqueue installed (a fresh database per run), the pg_net " +
      "worker stand-in with pg_net's batch semantics (up to 200 requests a batch, waits for all of them, then for " +
      "a commit or 1 s), the gateway stand-in (one origin for /rest/v1 and /functions/v1), the PostgREST stand-in " +
      "answering the function's RPCs from the database as service_role, the real execute_current_job in real Deno " +
      "(a fresh process per run: a fresh edge worker, its lifetime budgets at zero), a Node target in a process of " +
      "its own answering after 0 or 50 ms, and tick() every second as pg_cron runs it. The jobs are enqueued up " +
      "front in one bulk insert into queues whose workers are idle; the clock runs from that insert until the " +
      "report that finished the last job has committed. Direct: the same Node client (fetch) calls the target " +
      "with as many loops as workers, the same number of calls, just before each chain run (direct, chain, " +
      `direct, chain, ...). Medians of ${c.rows[0]?.chain.length ?? 0} repeats; load average (1 min) after the ` +
      `section ${fixed(load, 1)}. Everything shares the same 2 cores.`,
    "",
    "Gap per call: workers × run time, less the time the target spent on calls, per job: how long a worker waited " +
      "between two calls (the hops, the claim, the report, and waits for CPU). Machine busy: the share of both " +
      "cores busy during the run, every process counted (the other work on this shared machine too). First call: " +
      "from the enqueue to the first call's arrival at the target (commit, wakeup, pg_net, a fresh function).",
    "",
    "| Shape | Target | Jobs | chain jobs/s | direct jobs/s | chain ÷ direct | repeats | gap per call, ms: chain / direct | machine busy: chain / direct | first call ms |",
    "|---|---|---|---|---|---|---|---|---|---|",
  );
  const percent = (share: number) => `${fixed(share * 100, 0)} %`;
  for (const row of c.rows) {
    const s = summarize(row);
    out.push(
      `| ${row.label} | ${row.delayMs} ms | ${int(row.jobs)} | ${int(s.chainJobsPerSecond)} | ${int(s.directJobsPerSecond)} | **${fixed(s.ratio)}** | ${s.ratios.map((x) => fixed(x)).join(" / ")} | ${fixed(s.gapMs.chain, 1)} / ${fixed(s.gapMs.direct, 1)} | ${percent(s.machineBusy.chain)} / ${percent(s.machineBusy.direct)} | ${int(s.firstCallMs)} |`,
    );
  }
  out.push(
    "",
    "What each run cost. CPU from /proc: the Deno process; the backends of the run's database (the PostgREST " +
      "stand-in's pool, the pg_net worker stand-in, which polls every 5 ms where pg_net waits on a latch, and the " +
      "ticker); this Node process (the gateway, PostgREST and pg_net stand-ins, and the harness), and the same " +
      "process during the direct run (its client; the target has a process of its own in both). Requests and " +
      "invocations: pg_net's requests, and those that " +
      "reached /functions/v1/execute_current_job. Reports without continuation: sent with claim_within_ms = 0, " +
      "once the instance had reached a limit of its lifetime (lifetime.ts: 5,000 calls, 1.5 s of CPU). DB ms: time " +
      "inside supaqueue.complete_and_claim per report (track_functions). At low rates (1 worker, 50 ms) the CPU " +
      "per job is mostly the stand-ins' idle polling (pg_net's every 5 ms, the harness's) spread over few jobs.",
    "",
    "| Shape | Target | CPU ms per 1,000 jobs: Deno / Postgres / Node (direct: Node) | pg_net requests per job | invocations per job | outcomes per report | reports without continuation | DB ms per report | Deno peak MB |",
    "|---|---|---|---|---|---|---|---|---|",
  );
  for (const row of c.rows) {
    const s = summarize(row);
    const cpu = s.cpuPerThousandJobs;
    out.push(
      `| ${row.label} | ${row.delayMs} ms | ${int(cpu.deno)} / ${int(cpu.postgres)} / ${int(cpu.node)} (${int(cpu.directNode)}) | ${fixed(s.requestsPerJob, 4)} | ${fixed(s.invocationsPerJob, 4)} | ${fixed(s.outcomesPerReport, 1)} | ${int(s.reportsWithoutContinuation)} | ${fixed(s.dbMsPerReport)} | ${fixed(s.peakRssMb, 0)} |`,
    );
  }
  out.push("");
  if (c.memory) {
    const m = c.memory;
    out.push(
      `Memory: 100 workers on one queue, a 50 ms target, ${int(m.jobs)} jobs, config.max_response_chars raised to ` +
        `${int(m.maxResponseChars)} so that the database would keep a whole 64 KB answer; the Deno process's VmHWM ` +
        "at the end of the run (a fresh process per run). The longest answer the attempts kept shows how much of " +
        "each answer the function read.",
      "",
      "| Load | Deno peak MB | runs | calls in flight at most | jobs/s | longest answer kept (chars) |",
      "|---|---|---|---|---|---|",
    );
    for (const v of m.variants) {
      const last = v.runs[v.runs.length - 1];
      out.push(
        `| ${v.label} | ${fixed(v.peakRssMb, 0)} | ${v.runs.map((x) => fixed(x.peakRssMb, 0)).join(" / ")} | ${last?.maxInFlight ?? "–"} | ${int(median(v.runs.map((x) => x.jobsPerSecond)))} | ${int(last?.longestResponseChars)} |`,
      );
    }
    out.push("");
  }
  return out.join("\n");
}

/** Section 9: what an on_success step costs against the enqueue a user would make instead. */
function renderSteps(s: StepsResult): string {
  const out: string[] = [];
  out.push("## 9. Chain steps: what an on_success step costs (issue 14)", "");
  out.push(
    `Four queues with ${int(s.jobs)} calls each in flight (jobs enqueued, ${int(s.jobs)} workers inserted, the calls ` +
      "claimed with `supaqueue_claim_current_jobs`; none of it timed), then reported done " +
      `${s.batch} outcomes a call with \`public.supaqueue_complete_current_jobs\` as service_role, as the function ` +
      "reports: a plain queue and a chain queue (on_success_queue, payload 'response'), both answered with a small " +
      `JSON object; a plain queue and a fan-out queue (fan_out), both answered with an array of ${FAN_OUT} objects. ` +
      `In the same rounds, on a second connection as the installer role: \`supaqueue.enqueue_many\` of ${s.batch} ` +
      `and of ${int(s.batch * FAN_OUT)} jobs a call, ${s.batch} \`supaqueue.enqueue\` calls in one statement (as a ` +
      `trigger on a user's table makes them) and ${s.rpcPerRound} of one round trip each (as a backend makes ` +
      "them), with the same payloads. Every operation runs once a round, in a shuffled order, so all meet the " +
      "same load and table sizes. Every queue the jobs go into is **paused and has no workers**: nothing runs them " +
      "and neither side starts a call (a chain step's dispatch counts the next queue's free workers and finds none; " +
      "an enqueue's dispatch stops at the paused queue, where with no workers alone it would still lock as many " +
      "pending jobs as it inserted). After each repeat every source job must have succeeded without a step error " +
      "and every next job must exist once, pending, with its parent. Cost of a step = (reports to the chain queue " +
      "− reports to its plain queue) ÷ jobs created. In the server: the time inside the statements " +
      "(clock_timestamp() − statement_timestamp()), no round trip, no commit; wall: by the client's clock, each " +
      "call's round trip and commit included (a step shares its report's commit; an enqueue commits on its own).",
    "",
    `| Next job made by | µs per job, in the server | repeats | µs per job, wall | repeats | the step above ÷ this, in the server | wall |`,
    "|---|---|---|---|---|---|---|",
  );
  const us = (values: number[] | undefined) => (values ?? []).map((v) => fixed(v, 1)).join(" / ");
  /** The median of the repeats' own ratios (each repeat's two figures met the same load). */
  const ratioOf = (a: number[] | undefined, b: number[] | undefined) => {
    const ratios = (a ?? []).map((x, i) => x / (b?.[i] ?? Number.NaN)).filter((x) => Number.isFinite(x));
    return ratios.length ? `${fixed(median(ratios))} (${ratios.map((x) => fixed(x)).join(" / ")})` : "–";
  };
  const rows: [string, string, string | null][] = [
    ["**chain step**: one job per success (reports to the chain queue − plain reports)", "step", null],
    [`supaqueue.enqueue_many, ${s.batch} jobs a call`, "many", "step"],
    [`supaqueue.enqueue, ${s.batch} calls in one statement (a trigger)`, "enqueueSql", "step"],
    ["supaqueue.enqueue, one round trip and commit each (a backend)", "enqueueRpc", "step"],
    [
      `**fan-out step**: ${FAN_OUT} jobs per success (reports to the fan-out queue − plain reports)`,
      "fanOutStep",
      null,
    ],
    [`supaqueue.enqueue_many, ${int(s.batch * FAN_OUT)} jobs a call`, "manyFan", "fanOutStep"],
  ];
  for (const [label, key, against] of rows) {
    out.push(
      `| ${label} | ${fixed(s.median.server[key], 1)} | ${us(s.server[key])} | ${fixed(s.median.wall[key], 1)} | ${us(s.wall[key])} | ${against ? ratioOf(s.server[against], s.server[key]) : ""} | ${against ? ratioOf(s.wall[against], s.wall[key]) : ""} |`,
    );
  }
  out.push(
    "",
    "The reports themselves, µs per outcome reported (the steps' jobs included):",
    "",
    "| Report of 100 outcomes to | in the server | repeats | wall | repeats |",
    "|---|---|---|---|---|",
  );
  for (const [label, key] of [
    ["plain queue, object bodies", "plain"],
    ["chain queue, object bodies", "chain"],
    [`plain queue, bodies of ${FAN_OUT} items`, "plainArray"],
    [`fan-out queue, bodies of ${FAN_OUT} items`, "fanOut"],
  ] as const) {
    const k = `report|${key}`;
    out.push(
      `| ${label} | ${fixed(s.median.server[k], 1)} | ${us(s.server[k])} | ${fixed(s.median.wall[k], 1)} | ${us(s.wall[k])} |`,
    );
  }
  out.push(
    "",
    "How each report's time moved during a repeat, in the server: the median of the last tenth of the rounds ÷ that " +
      "of the first tenth (1: the same all along; repeats). A chain report that grows while its plain report does " +
      "not is paying for something that grows with the tables (ANALYSIS.md, section 8): " +
      [
        ["plain", "plain"],
        ["chain", "chain"],
        ["plainArray", "plain, array bodies"],
        ["fanOut", "fan-out"],
      ]
        .map(([key, label]) => `${label} ${(s.growth[key as string] ?? []).map((v) => fixed(v)).join(" / ")}`)
        .join("; ") +
      ".",
  );
  // Per outcome for the reports (the chain's one job per outcome, the fan-out's ten), per job for the enqueues.
  const columns: [string, string, number][] = [
    ["plain report", "plain", s.batch],
    ["chain report", "chain", s.batch],
    ["plain report, array bodies", "plainArray", s.batch],
    ["fan-out report", "fanOut", s.batch],
    [`enqueue_many ×${s.batch}`, "many", s.batch],
    [`enqueue_many ×${int(s.batch * FAN_OUT)}`, "manyFan", s.batch * FAN_OUT],
    [`${s.batch} × enqueue in one statement`, "enqueueSql", s.batch],
  ];
  const per = (ms: number, jobs: number) => (ms * 1000) / (s.profile.rounds * jobs);
  const timeOf = (key: string, name: string) =>
    s.profile.ops[key]?.find((f) => f.name === name && f.calls > 0);
  const names = [
    ...new Set(columns.flatMap(([, key]) => (s.profile.ops[key] ?? []).map((f) => f.name))),
  ].filter(
    (name) =>
      // The public wrapper only calls supaqueue.complete_current_jobs; functions under 0.5 µs everywhere are left out.
      !name.startsWith("supaqueue_") &&
      columns.some(([, key, jobs]) => per(timeOf(key, name)?.totalMs ?? 0, jobs) >= 0.5),
  );
  out.push(
    "",
    `Where the time goes: one more database, ${s.profile.rounds} rounds with track_functions = all, each call in a ` +
      "transaction of its own that reads its functions' times before it commits (pg_stat_xact_user_functions). " +
      `µs inclusive / self, per outcome for the reports (a chain step makes one job per outcome, a fan-out ${FAN_OUT}), ` +
      "per job for the enqueues. Timing every function call inflates the figures: read them as a ranking.",
    "",
    `| Function | ${columns.map(([label]) => label).join(" | ")} |`,
    `|---|${columns.map(() => "---").join("|")}|`,
  );
  for (const name of names) {
    const cells = columns.map(([, key, jobs]) => {
      const f = timeOf(key, name);
      return f ? `${fixed(per(f.totalMs, jobs), 1)} / ${fixed(per(f.selfMs, jobs), 1)}` : "";
    });
    out.push(`| ${name} | ${cells.join(" | ")} |`);
  }
  out.push("");
  return out.join("\n");
}
