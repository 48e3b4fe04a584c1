// Soak: 20 consecutive operations on one deployment while the app takes 50 writes/s through its
// API and, in some operations, a cron-like direct writer inserts into the database (also while the
// app is stopped). After each operation: the run ends in the state it reports, no false rollback,
// every confirmed write is in exactly one of the live or a set-aside database, the data-loss gate's
// accepted count equals what the restore discarded, a rollback restored exactly its backup, and no
// COMPENSATION FAILED. Problems are collected per operation and reported together at the end.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { BASE_MIGRATIONS } from './fixtures/sample-target/generate.js';
import { createRunningDeployment, type E2eDeployment } from './support/e2e.js';
import { actualState, assertRestoredToBackup, followAcceptingDataLoss, startWarmTraffic, waitProjected } from './support/liveRun.js';
import { databaseUrlFor } from './support/postgres.js';
import { startTestTemporal, type TestTemporal } from './support/temporal.js';
import { assertConfirmedWritesAccountedFor, assertGateCountMatchesDiscarded, describeTraffic, type EventRow, type Traffic } from './support/traffic.js';

const MIGRATIONS: Record<string, readonly string[]> = {
  'v0.1.0': BASE_MIGRATIONS,
  'v0.2.0': [...BASE_MIGRATIONS, '20260314000100'],
};

interface Op {
  kind: 'upgrade' | 'rollback';
  to?: 'v0.2.0' | 'v0.2.1' | 'v0.3.0';
  /** Direct writer events/s during this operation (0: off). */
  direct: number;
}

/**
 * Two cycles of 5 operations, each from v0.1.0 back to v0.1.0: a good upgrade, upgrades that fail
 * in different ways (v0.3.0 at smoke, v0.2.1 at its second migration), a standalone rollback of
 * the good upgrade. v0.3.0 runs in every other cycle only: its smoke failure is the slowest
 * operation, and the soak should stay within a few minutes.
 */
const WITH_SMOKE_FAILURE: Op[] = [
  { kind: 'upgrade', to: 'v0.2.0', direct: 0 },
  { kind: 'upgrade', to: 'v0.3.0', direct: 20 }, // smoke fails (console), rolled back to v0.2.0
  { kind: 'upgrade', to: 'v0.2.1', direct: 0 }, // migrate fails half-way, rolled back to v0.2.0
  { kind: 'rollback', direct: 20 }, // the good upgrade's backup: back to v0.1.0
  { kind: 'upgrade', to: 'v0.2.1', direct: 0 }, // from v0.1.0: fails at v0.2.1's second migration, rolled back to v0.1.0
];
const WITHOUT_SMOKE_FAILURE: Op[] = [
  { kind: 'upgrade', to: 'v0.2.0', direct: 0 },
  { kind: 'upgrade', to: 'v0.2.1', direct: 20 },
  { kind: 'rollback', direct: 20 },
  { kind: 'upgrade', to: 'v0.2.1', direct: 0 },
  { kind: 'upgrade', to: 'v0.2.1', direct: 20 },
];
const OPS: Op[] = [...WITH_SMOKE_FAILURE, ...WITHOUT_SMOKE_FAILURE, ...WITH_SMOKE_FAILURE, ...WITHOUT_SMOKE_FAILURE];

let temporal: TestTemporal;
let d: E2eDeployment;
let traffic: Traffic | undefined;
before(async () => {
  temporal = await startTestTemporal();
  d = await createRunningDeployment(temporal, 'soak');
});
after(async () => {
  await traffic?.stop();
  await d?.dispose();
  await temporal?.dispose();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test(`soak: ${OPS.length} operations under 50 writes/s, some with a direct writer`, async (t) => {
  traffic = await startWarmTraffic(d, { rate: 50 });
  // The direct writer writes for two seconds before the first operation too: its producer is a
  // node of the context graph, so every backup holds it, and writes it makes after a restore
  // (it keeps writing through the gate and the swap) update projection rows instead of adding
  // them; "restored exactly the backup" compares per-table row counts.
  traffic.setDirectRate(20);
  await sleep(2000);
  traffic.setDirectRate(0);
  const warmed = traffic.snapshot().confirmed;
  assert.ok(warmed.some((w) => w.via === 'direct'), 'the direct writer wrote before the first operation');
  await waitProjected(d, Math.max(...warmed.map((w) => w.logSeq)));
  const problems: string[] = [];
  const asides: Record<string, string> = {};
  const asideRows = new Map<string, EventRow[]>();
  const restoreChecked = new Set<string>();
  let version = 'v0.1.0';
  /** The backup of the last good upgrade: what the standalone rollback restores. */
  let goodUpgradeBackup: string | undefined;
  const started = Date.now();
  let notStarted = 0;

  for (const [i, op] of OPS.entries()) {
    const label = `op ${i + 1} ${op.kind}${op.to ? ` ${version} -> ${op.to}` : ` of ${version}`}${op.direct ? ` (+${op.direct}/s direct)` : ''}`;
    const check = async (what: string, fn: () => unknown) => {
      try {
        await fn();
      } catch (err) {
        problems.push(`${label}: ${what}: ${(err as Error).message.split('\n').slice(0, 6).join(' ')}`);
        process.stderr.write(`# PROBLEM ${problems.at(-1)}\n`);
      }
    };
    const opStart = Date.now();
    if (op.kind === 'rollback' && (!goodUpgradeBackup || version !== 'v0.2.0')) {
      problems.push(`${label}: skipped: the deployment is not on v0.2.0 from a good upgrade (${version})`);
      continue;
    }
    traffic.setDirectRate(op.direct);
    const args =
      op.kind === 'upgrade'
        ? ['upgrade', '-d', d.name, '--to', op.to!, '--yes', '--json']
        : ['rollback', '--deployment', d.name, '--backup', goodUpgradeBackup!, '--json'];
    const startedRun = await d.cli(args);
    if (startedRun.exitCode !== 0) {
      traffic.setDirectRate(0);
      problems.push(`${label}: did not start (exit ${startedRun.exitCode}): ${(startedRun.stderr || startedRun.stdout).slice(0, 600)}`);
      if (++notStarted >= 3) break;
      continue;
    }
    const workflowId = JSON.parse(startedRun.stdout).workflowId ?? JSON.parse(startedRun.stdout).status?.workflowId;
    let run;
    try {
      // The direct writer (a cron job) writes throughout the operation, through the data-loss
      // gate too: a count that grew at the swap is asked again with the live database held aside,
      // so the gate settles by its second ask.
      run = await followAcceptingDataLoss(d, { workflowId, timeoutMs: 180_000 });
    } catch (err) {
      problems.push(`${label}: the run did not end: ${(err as Error).message.slice(0, 500)}`);
      break;
    } finally {
      traffic.setDirectRate(0);
    }
    const s = run.status;
    // A rollback's own status carries its report under `rollback` too.
    const rb = s.rollback;
    const before = version;
    /** Where a rollback of this operation lands. */
    const rolledBackTo = op.kind === 'rollback' ? 'v0.1.0' : version;
    const expectedOutcome = op.kind === 'rollback' || op.to !== 'v0.2.0' ? 'rolled-back' : 'succeeded';

    await check('outcome', () => {
      assert.doesNotMatch(`${s.summary} ${rb?.summary ?? ''}`, /COMPENSATION FAILED/, 'no COMPENSATION FAILED');
      if (op.to === 'v0.2.0') assert.equal(s.outcome, 'succeeded', `a false rollback of a good upgrade: ${s.summary}`);
      assert.equal(s.outcome, expectedOutcome, s.summary);
      if (op.to === 'v0.3.0') assert.match(s.summary, /failed at smoke/);
      if (op.to === 'v0.2.1') assert.match(s.summary, /failed at migrate/);
    });
    await check('ends in the state it reports', async () => {
      const actual = await actualState(d);
      const reported = s.outcome === 'succeeded' ? op.to! : s.outcome === 'rolled-back' ? rolledBackTo : '(unknown)';
      assert.equal(actual.version, reported.slice(1), `status says ${s.outcome} (${reported}), healthz says ${actual.version}`);
      assert.deepEqual(actual.migrations, MIGRATIONS[reported], `schema_migrations match ${reported}`);
    });
    if (s.outcome === 'succeeded') version = op.to!;
    else if (s.outcome === 'rolled-back') version = rolledBackTo;
    if (op.to === 'v0.2.0' && s.outcome === 'succeeded') goodUpgradeBackup = s.backup?.id;

    const aside: string | undefined = rb?.asideDatabase;
    if (aside) asides[aside] = databaseUrlFor(aside);
    let gate = '';
    if (s.outcome === 'rolled-back') {
      await check('gate count equals what was discarded', async () => {
        assert.ok(aside, 'the rollback names its set-aside database');
        assert.ok(run.asked.length <= 2, `the gate settles by its second ask (the live database is held aside then): asked ${JSON.stringify(run.asked)}`);
        const c = await assertGateCountMatchesDiscarded(s, d.databaseUrl, asides[aside!]!, traffic!.snapshot());
        gate = `gate asked ${JSON.stringify(run.asked)}, accepted ${c.accepted}, discarded ${c.discarded} (${c.confirmedByGenerator} confirmed, ${c.unknownOutcome} unknown, ${c.foreign} foreign)`;
      });
      // The full comparison with the backup (pg_restore of its file into a scratch database) for the
      // first rollback of each kind only: it is the slowest check, and the later runs repeat the same path.
      const kind = `${op.kind} ${op.to ?? ''}`;
      if (!restoreChecked.has(kind)) {
        restoreChecked.add(kind);
        await check('restored exactly the backup', () => assertRestoredToBackup(d, s, aside ? asides[aside] : undefined, rolledBackTo.slice(1)));
      }
    }
    await check('every confirmed write accounted for', async () => {
      const a = await assertConfirmedWritesAccountedFor(traffic!.snapshot(), d.databaseUrl, asides, asideRows);
      gate += ` writes: ${a.live} live, ${a.setAside} set aside`;
    });
    const stepTimes = (st: any[] | undefined) => (st ?? []).filter((x) => x.durationMs).map((x) => `${x.name} ${(x.durationMs / 1000).toFixed(1)}`).join(', ');
    process.stderr.write(
      `# ${label}: ${s.outcome} in ${((Date.now() - opStart) / 1000).toFixed(1)} s (steps: ${stepTimes(s.steps)}${rb?.workflowId && rb.workflowId !== s.workflowId ? `; rollback ${rb.workflowId}` : ''}); ${gate}; problems so far ${problems.length}\n`,
    );
    t.diagnostic(`${label}: ${s.outcome} in ${((Date.now() - opStart) / 1000).toFixed(1)} s (${before} -> ${version}); ${gate}`);
  }

  const final = await traffic.stop();
  traffic = undefined;
  t.diagnostic(`traffic: ${describeTraffic(final)}; soak took ${((Date.now() - started) / 1000).toFixed(0)} s`);
  const accounted = await assertConfirmedWritesAccountedFor(final, d.databaseUrl, asides, asideRows).catch((err) => {
    problems.push(`final accounting: ${(err as Error).message.slice(0, 500)}`);
  });
  if (accounted) t.diagnostic(`final: ${accounted.live} confirmed writes live, ${accounted.setAside} set aside in ${Object.keys(asides).length} databases`);
  assert.deepEqual(problems, [], `${problems.length} problems over ${OPS.length} operations`);
});
