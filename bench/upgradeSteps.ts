/**
 * Benchmark: the demo upgrade (sample target v0.1.0 -> v0.2.0) end to end on real pieces, N runs.
 * Prints each step's median duration, the total, and each step's share of the total.
 *   node dist/bench/upgradeSteps.js [runs=3]
 */
import { createE2eDeployment } from '../test/support/e2e.js';
import { startTestTemporal } from '../test/support/temporal.js';
import { median } from './support/stats.js';

const runs = Number(process.argv[2] ?? 3);

const temporal = await startTestTemporal();
const perStep = new Map<string, number[]>();
const totals: number[] = [];
try {
  for (let i = 0; i < runs; i++) {
    const d = await createE2eDeployment(temporal, `bench${i}`);
    try {
      await d.bootstrap();
      await d.startWorker();
      const started = Date.now();
      const r = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--yes', '--follow', '--json']);
      const wall = Date.now() - started;
      if (r.exitCode !== 0) throw new Error(`upgrade failed: ${r.stdout} ${r.stderr}`);
      const status = JSON.parse(r.stdout).status;
      for (const s of status.steps) perStep.set(s.name, [...(perStep.get(s.name) ?? []), s.durationMs ?? 0]);
      totals.push(wall);
      console.error(`run ${i + 1}/${runs}: ${wall} ms`);
    } finally {
      await d.dispose();
    }
  }
} finally {
  await temporal.dispose();
}
const total = median(totals);
console.log(`upgrade v0.1.0 -> v0.2.0, median of ${runs} runs (CLI start to final status, --yes)`);
console.log('step         median_ms  share_of_total');
for (const [name, xs] of perStep) console.log(`${name.padEnd(12)} ${String(median(xs)).padStart(9)}  ${((median(xs) / total) * 100).toFixed(1).padStart(6)}%`);
console.log(`${'total'.padEnd(12)} ${String(total).padStart(9)}  100.0%`);
