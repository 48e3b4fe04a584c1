import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, watch } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import {
  assertNoSecrets,
  createE2eDeployment,
  createRunningDeployment,
  databaseFacts,
  getJson,
  historyText,
  listDatabases,
  waitCaughtUp,
  waitForStatus,
  type E2eDeployment,
} from './support/e2e.js';
import { assertRestoredToBackup, backupOf, factsOfBackupFile, followAcceptingDataLoss, startWarmTraffic } from './support/liveRun.js';
import { databaseUrlFor } from './support/postgres.js';
import { startTestTemporal, type TestTemporal } from './support/temporal.js';
import { assertConfirmedWritesAccountedFor, assertGateCountMatchesDiscarded, describeTraffic, eventLogRows, type Traffic } from './support/traffic.js';

let temporal: TestTemporal;
before(async () => {
  temporal = await startTestTemporal();
});
after(async () => {
  await temporal?.dispose();
});

/** Starts an upgrade that will roll back and follows it through the data-loss gate. */
async function upgradeThatRollsBack(d: E2eDeployment, ref: string) {
  const started = await d.cli(['upgrade', '-d', d.name, '--to', ref, '--yes', '--json']);
  assert.equal(started.exitCode, 0, started.stderr);
  const run = await followAcceptingDataLoss(d, { workflowId: JSON.parse(started.stdout).workflowId });
  assert.equal(run.exitCode, 1, `a rolled-back upgrade exits 1: ${JSON.stringify(run.status).slice(0, 1000)}`);
  return run;
}

/** Stops the traffic and checks every confirmed write is in the live or the set-aside database, exactly once. */
async function settleTraffic(t: { diagnostic(m: string): void }, traffic: Traffic, d: E2eDeployment, aside?: string) {
  const written = await traffic.stop();
  const accounted = await assertConfirmedWritesAccountedFor(written, d.databaseUrl, aside ? { [aside]: databaseUrlFor(aside) } : {});
  t.diagnostic(`traffic ${describeTraffic(written)}; ${accounted.live} live, ${accounted.setAside} set aside`);
  return accounted;
}

describe('v0.2.1: a migration fails half-way, under 50 writes/s', () => {
  let d: E2eDeployment;
  let traffic: Traffic | undefined;
  before(async () => {
    d = await createRunningDeployment(temporal, 'halfmig');
  });
  after(async () => {
    await traffic?.stop();
    await d?.dispose();
  });

  test('ends rolled back to v0.1.0 with the backup restored, the upgraded database kept aside, no write lost', async (t) => {
    traffic = await startWarmTraffic(d);
    const run = await upgradeThatRollsBack(d, 'v0.2.1');
    const out = { status: run.status };
    assert.equal(out.status.outcome, 'rolled-back');
    assert.match(out.status.summary, /failed at migrate: .*ecto\.migrate.*; rolled back: rolled back to v0\.1\.0/);
    assert.equal(out.status.rollback.outcome, 'rolled-back');
    assert.equal(out.status.rollback.restoredTo.reused, true, 'the kept v0.1.0 build is reused');
    // The app was stopped before the backup and never served v0.2.1: nothing was written after the backup.
    assert.deepEqual(run.asked, [], 'no data-loss gate: no event after the backup');
    const aside = out.status.rollback.asideDatabase as string;
    await assertRestoredToBackup(d, out.status, databaseUrlFor(aside));

    assert.ok((await listDatabases(d.db.name)).includes(aside), `${aside} is kept`);
    const asideFacts = await databaseFacts(databaseUrlFor(aside));
    const held = await factsOfBackupFile((await backupOf(d, out.status)).file);
    assert.ok(asideFacts.versions.length > held.facts.versions.length, 'the set-aside database holds the half-applied migrations');
    const accounted = await settleTraffic(t, traffic, d, aside);
    traffic = undefined;
    assert.equal(accounted.setAside, 0, 'no confirmed write was discarded');
  });

  test('backups lists and verifies the pre-upgrade backup', async () => {
    const r = await d.cli(['backups', d.name, '--verify', '--json']);
    assert.equal(r.exitCode, 0, r.stderr);
    const rows = JSON.parse(r.stdout);
    assert.equal(rows.length, 1);
    assert.equal(rows[0].kind, 'pre-upgrade');
    assert.equal(rows[0].verification.ok, true);
  });
});

describe('v0.3.0: smoke checks fail; events written after the backup, under 50 writes/s', () => {
  let d: E2eDeployment;
  let traffic: Traffic | undefined;
  before(async () => {
    d = await createRunningDeployment(temporal, 'smokefail');
  });
  after(async () => {
    await traffic?.stop();
    await d?.dispose();
  });

  test('the rollback pauses, says how many events a restore discards, and goes on after the signal', async (t) => {
    traffic = await startWarmTraffic(d);
    const started = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.3.0', '--yes']);
    assert.equal(started.exitCode, 0, started.stderr);
    await waitForStatus(d, (s) => s.steps.some((st: any) => st.name === 'backup' && st.state === 'succeeded'), 'the backup');
    const client = new pg.Client({ connectionString: d.databaseUrl });
    await client.connect();
    try {
      await client.query(`INSERT INTO dg_event_log (tenant_id, trace_id, event_type, payload) VALUES ('default', 'trace-late', 'trace.started', '{}'), ('default', 'trace-late', 'trace.annotated', '{}')`);
    } finally {
      await client.end();
    }

    const upgrading = await waitForStatus(d, (s) => !!s.rollbackWorkflowId, 'the rollback to start');
    const rollbackId = upgrading.rollbackWorkflowId as string;
    const waiting = await waitForStatus(d, (s) => s.phase === 'awaiting-data-loss-approval', 'the data-loss gate', 120_000, ['--workflow-id', rollbackId]);
    // The two late inserts, and the API writes v0.3.0 confirmed while it served.
    const n = waiting.dataLoss.eventsAfterBackup as number;
    const backupMax = waiting.dataLoss.backupMaxLogSeq as number;
    const confirmedAfterBackup = traffic.snapshot().confirmed.filter((w) => w.logSeq > backupMax).length;
    assert.ok(n >= 2 + confirmedAfterBackup, `the gate counts the 2 late events and the ${confirmedAfterBackup} confirmed writes after the backup: ${n}`);
    assert.match(waiting.summary, new RegExp(`would discard ${n} events written after the backup`));
    assert.match(waiting.waitingFor, /acceptDataLoss/);

    const wrong = await d.cli(['accept-data-loss', d.name, '--events', String(n + 3)]);
    assert.equal(wrong.exitCode, 7, 'a wrong count is refused');
    const ok = await d.cli(['accept-data-loss', d.name, '--events', String(n), '--by', 'e2e-operator']);
    assert.equal(ok.exitCode, 0, ok.stderr);

    // If the count grew before the swap, the gate asks again: accept what it shows then.
    const run = await followAcceptingDataLoss(d);
    assert.equal(run.exitCode, 1, JSON.stringify(run.status).slice(0, 1000));
    const status = run.status;
    assert.equal(status.outcome, 'rolled-back');
    assert.match(status.summary, /failed at smoke: smoke checks failed on v0\.3\.0: console: console renders an error panel/);
    const aside = databaseUrlFor(status.rollback.asideDatabase);
    await assertRestoredToBackup(d, status, aside);
    const gate = await assertGateCountMatchesDiscarded(status, d.databaseUrl, aside, traffic.snapshot());
    assert.ok(gate.discarded >= 2);
    const late = (await eventLogRows(aside)).filter((r) => r.row.includes('trace-late'));
    assert.equal(late.length, 2, 'the late events are kept in the set-aside database');
    assert.equal((await eventLogRows(d.databaseUrl)).filter((r) => r.row.includes('trace-late')).length, 0, 'and are not live');
    await settleTraffic(t, traffic, d, status.rollback.asideDatabase);
    traffic = undefined;
  });
});

describe('standalone rollback after a good upgrade, under 50 writes/s', () => {
  let d: E2eDeployment;
  let traffic: Traffic | undefined;
  before(async () => {
    d = await createRunningDeployment(temporal, 'manualrb');
  });
  after(async () => {
    await traffic?.stop();
    await d?.dispose();
  });

  test('rollback without a backup is refused and changes nothing', async () => {
    const r = await d.cli(['rollback', '--deployment', d.name]);
    assert.equal(r.exitCode, 14);
    assert.match(r.stderr, /has no pre-upgrade backup/);
    assert.equal((await getJson(`http://127.0.0.1:${d.port}/api/healthz`)).body.version, '0.1.0');
  });

  test('dg-upgrade rollback brings v0.2.0 back to v0.1.0 and its backup; the writes v0.2.0 took are counted, accepted and set aside', async (t) => {
    traffic = await startWarmTraffic(d);
    const up = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--yes', '--follow']);
    assert.equal(up.exitCode, 0, up.stdout + up.stderr);
    assert.equal((await getJson(`http://127.0.0.1:${d.port}/api/healthz`)).body.version, '0.2.0');
    // Going back to v0.1.0 by upgrade is a downgrade: refused at plan time unless asked for,
    // then the plan names the migration v0.1.0 would serve without knowing (issue 20 item 2).
    const down = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.1.0', '--yes', '--follow']);
    assert.equal(down.exitCode, 15, down.stdout + down.stderr);
    assert.match(down.stderr, /v0\.1\.0 is older than the running v0\.2\.0; the database holds migrations v0\.1\.0 does not know \(20260314000100_create_dg_trace_tags\).*--allow-downgrade/);
    assert.equal((await getJson(`http://127.0.0.1:${d.port}/api/healthz`)).body.version, '0.2.0', 'the refused downgrade stopped nothing');
    const asked = await d.cli(['plan', '-d', d.name, '--to', 'v0.1.0', '--allow-downgrade', '--json']);
    assert.equal(asked.exitCode, 0, asked.stdout + asked.stderr);
    const downgrade = JSON.parse(asked.stdout).plan.downgrade;
    assert.equal(downgrade.targetIsAncestor, true);
    assert.deepEqual(downgrade.unknownMigrations, [{ version: '20260314000100', name: 'create_dg_trace_tags' }]);
    assert.match((await d.cli(['plan', '-d', d.name, '--to', 'v0.1.0', '--allow-downgrade'])).stdout, /DOWNGRADE \(asked for with --allow-downgrade\).*20260314000100_create_dg_trace_tags/);
    // Let v0.2.0 take writes for a while.
    const servedFrom = traffic.snapshot().confirmed.length;
    for (let i = 0; i < 100 && traffic.snapshot().confirmed.length < servedFrom + 50; i++) await new Promise((r) => setTimeout(r, 100));
    const rb = await d.cli(['rollback', '--deployment', d.name, '--json']);
    assert.equal(rb.exitCode, 0, rb.stdout + rb.stderr);
    const run = await followAcceptingDataLoss(d, { workflowId: JSON.parse(rb.stdout).workflowId });
    assert.equal(run.exitCode, 0, JSON.stringify(run.status).slice(0, 1000));
    const status = run.status;
    assert.equal(status.outcome, 'rolled-back');
    assert.ok(run.asked.length >= 1 && run.asked[0]! >= 50, `the gate asked for the writes v0.2.0 took: ${JSON.stringify(run.asked)}`);
    const aside = databaseUrlFor(status.asideDatabase ?? status.rollback.asideDatabase);
    await assertRestoredToBackup(d, status, aside);
    const gate = await assertGateCountMatchesDiscarded(status, d.databaseUrl, aside, traffic.snapshot());
    const accounted = await settleTraffic(t, traffic, d, status.asideDatabase ?? status.rollback.asideDatabase);
    traffic = undefined;
    assert.ok(accounted.setAside >= 50 && accounted.setAside <= gate.discarded, `${accounted.setAside} confirmed writes set aside, ${gate.discarded} discarded`);
  });
});

describe('a rollback step that fails waits for the operator, under 50 writes/s', () => {
  let d: E2eDeployment;
  let failDir: string;
  let traffic: Traffic | undefined;
  before(async () => {
    d = await createE2eDeployment(temporal, 'rbretry');
    await d.bootstrap();
    await waitCaughtUp(d);
    failDir = mkdtempSync(path.join(d.dir, 'failpoints-'));
    await d.startWorker({ DG_UPGRADE_FAILPOINTS: 'restore.beforeSwap:mark', DG_UPGRADE_FAILPOINT_DIR: failDir });
  });
  after(async () => {
    await traffic?.stop();
    await d?.dispose();
  });

  test('startOld fails while a foreign process holds the port; the rollback reports it, waits, and a retry finishes it', async (t) => {
    traffic = await startWarmTraffic(d);
    const started = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.3.0', '--yes']);
    assert.equal(started.exitCode, 0, started.stderr);
    // While the rollback restores (past its data-loss gate), something else grabs the app's port.
    // The squatter answers 200 to everything: the traffic's writes to it are refused (not 201), not confirmed.
    const marker = path.join(failDir, 'restore.beforeSwap');
    const squatter = http.createServer((_req, res) => res.end('{"squatter": true}'));
    const listening = new Promise<void>((resolve, reject) => {
      squatter.once('error', reject);
      squatter.once('listening', () => resolve());
    });
    // fs.watch fires within a millisecond or so: the port is taken long before startOld gets to it.
    const watcher = watch(failDir, (_event, file) => {
      if (file === 'restore.beforeSwap' && !squatter.listening) squatter.listen(d.port, '127.0.0.1');
    });
    try {
      await followAcceptingDataLoss(d, { until: () => existsSync(marker), timeoutMs: 120_000 });
      assert.ok(existsSync(marker), 'the rollback reached its restore');
      await listening;
    } finally {
      watcher.close();
    }
    try {
      const upgrading = await waitForStatus(d, (s) => !!s.rollbackWorkflowId, 'the rollback to start');
      const blocked = await waitForStatus(d, (s) => s.phase === 'rollback-blocked', 'the rollback to block', 120_000, ['--workflow-id', upgrading.rollbackWorkflowId]);
      assert.match(blocked.summary, /rollback step startOld failed: port \d+ is already answering but not by a runtime dg-upgrade started/);
      assert.match(blocked.waitingFor, /"retry".*"abandon"/);
      const early = await d.cli(['retry', d.name, '--comment', 'too early']);
      assert.equal(early.exitCode, 0, 'the retry signal is accepted');
      await waitForStatus(d, (s) => s.phase === 'rollback-blocked' && /retrying|failed/.test(s.summary), 'the retry to fail again', 60_000, ['--workflow-id', upgrading.rollbackWorkflowId]);
    } finally {
      await new Promise((r) => squatter.close(r));
    }
    const retried = await d.cli(['retry', d.name, '--by', 'e2e-operator', '--comment', 'port freed']);
    assert.equal(retried.exitCode, 0, retried.stderr);
    const run = await followAcceptingDataLoss(d);
    assert.equal(run.exitCode, 1, JSON.stringify(run.status).slice(0, 1000));
    const status = run.status;
    assert.equal(status.outcome, 'rolled-back');
    const aside = databaseUrlFor(status.rollback.asideDatabase);
    await assertRestoredToBackup(d, status, aside);
    await assertGateCountMatchesDiscarded(status, d.databaseUrl, aside, traffic.snapshot());
    await settleTraffic(t, traffic, d, status.rollback.asideDatabase);
    traffic = undefined;
    assertNoSecrets(d, await historyText(temporal, `dg-upgrade-${d.name}`));
  });
});
