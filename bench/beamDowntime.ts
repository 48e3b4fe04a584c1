/**
 * Benchmark: the demo upgrade's downtime (v0.1.0 -> v0.2.0, source model) on the real BEAM
 * target next to the Node stand-in's. A 20 Hz prober on /api/healthz runs through the whole
 * upgrade; downtime is the time from the last 200 before the cutover to the first 200 after it.
 *   node dist/bench/beamDowntime.js [runs=2]
 */
import { createE2eDeployment, waitCaughtUp } from '../test/support/e2e.js';
import { startTestTemporal } from '../test/support/temporal.js';
import { downtimeOf, median, startProber } from './support/healthProber.js';

const runs = Number(process.argv[2] ?? 2);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const temporal = await startTestTemporal();
interface Series {
  downtime: number[];
  failed: number[];
  stopOld: number[];
  startNew: number[];
  total: number[];
}
const results: Record<string, Series> = {};
try {
  for (const target of ['stand-in', 'beam'] as const) {
    const r: Series = { downtime: [], failed: [], stopOld: [], startNew: [], total: [] };
    results[target] = r;
    for (let i = 0; i < runs; i++) {
      const d = await createE2eDeployment(temporal, `downtime-${target}-${i}`, { target });
      try {
        await d.bootstrap();
        await waitCaughtUp(d);
        await d.startWorker();
        const prober = startProber(d.port);
        const started = Date.now();
        const up = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--yes', '--follow', '--json']);
        const total = Date.now() - started;
        await sleep(500);
        const probes = await prober.stop();
        if (up.exitCode !== 0) throw new Error(`upgrade failed: ${up.stdout} ${up.stderr}`);
        const steps = JSON.parse(up.stdout).status.steps as Array<{ name: string; durationMs?: number }>;
        const step = (name: string) => steps.find((s) => s.name === name)?.durationMs ?? 0;
        const { downtime, failed } = downtimeOf(probes);
        r.downtime.push(downtime);
        r.failed.push(failed);
        r.stopOld.push(step('stopOld'));
        r.startNew.push(step('startNew'));
        r.total.push(total);
        console.error(`${target} run ${i + 1}/${runs}: downtime ${downtime} ms (${failed} of ${probes.length} probes failed), upgrade ${total} ms`);
      } finally {
        await d.dispose();
      }
    }
  }
} finally {
  await temporal.dispose();
}

console.log(`demo upgrade v0.1.0 -> v0.2.0 (source model), healthz probed at 20 Hz; medians of ${runs} runs`);
console.log('target      downtime_ms  failed_probes  stopOld_ms  startNew_ms  upgrade_ms');
for (const [target, r] of Object.entries(results)) {
  console.log(
    `${target.padEnd(10)} ${String(median(r.downtime)).padStart(12)} ${String(median(r.failed)).padStart(14)} ${String(median(r.stopOld)).padStart(11)} ${String(median(r.startNew)).padStart(12)} ${String(median(r.total)).padStart(11)}`,
  );
}
