/**
 * Benchmark: recovery after a worker SIGKILL at each step of the crash matrix, and the
 * duration of a restore-based rollback split into its parts.
 *   node dist/bench/crashRecovery.js [rollbackRuns=3] [--quick]   (--quick: one case per step kind)
 * Figures: resume = SIGKILL to the interrupted step's next attempt starting on the new worker
 * (server timestamps); progress = SIGKILL to the next step state change seen with `status`.
 */
import { ROLLBACK_CRASHES, runCrashCase, UPGRADE_CRASHES } from '../test/support/crash.js';
import { createE2eDeployment, waitCaughtUp } from '../test/support/e2e.js';
import { startTestTemporal } from '../test/support/temporal.js';
import { median } from './support/stats.js';

const rollbackRuns = Number(process.argv.find((a) => /^\d+$/.test(a)) ?? 3);
const quick = process.argv.includes('--quick');

const temporal = await startTestTemporal();
try {
  const cases = quick ? [UPGRADE_CRASHES[0]!, UPGRADE_CRASHES[4]!, ROLLBACK_CRASHES[0]!] : [...UPGRADE_CRASHES, ...ROLLBACK_CRASHES];
  const resume: number[] = [];
  const progress: number[] = [];
  console.log('crash point                                   resume_ms  progress_ms');
  for (const [i, c] of cases.entries()) {
    const r = await runCrashCase(temporal, `benchcrash${i}`, c);
    resume.push(r.resumeMs);
    progress.push(r.recoveryMs);
    console.log(`${c.name.padEnd(45)} ${String(r.resumeMs).padStart(9)}  ${String(r.recoveryMs).padStart(11)}`);
  }
  console.log(`${'median over the matrix'.padEnd(45)} ${String(median(resume)).padStart(9)}  ${String(median(progress)).padStart(11)}`);
  console.log('(resume: the 5 s heartbeat timeout, counted from the last heartbeat before the kill, plus the 1 s retry backoff)');

  const parts: Record<string, number[]> = { stop: [], restore: [], start: [], smoke: [], total: [] };
  for (let i = 0; i < rollbackRuns; i++) {
    const d = await createE2eDeployment(temporal, `benchrb${i}`);
    try {
      await d.bootstrap();
      await waitCaughtUp(d);
      await d.startWorker();
      const r = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.3.0', '--yes', '--follow', '--json']);
      const status = JSON.parse(r.stdout).status;
      const rb = JSON.parse((await d.cli(['status', '--workflow-id', status.rollbackWorkflowId, '--json'])).stdout);
      const ms = (...names: string[]) => rb.steps.filter((s: any) => names.includes(s.name)).reduce((sum: number, s: any) => sum + (s.durationMs ?? 0), 0);
      parts.stop!.push(ms('stopUpgraded'));
      parts.restore!.push(ms('measureDiscard', 'restore', 'verifyRestore'));
      parts.start!.push(ms('prepareOld', 'startOld'));
      parts.smoke!.push(ms('smokeOld'));
      parts.total!.push(status.steps.find((s: any) => s.name === 'rollback').durationMs);
    } finally {
      await d.dispose();
    }
  }
  const total = median(parts.total!);
  console.log(`\nrestore-based rollback after v0.3.0 fails its smoke checks, median of ${rollbackRuns} runs`);
  console.log('part      median_ms  share');
  for (const [name, xs] of Object.entries(parts)) console.log(`${name.padEnd(9)} ${String(median(xs)).padStart(9)}  ${((median(xs) / total) * 100).toFixed(1).padStart(5)}%`);
} finally {
  await temporal.dispose();
}
