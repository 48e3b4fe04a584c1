import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createE2eDeployment, editProfile, getJson, waitForStatus, type E2eDeployment } from './support/e2e.js';
import { startWarmTraffic } from './support/liveRun.js';
import { startTestTemporal, type TestTemporal } from './support/temporal.js';
import { assertConfirmedWritesAccountedFor, describeTraffic, type Traffic } from './support/traffic.js';

let temporal: TestTemporal;
let d: E2eDeployment;
let traffic: Traffic | undefined;
before(async () => {
  temporal = await startTestTemporal();
  d = await createE2eDeployment(temporal, 'srvrestart');
  await d.bootstrap();
  await d.startWorker();
});
after(async () => {
  await traffic?.stop();
  await d?.dispose();
  await temporal?.dispose();
});

test('the Temporal server restarts (same SQLite file) mid-upgrade and the run still finishes, losing no write', async (t) => {
  traffic = await startWarmTraffic(d);
  editProfile(d, (p) => (p.toolchain.env.DG_FIXTURE_MIGRATE_MS = '6000'));
  const started = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--yes']);
  assert.equal(started.exitCode, 0, started.stderr);
  await waitForStatus(d, (s) => s.steps.some((st: any) => st.name === 'migrate' && st.state === 'running'), 'the migrate step');
  const oldPid = temporal.pid;
  await temporal.restart();
  assert.notEqual(temporal.pid, oldPid, 'a new server process');
  const followed = await d.cli(['status', d.name, '--follow', '--json']);
  assert.equal(followed.exitCode, 0, followed.stdout + followed.stderr);
  const status = JSON.parse(followed.stdout).status;
  assert.equal(status.outcome, 'succeeded');
  assert.equal((await getJson(`http://127.0.0.1:${d.port}/api/healthz`)).body.version, '0.2.0');
  assert.equal(d.worker!.child.exitCode, null, 'the same worker reconnected and carried on');
  const written = await traffic.stop();
  traffic = undefined;
  const accounted = await assertConfirmedWritesAccountedFor(written, d.databaseUrl);
  assert.equal(accounted.setAside, 0);
  t.diagnostic(`traffic ${describeTraffic(written)}`);
});
