/**
 * Benchmark (issue 21): what a rehearsal costs, and how close its predicted downtime comes to the
 * downtime of the upgrade that follows it. Per size (default 8 and 128 MiB; `npm run bench` adds
 * 1024): a deployment serving v0.1.0 on a copy of a grown template database, rehearsal.policy
 * "advisory", `upgrade --to v0.2.0` (the build and the rehearsal run before the approval), then
 * the approval with a 20 Hz prober on /api/healthz; downtime as in bench/downtime.ts (last 200
 * before the first failed probe to the first 200 after the last).
 * The approval comes `approveAfterMs` after the plan (default 60 s: an operator reads the plan
 * first). On this VM's disk a large write within about 30 s of a large delete runs 2-3x faster
 * than otherwise (bench/results/disk-fast-path-2026-12-01.txt), and a rehearsal ends by dropping
 * its copy: approved at once, the upgrade's frozen copy would take that fast path, which no real
 * approval a minute later sees; the prediction is made for the latter (docs/decisions.md).
 *   node dist/bench/rehearsal.js [runs=2] [sizes=8,128] [approveAfterMs=60000]
 * Acceptance: the prediction within 25 % or 0.5 s of the measured downtime.
 */
import { createE2eDeployment, editProfile, waitCaughtUp, type E2eDeployment } from '../test/support/e2e.js';
import { dropDatabasesWithPrefix, withAdmin } from '../test/support/postgres.js';
import { fillEventLog } from './support/bulkEvents.js';
import { startTestTemporal, type TestTemporal } from '../test/support/temporal.js';
import { downtimeOf, median, medianRange, startProber } from './support/healthProber.js';

const runs = Number(process.argv[2] ?? 2);
const sizes = (process.argv[3] ?? '8,128').split(',').map(Number);
const approveAfterMs = Number(process.argv[4] ?? 60_000);
const COMPILE_MS = '1500';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Run {
  sizeMiB: number;
  rehearsalMs: number;
  copyMs: number;
  buildMs: number;
  predictedMs: number;
  parts: Record<string, number>;
  measuredMs: number;
  failedProbes: number;
  upgradeSteps: Record<string, number>;
}

async function oneRun(temporal: TestTemporal, label: string, gold: string): Promise<Run> {
  const d: E2eDeployment = await createE2eDeployment(temporal, label);
  try {
    editProfile(d, (p) => {
      p.toolchain.env.DG_FIXTURE_COMPILE_MS = COMPILE_MS;
      p.rehearsal = { policy: 'advisory' };
    });
    await withAdmin(async (c) => {
      await c.query(`DROP DATABASE "${d.db.name}" WITH (FORCE)`);
      await c.query(`CREATE DATABASE "${d.db.name}" TEMPLATE "${gold}" STRATEGY FILE_COPY`);
    });
    await d.bootstrap();
    await waitCaughtUp(d, 600_000);
    await d.startWorker();
    const planned = { ...(await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--json'])), endedAt: Date.now() };
    if (planned.exitCode !== 0) throw new Error(`upgrade did not plan: ${planned.stdout.slice(-2000)} ${planned.stderr}`);
    const status = JSON.parse(planned.stdout).status;
    const rehearsal = status.plan.rehearsal;
    if (!rehearsal?.passed) throw new Error(`the rehearsal did not pass: ${JSON.stringify(rehearsal)}`);
    const step = (name: string) => status.steps.find((s: any) => s.name === name)?.durationMs as number;
    await sleep(Math.max(500, approveAfterMs - (Date.now() - planned.endedAt)));
    const prober = startProber(d.port);
    const approved = await d.cli(['approve', d.name, '--plan-hash', status.planHash]);
    if (approved.exitCode !== 0) throw new Error(`approve failed: ${approved.stderr}`);
    const done = await d.cli(['status', d.name, '--follow', '--json']);
    await sleep(300);
    const down = downtimeOf(await prober.stop());
    const final = JSON.parse(done.stdout).status ?? JSON.parse(done.stdout);
    if (final.outcome !== 'succeeded') throw new Error(`upgrade did not succeed: ${final.summary}`);
    const upgradeSteps = Object.fromEntries(final.steps.filter((s: any) => s.durationMs !== undefined).map((s: any) => [s.name, s.durationMs]));
    return {
      sizeMiB: await withAdmin(async (c) => Number((await c.query('SELECT pg_database_size($1)::bigint AS n', [d.db.name])).rows[0].n) / 1048576),
      rehearsalMs: step('rehearsal'),
      copyMs: rehearsal.copyMs,
      buildMs: step('build'),
      predictedMs: rehearsal.predictedDowntimeMs,
      parts: rehearsal.predictedParts ?? {},
      measuredMs: down.downtime,
      failedProbes: down.failed,
      upgradeSteps,
    };
  } finally {
    await d.dispose();
  }
}

const temporal = await startTestTemporal();
const goldPrefix = `dgu_rehgold_${process.pid}`;
const results: Run[] = [];
const started = Date.now();
try {
  for (const size of sizes) {
    const gold = `${goldPrefix}_${size}`;
    const g = await createE2eDeployment(temporal, `rgold${size}`);
    try {
      await g.bootstrap();
      await waitCaughtUp(g);
      await g.stopRuntime();
      await fillEventLog(g.db.name, size);
      await withAdmin(async (c) => {
        await c.query('CHECKPOINT');
        await c.query(`CREATE DATABASE "${gold}" TEMPLATE "${g.db.name}" STRATEGY FILE_COPY`);
      });
    } finally {
      await g.dispose();
    }
    for (let i = 0; i < runs; i++) {
      const r = await oneRun(temporal, `breh${size}x${i}`, gold);
      results.push(r);
      process.stderr.write(
        `# ${size} MiB run ${i + 1}: rehearsal ${r.rehearsalMs} ms (copy ${r.copyMs} ms), build ${r.buildMs} ms; predicted ${r.predictedMs} ms {${Object.entries(r.parts).map(([k, v]) => `${k}=${v}`).join(' ')}}, measured ${r.measuredMs} ms (${r.failedProbes} failed probes) [${Object.entries(r.upgradeSteps).map(([k, v]) => `${k}=${v}`).join(' ')}]\n`,
      );
    }
    await dropDatabasesWithPrefix(gold);
  }
} finally {
  await dropDatabasesWithPrefix(goldPrefix).catch(() => {});
  await temporal.dispose();
}

console.log(`rehearsal (issue 21): v0.1.0 -> v0.2.0, compile ${COMPILE_MS} ms, rehearsal.policy advisory, ${runs} runs per size, approved ${(approveAfterMs / 1000).toFixed(1)} s after the plan, 20 Hz prober; median [min-max]; ${((Date.now() - started) / 60000).toFixed(1)} min wall clock`);
for (const size of sizes) {
  const rs = results.filter((r) => Math.abs(r.sizeMiB - size) / size < 0.5 || (size < 16 && r.sizeMiB < 16));
  const v = (f: (r: Run) => number) => rs.map(f).filter(Number.isFinite);
  console.log(`\n== ${size} MiB (measured ${medianRange(v((r) => r.sizeMiB))} MiB), n = ${rs.length} ==`);
  console.log(`  rehearsal step ms (before the approval)          ${medianRange(v((r) => r.rehearsalMs))}`);
  console.log(`  of which the online copy ms                      ${medianRange(v((r) => r.copyMs))}`);
  console.log(`  build ms (moved before the approval, not extra)  ${medianRange(v((r) => r.buildMs))}`);
  console.log(`  predicted downtime ms                            ${medianRange(v((r) => r.predictedMs))}`);
  console.log(`  measured downtime ms                             ${medianRange(v((r) => r.measuredMs))}`);
  const within = rs.filter((r) => Math.abs(r.predictedMs - r.measuredMs) <= Math.max(500, 0.25 * r.measuredMs)).length;
  console.log(`  prediction within 25 % or 0.5 s                  ${within}/${rs.length}; error ms ${medianRange(v((r) => r.predictedMs - r.measuredMs))}`);
  console.log(`  median relative error                            ${(median(v((r) => (r.predictedMs - r.measuredMs) / r.measuredMs)) * 100).toFixed(0)} %`);
}
