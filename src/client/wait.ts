import { WaitTimeoutError } from "./errors.js";
import { FINISHED, type Job, type WaitOptions } from "./types.js";

/** The clock and the pause between two looks, replaceable in tests. */
export interface Timing {
  now(): number;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("The wait was aborted", "AbortError");
}

/** setTimeout, cut short by the signal (the promise then rejects with its reason). */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortReason(signal));
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortReason(signal as AbortSignal));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

export const REAL_TIMING: Timing = { now: () => Date.now(), sleep };

/**
 * Looks at a job until it has finished, waiting longer between looks each time (from `intervalMs`, times 1.5, up to
 * `maxIntervalMs`) and never past the deadline. Each look is one short request: nothing waits on the server. Rejects
 * with a WaitTimeoutError at the deadline, or with the signal's reason once it aborts.
 */
export async function pollUntilFinished<P>(
  jobId: string,
  look: () => Promise<Job<P>>,
  options: WaitOptions,
  timing: Timing,
): Promise<Job<P>> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const deadline = timing.now() + timeoutMs;
  let interval = options.intervalMs ?? 100;
  const maxInterval = options.maxIntervalMs ?? 2_000;
  for (;;) {
    if (options.signal?.aborted) throw abortReason(options.signal);
    const job = await look();
    if (FINISHED.includes(job.status)) return job;
    const left = deadline - timing.now();
    if (left <= 0) throw new WaitTimeoutError(jobId, timeoutMs, job.status);
    await timing.sleep(Math.min(interval, left), options.signal);
    interval = Math.min(interval * 1.5, maxInterval);
  }
}
