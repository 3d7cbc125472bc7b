import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

/**
 * What the benchmark reads from /proc about the processes it starts or talks to: peak and current memory, and CPU
 * time. Linux only, as the bench machines are. Read from outside the process, so the measured process runs exactly
 * as it would without the benchmark.
 */

/** Clock ticks per second, the unit of utime and stime in /proc/<pid>/stat (100 on every Linux we run). */
const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** The fields of /proc/<pid>/stat after the command name (which may itself hold spaces and parentheses). */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    // The process ended while we looked.
    return undefined;
  }
}

/** CPU seconds (user + system, all threads) a process has used since it started; undefined once it is gone. */
export function cpuSeconds(pid: number): number | undefined {
  const fields = statFields(pid);
  if (!fields) return undefined;
  // utime and stime are fields 14 and 15 of stat; fields[0] here is field 3 (the state).
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** The child of this process whose command is `command` (the newest when there are several). */
export function childPid(command: string): number | undefined {
  let found: number | undefined;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[1]) === process.pid && stat.includes(`(${command})`))
        found = Math.max(found ?? 0, Number(entry));
    } catch {
      // The process ended while we looked.
    }
  }
  return found;
}

function statusMb(pid: number, field: "VmHWM" | "VmRSS"): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? Number.NaN);
  return kb / 1024;
}

/** The most resident memory the process has had since it started (VmHWM), in MB. */
export const peakRssMb = (pid: number) => statusMb(pid, "VmHWM");
/** Resident memory now (VmRSS), in MB. */
export const rssMb = (pid: number) => statusMb(pid, "VmRSS");

/**
 * CPU seconds used by a changing set of processes over an interval (the backends of one database: pools open and
 * close connections). `sample(pids)` records each process's CPU so far; `seconds()` sums, per process, what it used
 * between its first and last sample, counting a process first seen after `start` from its birth (it started
 * during the interval). A process that ends between two samples loses what it used since the last one.
 */
export function cpuOfProcesses() {
  const first = new Map<number, number>();
  const last = new Map<number, number>();
  let started = false;
  const sample = (pids: Iterable<number>): void => {
    for (const pid of pids) {
      const cpu = cpuSeconds(pid);
      if (cpu === undefined) continue;
      if (!first.has(pid)) first.set(pid, started ? 0 : cpu);
      last.set(pid, cpu);
    }
  };
  return {
    sample,
    /** Marks the start of the interval: processes sampled from now on that were not seen before are new. */
    start(pids: Iterable<number>): void {
      sample(pids);
      started = true;
    },
    seconds(): number {
      let total = 0;
      for (const [pid, cpu] of last) total += cpu - (first.get(pid) ?? cpu);
      return total;
    },
  };
}

/** The machine's CPU time so far, all cores: busy and total, in clock ticks (/proc/stat). */
function machineTicks(): { busy: number; total: number } {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "";
  const [user, nice, system, idle, iowait, irq, softirq, steal] = line
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  const busy = (user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0);
  return { busy, total: busy + (idle ?? 0) + (iowait ?? 0) };
}

/**
 * How busy the whole machine is over an interval (every process, ours and others'): `busyShare()` is the share of
 * all cores' time that was busy since the call, from 0 to 1. A run that finds the machine near 1 was limited by CPU.
 */
export function machineLoad(): { busyShare(): number } {
  const start = machineTicks();
  return {
    busyShare() {
      const end = machineTicks();
      return (end.busy - start.busy) / Math.max(1, end.total - start.total);
    },
  };
}
