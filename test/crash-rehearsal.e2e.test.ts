import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { createRunningDeployment, databaseFacts, listDatabases, processesWithEnv, type E2eDeployment } from './support/e2e.js';
import { waitForFile } from './support/crash.js';
import { ADMIN_DATABASE_URL } from './support/postgres.js';
import { startTestTemporal, type TestTemporal } from './support/temporal.js';

// Issue 21: the worker is SIGKILLed in each stage of a rehearsal (before the copy, with a restored
// but unmarked half copy, before the migrations, right after the rehearsal instance was spawned,
// between its first two smoke checks, and in the cleanup after its stop). A new worker takes the
// rehearsal to its end: it passes, and nothing of it is left (no copy, no process, no run dir),
// with the live install untouched.

const CASES: Array<{ name: string; failpoint: string }> = [
  { name: 'before the online copy', failpoint: 'rehearsal.copy' },
  { name: 'with the copy restored but not marked complete', failpoint: 'rehearsal.copyBeforeMark' },
  { name: 'before the migrations on the copy', failpoint: 'rehearsal.migrate' },
  { name: 'right after the rehearsal instance was spawned', failpoint: 'startRuntime.afterSpawn' },
  { name: 'between the smoke checks on the copy', failpoint: 'smoke.afterHealthz' },
  { name: 'in the cleanup, after the instance stopped, before the copy is dropped', failpoint: 'rehearsal.cleanup' },
];

let temporal: TestTemporal;
let d: E2eDeployment;
let markers: string;

before(async () => {
  temporal = await startTestTemporal();
  d = await createRunningDeployment(temporal, 'crreh');
  markers = mkdtempSync(path.join(d.dir, 'failpoints-'));
});
after(async () => {
  if (d) {
    const c = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
    await c.connect();
    try {
      for (const db of await listDatabases(`${d.db.name.slice(0, 44)}_rehearsal_`)) await c.query(`DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`);
    } finally {
      await c.end();
    }
  }
  await d?.dispose();
  await temporal?.dispose();
});

async function liveState() {
  const facts = await databaseFacts(d.databaseUrl);
  const record = JSON.parse(readFileSync(path.join(d.profile.stateDir, 'runtime', d.name, 'runtime.json'), 'utf8'));
  return { ...facts, pid: record.pid as number };
}

CASES.forEach((c, i) => {
  test(`worker killed ${c.name}: the rehearsal ends, nothing of it is left`, async () => {
    // The first case's preflight-free rehearsal reads nothing through the inbox; the state is taken once the live app is idle.
    const before = await liveState();
    await d.worker!.kill('SIGKILL');
    await d.startWorker({ DG_UPGRADE_FAILPOINTS: c.failpoint, DG_UPGRADE_FAILPOINT_DIR: markers });
    const run = d.cli(['rehearse', '--deployment', d.name, '--to', 'v0.2.0', '--json']);
    await waitForFile(path.join(markers, c.failpoint), 180_000);
    await d.worker!.kill('SIGKILL');
    await d.startWorker();
    const r = await run;
    assert.equal(r.exitCode, 0, `case ${i}: ${r.stdout}\n${r.stderr}`);
    const outcome = JSON.parse(r.stdout).outcome;
    assert.equal(outcome.passed, true);
    assert.ok(outcome.predictedDowntimeMs > 0);
    assert.deepEqual(await listDatabases(`${d.db.name.slice(0, 44)}_rehearsal_`), [], 'no rehearsal database left');
    assert.deepEqual(processesWithEnv('DG_UPGRADE_RUNTIME', `${d.name}-rehearsal`), [], 'no rehearsal process left');
    const dir = path.join(d.profile.stateDir, 'rehearsals', d.name);
    assert.deepEqual(existsSync(dir) ? readdirSync(dir) : [], [], 'no rehearsal run dir left');
    assert.deepEqual(await liveState(), before, 'the live database and runtime are as before');
  });
});

test('a cancel while the rehearsal instance serves the copy: the cleanup still runs, nothing is left', async () => {
  const before = await liveState();
  const held = mkdtempSync(path.join(d.dir, 'held-'));
  await d.worker!.kill('SIGKILL');
  await d.startWorker({ DG_UPGRADE_FAILPOINTS: 'smoke.afterHealthz:hold', DG_UPGRADE_FAILPOINT_DIR: held });
  const marker = path.join(held, 'smoke.afterHealthz');
  const run = d.cli(['rehearse', '--deployment', d.name, '--to', 'v0.2.0', '--json']);
  await waitForFile(marker, 180_000);
  const pids = processesWithEnv('DG_UPGRADE_RUNTIME', `${d.name}-rehearsal`);
  assert.ok(pids.length > 0, 'the rehearsal instance runs');
  // Its own database, port and node name, and nothing it does leaves the rehearsal (compatibility row 42).
  const env = new Map(readFileSync(`/proc/${pids[0]}/environ`, 'utf8').split('\0').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)] as [string, string]));
  assert.match(env.get('DATABASE_URL') ?? '', /_rehearsal_[a-z0-9]+$/);
  assert.notEqual(env.get('PORT'), String(d.port));
  assert.equal(env.get('OTEL_SDK_DISABLED'), 'true');
  assert.equal(env.get('OTEL_TRACES_EXPORTER'), 'none');
  assert.match(env.get('RELEASE_NODE') ?? '', /_rehearsal_[a-z0-9]+@127\.0\.0\.1$/);
  assert.equal(env.get('SECRET_KEY_BASE'), d.secrets.secretKeyBase, 'the production environment otherwise');
  const cancelled = await d.cli(['cancel', '--workflow-id', `dg-upgrade-${d.name}-rehearse`]);
  assert.equal(cancelled.exitCode, 0, `${cancelled.stdout}\n${cancelled.stderr}`);
  writeFileSync(`${marker}.release`, '');
  const r = await run;
  assert.equal(r.exitCode, 3, `cancelled: ${r.stdout}\n${r.stderr}`);
  assert.deepEqual(await listDatabases(`${d.db.name.slice(0, 44)}_rehearsal_`), [], 'no rehearsal database left');
  assert.deepEqual(processesWithEnv('DG_UPGRADE_RUNTIME', `${d.name}-rehearsal`), [], 'no rehearsal process left');
  assert.deepEqual(await liveState(), before, 'the live database and runtime are as before');
});
