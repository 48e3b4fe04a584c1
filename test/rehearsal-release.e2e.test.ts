import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { createRunningDeployment, editProfile, listDatabases, processesWithEnv, waitForStatus, type E2eDeployment } from './support/e2e.js';
import { startTestTemporal, type TestTemporal } from './support/temporal.js';

// Issue 21, release model: the rehearsal builds the target's packaged release, migrates the copy
// with the release's own eval, starts `bin/<release> start` against the copy under its own node
// name and port, and leaves nothing behind; the upgrade that follows starts the same release.

let temporal: TestTemporal;
let d: E2eDeployment;

before(async () => {
  temporal = await startTestTemporal();
  d = await createRunningDeployment(temporal, 'rehrel', { model: 'release' });
});
after(async () => {
  await d?.dispose();
  await temporal?.dispose();
});

test('release model: rehearse v0.2.0 on a copy, then the upgrade under a required rehearsal succeeds', async () => {
  const r = await d.cli(['rehearse', '--deployment', d.name, '--to', 'v0.2.0', '--json']);
  assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
  const o = JSON.parse(r.stdout).outcome;
  assert.equal(o.passed, true);
  assert.deepEqual(o.migrations.map((m: any) => m.version), ['20260314000100']);
  assert.deepEqual(await listDatabases(`${d.db.name.slice(0, 44)}_rehearsal_`), []);
  assert.deepEqual(processesWithEnv('DG_UPGRADE_RUNTIME', `${d.name}-rehearsal`), []);
  const dir = path.join(d.profile.stateDir, 'rehearsals', d.name);
  assert.deepEqual(existsSync(dir) ? readdirSync(dir) : [], []);

  const restore = editProfile(d, (x) => (x.rehearsal = { policy: 'required' }));
  try {
    const started = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--yes', '--json']);
    assert.equal(started.exitCode, 0, `${started.stdout}\n${started.stderr}`);
    const done = await waitForStatus(d, (s) => s.outcome === 'succeeded' || s.outcome === 'failed', 'the upgrade to end', 300_000);
    assert.equal(done.outcome, 'succeeded', done.summary);
    assert.equal(done.plan.rehearsal.passed, true);
    assert.ok(done.plan.rehearsal.predictedDowntimeMs > 0);
  } finally {
    restore();
  }
});
