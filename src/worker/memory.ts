import { appendFileSync } from 'node:fs';
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';

/**
 * The worker's memory, watched every 500 ms.
 *
 * Budget: V8 runs no full collection until its old generation reaches an initial limit of a
 * few hundred MB, so the garbage of an activity that reads a whole database (digest chunks,
 * the driver's buffers for them) piles up until then: +90-135 MB over the 200 MB an idle worker
 * holds (bench/results/downtime-1024-4096-floor-2026-12-01.txt). Here a full collection runs
 * whenever the JS heap and its external buffers grew by `growthMb` since the last one; it takes
 * tens of ms and returns that garbage, so the worker's RSS follows what it holds, not what it
 * has touched. DGU_WORKER_GC_GROWTH_MB=0 turns it off.
 *
 * Log: with DGU_WORKER_MEMORY_LOG=<file>, one line per sample (ms since start, then MB: rss,
 * V8 heap total and used, external, array buffers, and the collections run so far).
 */
export function watchMemory(opts: { growthMb?: number; logFile?: string } = {}): { collections: () => number } {
  const growthMb = opts.growthMb ?? numberFromEnv('DGU_WORKER_GC_GROWTH_MB', 32);
  const logFile = opts.logFile ?? process.env.DGU_WORKER_MEMORY_LOG;
  const gc = growthMb > 0 ? exposeGc() : undefined;
  const started = Date.now();
  const held = () => {
    const m = process.memoryUsage();
    return m.heapUsed + m.external;
  };
  let afterLast = held();
  let collections = 0;
  const mb = (n: number) => (n / 1e6).toFixed(1);
  if (logFile) appendFileSync(logFile, `# ${new Date().toISOString()} pid ${process.pid}: ms rss heapTotal heapUsed external arrayBuffers (MB) collections; full collection every ${growthMb} MB of growth\n`);
  setInterval(() => {
    if (gc && held() - afterLast > growthMb * 1e6) {
      gc();
      collections++;
      afterLast = held();
    }
    if (logFile) {
      const m = process.memoryUsage();
      appendFileSync(logFile, `${Date.now() - started} ${mb(m.rss)} ${mb(m.heapTotal)} ${mb(m.heapUsed)} ${mb(m.external)} ${mb(m.arrayBuffers)} ${collections}\n`);
    }
  }, 500).unref();
  return { collections: () => collections };
}

/** V8's gc() without starting node with --expose-gc (the flag only takes effect for new contexts). */
function exposeGc(): (() => void) | undefined {
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    return typeof gc === 'function' ? gc : undefined;
  } catch {
    return undefined;
  }
}

function numberFromEnv(name: string, fallback: number): number {
  const v = Number(process.env[name]);
  return process.env[name] !== undefined && Number.isFinite(v) && v >= 0 ? v : fallback;
}
