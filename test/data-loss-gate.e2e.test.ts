import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { createE2eDeployment, listDatabases, waitCaughtUp, waitForStatus, type E2eDeployment } from './support/e2e.js';
import { followAcceptingDataLoss, startWarmTraffic } from './support/liveRun.js';
import { databaseUrlFor, dropDatabasesWithPrefix } from './support/postgres.js';
import { waitForFile } from './support/crash.js';
import { startTestTemporal, type TestTemporal } from './support/temporal.js';
import { assertConfirmedWritesAccountedFor, assertGateCountMatchesDiscarded, eventLogRows, type Traffic } from './support/traffic.js';

// The data-loss gate holds and the backup's figures are its own: writes flow through the app all
// along (50/s), a direct writer (a cron job) writes while the app is stopped for the backup, and
// a client other than the app writes after the operator accepted the discard, while the worker
// is dead just before the swap. The swap must count again, undo itself and ask for the new
// count; what was accepted is exactly what is discarded, and every confirmed write is in
// exactly one of the live and the set-aside databases.

let temporal: TestTemporal;
let d: E2eDeployment;
let traffic: Traffic | undefined;
let failDir: string;

before(async () => {
  temporal = await startTestTemporal();
  d = await createE2eDeployment(temporal, 'gate');
  await d.bootstrap();
  await waitCaughtUp(d);
  failDir = mkdtempSync(path.join(os.tmpdir(), 'dgu-failpoints-gate-'));
});

after(async () => {
  await traffic?.stop().catch(() => {});
  await d?.dispose();
  if (d && !process.env.DGU_KEEP_TEST_DIRS) await dropDatabasesWithPrefix(d.db.name);
  await temporal?.dispose();
  rmSync(failDir, { recursive: true, force: true });
});

async function insertDirect(url: string, n: number): Promise<void> {
  const client = new pg.Client({ connectionString: url, application_name: 'dgu-late-writer' });
  await client.connect();
  try {
    for (let i = 0; i < n; i++) {
      await client.query(`INSERT INTO dg_event_log (tenant_id, trace_id, event_type, payload) VALUES ('default', 'trace-late-writer', 'trace.annotated', '{}')`);
    }
  } finally {
    await client.end();
  }
}

test('the gate counts again at the swap and asks again when writes came after the approval', async () => {
  const worker = await d.startWorker({ DG_UPGRADE_FAILPOINTS: 'restore.beforeSwap', DG_UPGRADE_FAILPOINT_DIR: failDir });
  traffic = await startWarmTraffic(d, { rate: 50, directRate: 10, directMode: 'cron' });

  const started = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.3.0', '--yes']);
  assert.equal(started.exitCode, 0, started.stderr);
  const upgrading = await waitForStatus(d, (s) => !!s.rollbackWorkflowId, 'v0.3.0 to fail its smoke checks and roll back', 180_000);
  traffic.setDirectRate(0);
  const rollbackId = upgrading.rollbackWorkflowId as string;

  // The manifest describes exactly the dump (same snapshot), although the cron writer wrote
  // while it was taken: its figures are checked against the dump itself further down.
  const manifestFile = String(upgrading.backup.file).replace(/\.dump$/, '.manifest.json');
  const manifest = JSON.parse(readFileSync(manifestFile, 'utf8'));
  assert.ok(manifest.snapshot, 'the manifest names the snapshot the dump was taken in');

  const gate = await waitForStatus(d, (s) => s.phase === 'awaiting-data-loss-approval', 'the data-loss gate', 120_000, ['--workflow-id', rollbackId]);
  const first = gate.dataLoss.eventsAfterBackup as number;
  assert.ok(first > 0, 'v0.3.0 took writes after the backup');
  const accepted = await d.cli(['accept-data-loss', d.name, '--events', String(first), '--by', 'first-look']);
  assert.equal(accepted.exitCode, 0, accepted.stderr);

  // The worker dies at the swap; meanwhile another client writes 3 events to the live database.
  await waitForFile(path.join(failDir, 'restore.beforeSwap'), 120_000);
  await worker.kill('SIGKILL');
  await insertDirect(d.databaseUrl, 3);
  await d.startWorker();

  const again = await waitForStatus(d, (s) => s.phase === 'awaiting-data-loss-approval' && s.dataLoss?.asked === 2, 'the gate to ask again', 120_000, ['--workflow-id', rollbackId]);
  // At least the 3 late events (the cron writer may have landed a last batch after the first look).
  const second = again.dataLoss.eventsAfterBackup as number;
  assert.ok(second >= first + 3, `the new count ${second} has the 3 late events on top of ${first}`);
  assert.match(again.summary, new RegExp(`would now discard ${second} events \\(${first} were accepted\\)`));
  const stale = await d.cli(['accept-data-loss', d.name, '--events', String(first)]);
  assert.notEqual(stale.exitCode, 0, 'the old count no longer approves');

  const run = await followAcceptingDataLoss(d, { workflowId: rollbackId });
  assert.equal(run.status.outcome, 'rolled-back', JSON.stringify(run.status).slice(0, 800));
  assert.deepEqual(run.asked, [second], 'accepted the new count once');
  const report = run.status.rollback ?? run.status;
  assert.equal(run.status.dataLoss.discarded, second, 'the swap counted what it set aside');
  assert.match(run.status.summary, new RegExp(`the ${second} written after it are only in`));

  const t = await traffic.stop();
  traffic = undefined;
  const aside = report.asideDatabase ?? run.status.rollback?.asideDatabase;
  const asideUrl = databaseUrlFor(aside);
  const counted = await assertGateCountMatchesDiscarded(run.status, d.databaseUrl, asideUrl, t);
  assert.equal(counted.discarded, second);
  assert.equal(counted.foreign, 3, 'the late writer\'s 3 rows are among the discarded');
  const accounting = await assertConfirmedWritesAccountedFor(t, d.databaseUrl, { [aside]: asideUrl });
  assert.ok(accounting.live > 0 && accounting.setAside > 0, JSON.stringify(accounting));

  // The restored database held exactly the manifest's figures before the app wrote again:
  // its rows up to the backup are the backup's rows.
  const liveRows = await eventLogRows(d.databaseUrl);
  assert.equal(liveRows.filter((r) => r.logSeq <= manifest.eventLog.maxLogSeq).length, manifest.eventLog.rowCount, 'restored rows = manifest rowCount');
});

test('a writer that never stops: the live database is held aside while the gate asks again, so the count holds; abandon gives it its name back; a new rollback settles', async (t) => {
  // A Temporal of its own: the first test's worker serves the same task queue with another profile.
  const ownTemporal = await startTestTemporal();
  const h = await createE2eDeployment(ownTemporal, 'gatehold');
  let writes: Traffic | undefined;
  try {
    await h.bootstrap();
    await waitCaughtUp(h);
    const holdFailDir = mkdtempSync(path.join(h.dir, 'failpoints-'));
    const worker = await h.startWorker({ DG_UPGRADE_FAILPOINTS: 'restore.beforeSwap', DG_UPGRADE_FAILPOINT_DIR: holdFailDir });
    // The cron writer (20/s, a batch a second) is never switched off in this test.
    writes = await startWarmTraffic(h, { rate: 50, directRate: 20, directMode: 'cron' });
    const live = h.db.name;

    const started = await h.cli(['upgrade', '-d', h.name, '--to', 'v0.3.0', '--yes']);
    assert.equal(started.exitCode, 0, started.stderr);
    const upgrading = await waitForStatus(h, (s) => !!s.rollbackWorkflowId, 'v0.3.0 to fail its smoke checks and roll back', 180_000);
    const rollbackId = upgrading.rollbackWorkflowId as string;
    const gate = await waitForStatus(h, (s) => s.phase === 'awaiting-data-loss-approval', 'the data-loss gate', 120_000, ['--workflow-id', rollbackId]);
    const first = gate.dataLoss.eventsAfterBackup as number;
    assert.equal((await h.cli(['accept-data-loss', h.name, '--events', String(first), '--by', 'first-look'])).exitCode, 0);

    // The worker dies at the swap while the writer goes on: the count at the swap is higher.
    await waitForFile(path.join(holdFailDir, 'restore.beforeSwap'), 120_000);
    await worker.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, 2500)); // two or three cron batches land in the live database
    await h.startWorker();
    const again = await waitForStatus(h, (s) => s.phase === 'awaiting-data-loss-approval' && s.dataLoss?.asked === 2, 'the gate to ask again', 120_000, ['--workflow-id', rollbackId]);
    const second = again.dataLoss.eventsAfterBackup as number;
    assert.ok(second > first, `the writer's batches raised the count: ${first} -> ${second}`);
    assert.match(again.summary, /held aside under its new name until you decide/);

    // Held: the live name is gone, so the writer is refused and the count cannot move.
    assert.ok(!(await listDatabases(live)).includes(live), 'the live database name is free while the gate asks');
    const heldAt = Date.now();
    await new Promise((r) => setTimeout(r, 3000));
    const still = await waitForStatus(h, () => true, 'the status', 30_000, ['--workflow-id', rollbackId]);
    assert.equal(still.dataLoss.eventsAfterBackup, second, 'the count holds while the operator decides');
    const refused = writes.snapshot().failed.filter((f) => f.via === 'direct' && f.sentAt > heldAt);
    assert.ok(refused.length > 0 && refused.every((f) => /does not exist/.test(f.reason)), `the writer is refused while the database is held: ${JSON.stringify(refused.slice(0, 2))}`);
    // Anything of dg-upgrade's own that needs the live database meanwhile says where it is.
    const plan = await h.cli(['plan', '-d', h.name, '--to', 'v0.2.0']);
    assert.notEqual(plan.exitCode, 0, plan.stdout);
    assert.match(plan.stderr, new RegExp(`the database ${live} does not exist: a rollback holds it aside as ${live}_upgraded_\\w+ while its data-loss gate asks again`));

    // Abandon: the live database gets its name back, with every row it had (nothing discarded).
    const abandoned = await h.cli(['abandon', h.name, '--by', 'e2e', '--comment', 'not now']);
    assert.equal(abandoned.exitCode, 0, abandoned.stdout + abandoned.stderr);
    const ended = await h.cli(['status', '--workflow-id', rollbackId, '--follow', '--json']);
    assert.equal(ended.exitCode, 8, `an abandoned rollback needs an operator: ${ended.stdout}`);
    assert.match(ended.stdout + ended.stderr, new RegExp(`the live database ${live} has its name back`));
    assert.ok((await listDatabases(live)).includes(live), 'the live database is back under its name');
    const manifest = JSON.parse(readFileSync(String(upgrading.backup.file).replace(/\.dump$/, '.manifest.json'), 'utf8'));
    const rowsBack = (await eventLogRows(h.databaseUrl)).length;
    assert.ok(rowsBack >= manifest.eventLog.rowCount + second, `the returned database holds the backup's rows and the ${second} after it (${rowsBack} rows)`);

    // A new rollback, the writer still going: the gate settles (asked at most twice), and what was accepted is what was discarded.
    const rb = await h.cli(['rollback', '--deployment', h.name, '--json']);
    assert.equal(rb.exitCode, 0, rb.stdout + rb.stderr);
    const run = await followAcceptingDataLoss(h, { workflowId: JSON.parse(rb.stdout).workflowId, timeoutMs: 180_000 });
    assert.equal(run.status.outcome, 'rolled-back', JSON.stringify(run.status).slice(0, 800));
    assert.ok(run.asked.length >= 1 && run.asked.length <= 2, `the gate settled: asked ${JSON.stringify(run.asked)}`);
    assert.equal(run.status.dataLoss.discarded, run.asked.at(-1), 'discarded exactly what was accepted last');
    const traffic = await writes.stop();
    writes = undefined;
    const aside = run.status.rollback?.asideDatabase ?? run.status.asideDatabase;
    const accounting = await assertConfirmedWritesAccountedFor(traffic, h.databaseUrl, { [aside]: databaseUrlFor(aside) });
    t.diagnostic(`gate asked ${first} then ${second} (held), abandoned; new rollback asked ${JSON.stringify(run.asked)}; writes ${JSON.stringify(accounting)}`);
  } finally {
    await writes?.stop().catch(() => {});
    await h.dispose();
    if (!process.env.DGU_KEEP_TEST_DIRS) await dropDatabasesWithPrefix(h.db.name);
    await ownTemporal.dispose();
  }
});
