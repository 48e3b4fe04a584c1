import assert from 'node:assert/strict';
import { existsSync, mkdtempSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import {
  assertNoSecrets,
  assertRestoredToPreUpgrade,
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
import { databaseUrlFor } from './support/postgres.js';
import { startTestTemporal, type TestTemporal } from './support/temporal.js';

let temporal: TestTemporal;
before(async () => {
  temporal = await startTestTemporal();
});
after(async () => {
  await temporal?.dispose();
});

async function upgradeThatRollsBack(d: E2eDeployment, ref: string) {
  const r = await d.cli(['upgrade', '-d', d.name, '--to', ref, '--yes', '--follow', '--json']);
  assert.equal(r.exitCode, 1, `a rolled-back upgrade exits 1: ${r.stdout} ${r.stderr}`);
  return JSON.parse(r.stdout);
}

describe('v0.2.1: a migration fails half-way', () => {
  let d: E2eDeployment;
  before(async () => {
    d = await createRunningDeployment(temporal, 'halfmig');
  });
  after(async () => d?.dispose());

  test('ends rolled back to v0.1.0 with the pre-upgrade database, the upgraded one kept aside', async () => {
    const before = await databaseFacts(d.databaseUrl);
    const out = await upgradeThatRollsBack(d, 'v0.2.1');
    assert.equal(out.status.outcome, 'rolled-back');
    assert.match(out.status.summary, /failed at migrate: .*ecto\.migrate.*; rolled back: rolled back to v0\.1\.0/);
    assert.equal(out.status.rollback.outcome, 'rolled-back');
    assert.equal(out.status.rollback.restoredTo.reused, true, 'the kept v0.1.0 build is reused');
    await assertRestoredToPreUpgrade(d, before);

    const aside = out.status.rollback.asideDatabase as string;
    assert.ok((await listDatabases(d.db.name)).includes(aside), `${aside} is kept`);
    const asideFacts = await databaseFacts(databaseUrlFor(aside));
    assert.ok(asideFacts.versions.length > before.versions.length, 'the set-aside database holds the half-applied migrations');
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

describe('v0.3.0: smoke checks fail; events written after the backup', () => {
  let d: E2eDeployment;
  before(async () => {
    d = await createRunningDeployment(temporal, 'smokefail');
  });
  after(async () => d?.dispose());

  test('the rollback pauses, says how many events a restore discards, and goes on after the signal', async () => {
    const before = await databaseFacts(d.databaseUrl);
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
    assert.equal(waiting.dataLoss.eventsAfterBackup, 2);
    assert.match(waiting.summary, /would discard 2 events written after the backup/);
    assert.match(waiting.waitingFor, /acceptDataLoss/);

    const wrong = await d.cli(['accept-data-loss', d.name, '--events', '5']);
    assert.equal(wrong.exitCode, 7, 'a wrong count is refused');
    const ok = await d.cli(['accept-data-loss', d.name, '--events', '2', '--by', 'e2e-operator']);
    assert.equal(ok.exitCode, 0, ok.stderr);

    const followed = await d.cli(['status', d.name, '--follow', '--json']);
    assert.equal(followed.exitCode, 1, followed.stdout);
    const status = JSON.parse(followed.stdout).status;
    assert.equal(status.outcome, 'rolled-back');
    assert.match(status.summary, /failed at smoke: smoke checks failed on v0\.3\.0: console: console renders an error panel/);
    await assertRestoredToPreUpgrade(d, before);
    const asideFacts = await databaseFacts(databaseUrlFor(status.rollback.asideDatabase));
    assert.equal(asideFacts.rowCounts.dg_event_log, before.rowCounts.dg_event_log! + 2, 'the late events are kept in the set-aside database');
  });
});

describe('standalone rollback after a good upgrade', () => {
  let d: E2eDeployment;
  before(async () => {
    d = await createRunningDeployment(temporal, 'manualrb');
  });
  after(async () => d?.dispose());

  test('rollback without a backup is refused and changes nothing', async () => {
    const r = await d.cli(['rollback', '--deployment', d.name]);
    assert.equal(r.exitCode, 14);
    assert.match(r.stderr, /has no pre-upgrade backup/);
    assert.equal((await getJson(`http://127.0.0.1:${d.port}/api/healthz`)).body.version, '0.1.0');
  });

  test('dg-upgrade rollback brings v0.2.0 back to v0.1.0 and its database', async () => {
    const before = await databaseFacts(d.databaseUrl);
    const up = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--yes', '--follow']);
    assert.equal(up.exitCode, 0, up.stdout + up.stderr);
    assert.equal((await getJson(`http://127.0.0.1:${d.port}/api/healthz`)).body.version, '0.2.0');
    const rb = await d.cli(['rollback', '--deployment', d.name, '--follow', '--json']);
    assert.equal(rb.exitCode, 0, rb.stdout + rb.stderr);
    const status = JSON.parse(rb.stdout).status;
    assert.equal(status.outcome, 'rolled-back');
    await assertRestoredToPreUpgrade(d, before);
  });
});

describe('a rollback step that fails waits for the operator', () => {
  let d: E2eDeployment;
  let failDir: string;
  before(async () => {
    d = await createE2eDeployment(temporal, 'rbretry');
    await d.bootstrap();
    await waitCaughtUp(d);
    failDir = mkdtempSync(path.join(os.tmpdir(), 'dgu-failpoints-'));
    await d.startWorker({ DG_UPGRADE_FAILPOINTS: 'restore.beforeSwap:mark', DG_UPGRADE_FAILPOINT_DIR: failDir });
  });
  after(async () => d?.dispose());

  test('startOld fails while a foreign process holds the port; the rollback reports it, waits, and a retry finishes it', async () => {
    const before = await databaseFacts(d.databaseUrl);
    const started = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.3.0', '--yes']);
    assert.equal(started.exitCode, 0, started.stderr);
    // While the rollback restores, something else grabs the app's port.
    const marker = path.join(failDir, 'restore.beforeSwap');
    for (let i = 0; i < 1200 && !existsSync(marker); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(existsSync(marker), 'the rollback reached its restore');
    const squatter = http.createServer((_req, res) => res.end('{"squatter": true}')).listen(d.port, '127.0.0.1');
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
    const followed = await d.cli(['status', d.name, '--follow', '--json']);
    assert.equal(followed.exitCode, 1, followed.stdout);
    assert.equal(JSON.parse(followed.stdout).status.outcome, 'rolled-back');
    await assertRestoredToPreUpgrade(d, before);
    assertNoSecrets(d, await historyText(temporal, `dg-upgrade-${d.name}`));
  });
});
