import { readFileSync } from 'node:fs';

/**
 * The machine's disk activity, from /proc: what a copy competes with. A raw copy and the backup's
 * copy of the same database are compared, so the bench records, for each, the dirty and
 * writeback memory it started with and the disk's write rate while it ran, and waits for a quiet
 * disk before each run (a large DROP DATABASE or a dump leaves writeback going for seconds).
 */

interface DiskCounters {
  sectorsWritten: number;
  sectorsRead: number;
  at: number;
}

/** Summed over whole disks (vdX, sdX, nvmeXnY), partitions and loop/ram/zram devices left out. */
function diskCounters(): DiskCounters {
  let sectorsWritten = 0;
  let sectorsRead = 0;
  for (const line of readFileSync('/proc/diskstats', 'utf8').split('\n')) {
    const f = line.trim().split(/\s+/);
    const name = f[2] ?? '';
    if (!/^(vd[a-z]+|sd[a-z]+|xvd[a-z]+|nvme\d+n\d+)$/.test(name)) continue;
    sectorsRead += Number(f[5]);
    sectorsWritten += Number(f[9]);
  }
  return { sectorsWritten, sectorsRead, at: performance.now() };
}

/** Dirty and Writeback from /proc/meminfo, in MiB. */
export function dirtyMiB(): { dirty: number; writeback: number } {
  const text = readFileSync('/proc/meminfo', 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0);
  return { dirty: kb('Dirty') / 1024, writeback: kb('Writeback') / 1024 };
}

export interface DiskWindow {
  /** Dirty + Writeback MiB at the start. */
  dirtyAtStartMiB: number;
  writtenMiB: number;
  readMiB: number;
  writeMiBps: number;
}

/** Starts counting; `stop()` returns what the disk did meanwhile. */
export function diskWindow(): { stop(): DiskWindow } {
  const d0 = dirtyMiB();
  const c0 = diskCounters();
  return {
    stop() {
      const c1 = diskCounters();
      const secs = Math.max(0.001, (c1.at - c0.at) / 1000);
      const writtenMiB = ((c1.sectorsWritten - c0.sectorsWritten) * 512) / 1024 / 1024;
      return { dirtyAtStartMiB: d0.dirty + d0.writeback, writtenMiB, readMiB: ((c1.sectorsRead - c0.sectorsRead) * 512) / 1024 / 1024, writeMiBps: writtenMiB / secs };
    },
  };
}

export function describeDiskWindow(w: DiskWindow | undefined): string {
  if (!w) return '?';
  return `dirty ${w.dirtyAtStartMiB.toFixed(0)} MiB at start, disk wrote ${w.writtenMiB.toFixed(0)} MiB at ${w.writeMiBps.toFixed(0)} MiB/s`;
}

/**
 * Waits until the disk writes less than `quietMiBps` for `quietSeconds` in a row and little is
 * dirty (at most `timeoutMs`); returns how long it waited. Every run of the bench starts from it.
 */
export async function waitForQuietDisk(opts: { quietMiBps?: number; quietSeconds?: number; timeoutMs?: number } = {}): Promise<number> {
  const { quietMiBps = 5, quietSeconds = 3, timeoutMs = 120_000 } = opts;
  const started = performance.now();
  let quiet = 0;
  let last = diskCounters();
  while (performance.now() - started < timeoutMs) {
    await new Promise((r) => setTimeout(r, 1000));
    const now = diskCounters();
    const rate = (((now.sectorsWritten - last.sectorsWritten) * 512) / 1024 / 1024) / ((now.at - last.at) / 1000);
    last = now;
    const { dirty, writeback } = dirtyMiB();
    quiet = rate < quietMiBps && dirty + writeback < 64 ? quiet + 1 : 0;
    if (quiet >= quietSeconds) break;
  }
  return Math.round(performance.now() - started);
}
