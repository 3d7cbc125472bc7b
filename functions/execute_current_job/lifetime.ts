/**
 * An instance's lifetime: the limits it runs under (Lifetime) and the budget it spends against them (startBudget).
 * handler.ts counts each call it starts, releases a call whose timeout no longer fits in timeLeft(), lets each report
 * claim next calls only within claimWithinMs(), and retires the budget when the runtime rate-limits or shuts down the
 * worker, or when the handler's own retire() is called. Like handler.ts it reads no environment and uses no Deno
 * globals.
 */

/**
 * How long one instance goes on taking calls handed back by reports. The edge runtime retires a worker at its wall
 * clock (150 s free, 400 s paid) and after a CPU budget, cutting off what is still running; calls to the project's
 * own functions also share a rate budget per request chain. So an instance takes a next call only when that call's
 * timeout still fits before `wallClockMs` less `marginMs`, and stops after `maxCalls` calls or `maxCpuMs` of CPU;
 * from then on the database wakes a fresh invocation for the next calls.
 */
export interface Lifetime {
  /** The worker's wall clock. Default 150,000 ms (Supabase's free plan). */
  wallClockMs?: number;
  /** Kept free at the end of the wall clock for the last reports. Default 10,000 ms. */
  marginMs?: number;
  /** Calls one instance makes at most, counting the first ones. Default 5,000. */
  maxCalls?: number;
  /** CPU time after which no call is taken on (needs cpuMs). Default 1,500 ms (the runtime allows 2 s). */
  maxCpuMs?: number;
  /** CPU time used so far, in ms, when the runtime can tell. */
  cpuMs?: () => number;
}

/** One instance's budget, from its birth (startBudget) on. */
interface InstanceBudget {
  /** What is left of this worker's wall clock for a call, less the margin for its report (Infinity: no wall clock). */
  timeLeft(): number;
  /** How long a handed-back call may still take in this instance; 0 once it should take no more. */
  claimWithinMs(): number;
  /** Counts a call started by this instance. */
  countStart(): void;
  /** Takes on no more handed-back calls. */
  retire(): void;
  /** Calls started by this instance so far. */
  readonly started: number;
}

const DEFAULT_WALL_CLOCK_MS = 150_000;
const DEFAULT_MARGIN_MS = 10_000;
const DEFAULT_MAX_CALLS = 5_000;
const DEFAULT_MAX_CPU_MS = 1_500;
/**
 * A worker still alive this long after its wall clock was meant to end is not retired by its runtime at that wall
 * clock (plain Deno, a self-hosted runtime without that limit): the wall clock is then ignored rather than releasing
 * every call for ever.
 */
const OUTLIVED_WALL_CLOCK_MS = 30_000;

/** Starts an instance's budget now: its wall clock counts from this call. */
export function startBudget(
  life: Lifetime,
  now: () => number,
  logger: { warn(message: string): void },
): InstanceBudget {
  const born = now();
  let started = 0;
  let retired = false;
  let outlivedLogged = false;

  function timeLeft(): number {
    const wallClock = life.wallClockMs ?? DEFAULT_WALL_CLOCK_MS;
    const age = now() - born;
    if (age > wallClock + OUTLIVED_WALL_CLOCK_MS) {
      if (!outlivedLogged) {
        outlivedLogged = true;
        logger.warn(
          `execute_current_job: this worker outlived its ${wallClock} ms wall clock: the runtime does not retire it there, so the wall clock is ignored (set SUPAQUEUE_WALL_CLOCK_MS to the runtime's)`,
        );
      }
      return Number.POSITIVE_INFINITY;
    }
    return wallClock - (life.marginMs ?? DEFAULT_MARGIN_MS) - age;
  }

  return {
    timeLeft,
    claimWithinMs() {
      const cpu = life.cpuMs?.();
      if (
        retired ||
        started >= (life.maxCalls ?? DEFAULT_MAX_CALLS) ||
        (cpu !== undefined && cpu >= (life.maxCpuMs ?? DEFAULT_MAX_CPU_MS))
      ) {
        return 0;
      }
      return Math.max(0, Math.min(timeLeft(), 2_147_483_647));
    },
    countStart() {
      started++;
    },
    retire() {
      retired = true;
    },
    get started() {
      return started;
    },
  };
}
