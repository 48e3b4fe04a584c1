// A workflow item the old version listed and that is really gone from the database (not closed,
// not pushed out of the inbox) fails the traces-workflows smoke check: a good upgrade
// (v0.1.0 -> v0.2.0) ends rolled back. The passing side (an item approved and others pushed out
// during the upgrade: no rollback) is in upgrade.e2e.test.ts. No writes: the point is the
// workflow comparison, not the data-loss gate.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { createE2eDeployment, type E2eDeployment } from './support/e2e.js';
import { followAcceptingDataLoss } from './support/liveRun.js';
import { startTestTemporal, type TestTemporal } from './support/temporal.js';

let temporal: TestTemporal;
let d: E2eDeployment;
before(async () => {
  temporal = await startTestTemporal();
  d = await createE2eDeployment(temporal, 'wfinbox');
  await d.bootstrap();
  await d.startWorker();
});
after(async () => {
  await d?.dispose();
  await temporal?.dispose();
});

test('a workflow listed before the upgrade and deleted from the database fails traces-workflows and rolls the upgrade back', async () => {
  const started = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--json']);
  assert.equal(started.exitCode, 0, started.stderr);
  const startedJson = JSON.parse(started.stdout);
  assert.equal(startedJson.status.phase, 'awaiting-approval');
  assert.deepEqual(startedJson.status.baselineSmoke?.observations?.workflowIds, ['wf-default-0003', 'wf-default-0005']);

  // Lost data, not a changed inbox: the row and everything that refers to it are deleted.
  const db = new pg.Client({ connectionString: d.databaseUrl });
  await db.connect();
  try {
    for (const table of ['dg_workflow_items', 'dg_workflow_actions', 'dg_workflow_notifications', 'dg_workflow_runtime']) {
      await db.query(`DELETE FROM ${table} WHERE workflow_id = 'wf-default-0005'`);
    }
  } finally {
    await db.end();
  }

  const approved = await d.cli(['approve', d.name, '--plan-hash', startedJson.status.planHash, '--comment', 'e2e']);
  assert.equal(approved.exitCode, 0, approved.stderr);
  const run = await followAcceptingDataLoss(d);
  const s = run.status;
  assert.equal(s.outcome, 'rolled-back', s.summary);
  assert.match(s.summary, /failed at smoke/);
  const checks = Object.fromEntries((s.smoke?.checks ?? []).map((c: any) => [c.name, c]));
  for (const name of ['healthz', 'projections', 'console', 'replay']) assert.equal(checks[name]?.passed, true, `${name}: ${checks[name]?.reason}`);
  assert.equal(checks['traces-workflows']?.passed, false);
  assert.match(checks['traces-workflows'].reason, /workflows shown before the upgrade no longer exist \(GET \/api\/v1\/workflows\/:id answered 404\): wf-default-0005$/);
});
