import type pg from "pg";
import { runDoctor } from "../install/doctor.ts";
import { runProbe } from "../install/probe.ts";

/**
 * Why no job finishes: the link of the loop that holds the jobs up, found from the database's own evidence. The
 * loop is walked in order (wakeups through pg_net, the function answering and claiming, tick, the targets, the
 * reports), and the first link that does not work is named, with what was seen there and what to do.
 */
export interface Diagnosis {
  link: string;
  message: string;
}

export interface StallOptions {
  /** How long the probe of the whole loop is given (default 3 s). */
  probeMs?: number;
}

/** What is in flight: claimed or not, past its queue's timeout or not; and what waits in pg_net's queue. */
interface InFlight {
  calls: number;
  claimed: number;
  /** Claimed calls whose queue's timeout has passed since the claim: the call has ended, its outcome is missing. */
  overdue: number;
  /** Seconds since the oldest claim of a call still in flight. */
  oldestClaimS: number | null;
  /** Requests waiting in pg_net's queue, not yet sent. */
  queued: number;
  /** Seconds since the last outcome was recorded (null: none yet). */
  lastOutcomeS: number | null;
}

async function inFlight(client: pg.ClientBase): Promise<InFlight> {
  const { rows } = await client.query<InFlight>(
    `select count(c.id)::int as calls,
            count(c.claimed_at)::int as claimed,
            count(c.id) filter (where c.claimed_at + make_interval(secs => q.timeout_ms / 1000.0)
                                       < clock_timestamp())::int as overdue,
            round(extract(epoch from clock_timestamp() - min(c.claimed_at)))::int as "oldestClaimS",
            (select count(*)::int from net.http_request_queue) as queued,
            (select round(extract(epoch from clock_timestamp() - max(a.finished_at)))::int
             from supaqueue.attempt a) as "lastOutcomeS"
     from supaqueue.current_job c
     join supaqueue.job j on j.id = c.job_id
     join supaqueue.queue q on q.id = j.queue_id`,
  );
  return rows[0] as InFlight;
}

/** The stuck link, from a probe of the whole loop, `supaqueue doctor`'s checks and the calls in flight. */
export async function diagnoseStall(pool: pg.Pool, options: StallOptions = {}): Promise<Diagnosis> {
  const probeMs = options.probeMs ?? 3_000;
  const client = await pool.connect();
  try {
    const flight = await inFlight(client);
    // Database → pg_net → execute_current_job → its claim RPC → database: what every call goes through first.
    const probe = await runProbe(client, { timeoutMs: probeMs, attemptMs: probeMs, pollMs: 100 });
    if (!probe.ok) {
      const waiting =
        probe.link === "pg_net" && flight.queued > 0
          ? ` (${flight.queued} request(s) wait in net.http_request_queue)`
          : "";
      return { link: probe.link, message: `${probe.message}${waiting}` };
    }
    const checks = await runDoctor(client, { probe: false, tickSilenceMs: 5_000 });
    const failed = (name: string) => checks.find((check) => check.name === name && !check.ok);
    const tick = failed("tick") ?? failed("calls past their lease");
    if (tick) return { link: "tick", message: `${tick.detail}: ${tick.fix}` };
    const failing = failed("failing queues");
    if (failing) {
      return { link: "targets", message: `the calls are made, and fail: ${failing.detail}` };
    }
    if (flight.overdue > 0) {
      return {
        link: "reports",
        message: `${flight.overdue} call(s) claimed by execute_current_job are past their queue's timeout with no outcome reported: its reports through supaqueue_complete_and_claim do not arrive (see the function's log); tick gives the calls back when their lease ends`,
      };
    }
    if (flight.claimed > 0) {
      return {
        link: "targets",
        message: `${flight.claimed} call(s) claimed by execute_current_job (the oldest ${flight.oldestClaimS} s ago) still wait for their targets' answers, within their queue's timeout`,
      };
    }
    const due = failed("oldest due job") ?? failed("wakeups");
    if (due) return { link: due.name, message: `${due.detail}: ${due.fix}` };
    return {
      link: "none found",
      message: `every link answers (a probe went round in ${probe.ms} ms), ${flight.calls} call(s) in flight, the last outcome ${flight.lastOutcomeS === null ? "never" : `${flight.lastOutcomeS} s ago`}`,
    };
  } finally {
    client.release();
  }
}

/** A diagnosis as the one line the demo prints. */
export function stallLine(diagnosis: Diagnosis, stalledMs: number): string {
  return `No job has finished for ${Math.round(stalledMs / 1000)} s. Stuck at ${diagnosis.link}: ${diagnosis.message}`;
}
