import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { createE2eDeployment, waitCaughtUp, waitForStatus, type E2eDeployment } from './support/e2e.js';
import { followAcceptingDataLoss, startWarmTraffic } from './support/liveRun.js';
import { databaseUrlFor, dropDatabasesWithPrefix } from './support/postgres.js';
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
  const marker = path.join(failDir, 'restore.beforeSwap');
  const deadline = Date.now() + 120_000;
  while (!existsSync(marker)) {
    assert.ok(Date.now() < deadline, 'the restore reached the swap');
    await new Promise((r) => setTimeout(r, 50));
  }
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
