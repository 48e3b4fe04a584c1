import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { bundleWorkflowCode, DefaultLogger } from '@temporalio/worker';
import { buildIdOf, loadWorkflowCode } from '../src/worker/workflowCode.js';
import {
  assertRestoredToPreUpgrade,
  createE2eDeployment,
  databaseFacts,
  getJson,
  PROJECT_ROOT,
  waitCaughtUp,
  waitForStatus,
  type E2eDeployment,
  type WorkerProcess,
} from './support/e2e.js';
import { startWarmTraffic } from './support/liveRun.js';
import { startTestTemporal, type TestTemporal } from './support/temporal.js';
import { assertConfirmedWritesAccountedFor, describeTraffic, type Traffic } from './support/traffic.js';

// The real situation of upgrading dg-upgrade: runs wait (for an approval, for a retry) on a
// worker of the previous release (code A: the committed workflow code of bbe888c); that worker
// is stopped and one of the current code (B) takes over; the runs finish correctly on B.
const CODE_A_WORKFLOWS = path.join(PROJECT_ROOT, 'test', 'fixtures', 'workflows-bbe888c', 'workflows', 'index.js');

let temporal: TestTemporal;
let tmp: string;
let bundleA: string;
let buildA: string;

before(async () => {
  temporal = await startTestTemporal();
  tmp = mkdtempSync(path.join(os.tmpdir(), 'dgu-rollout-'));
  const { code } = await bundleWorkflowCode({ workflowsPath: CODE_A_WORKFLOWS, logger: new DefaultLogger('WARN') });
  bundleA = path.join(tmp, 'workflow-bundle-a.js');
  writeFileSync(bundleA, code);
  buildA = buildIdOf(code);
});
after(async () => {
  await temporal?.dispose();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** The build the worker printed at start (its log is written through a stream: wait for the line). */
async function reportedBuild(worker: WorkerProcess): Promise<string | undefined> {
  for (let i = 0; i < 100; i++) {
    const build = readFileSync(worker.logFile, 'utf8').match(/workflow code build (\S+)/)?.[1];
    if (build) return build;
    await new Promise((r) => setTimeout(r, 50));
  }
  return undefined;
}

async function startWorkerA(d: E2eDeployment, env: Record<string, string> = {}): Promise<WorkerProcess> {
  const worker = await d.startWorker({ DG_WORKFLOW_BUNDLE: bundleA, ...env });
  assert.equal(await reportedBuild(worker), buildA, 'the worker reports the build of the bundle it was given');
  return worker;
}

/** Stops worker A (as an operator's restart does: SIGTERM) and starts one on the current code; returns its build. */
async function swapToB(d: E2eDeployment, workerA: WorkerProcess): Promise<string> {
  await workerA.kill('SIGTERM');
  // Between the two workers the run waits, and status says why it cannot answer.
  const meanwhile = await d.cli(['status', d.name]);
  assert.equal(meanwhile.exitCode, 5, meanwhile.stdout + meanwhile.stderr);
  // Its worker is gone: either no poller is seen, or the last one does not answer (within 10 s).
  assert.match(meanwhile.stderr, /cannot read the status of .*: (no worker (polls|answered for) task queue "[^"]+"|the worker that last polled task queue "[^"]+" .* does not answer)/);
  assert.match(meanwhile.stderr, /start the worker \(dg-upgrade worker/);
  const workerB = await d.startWorker();
  const buildB = await reportedBuild(workerB);
  assert.ok(buildB, 'the new worker reports its build');
  assert.notEqual(buildB, buildA, 'code B is another build than code A');
  assert.equal(buildB, (await loadWorkflowCode({})).buildId, 'the new worker runs the current workflow code');
  return buildB;
}

async function statusJson(d: E2eDeployment, args: string[]): Promise<any> {
  const r = await d.cli(['status', ...args, '--json']);
  assert.equal(r.exitCode, 0, r.stdout + r.stderr);
  return JSON.parse(r.stdout);
}

describe('a run waiting for approval, started on code A, approved after the worker is replaced by code B', () => {
  let d: E2eDeployment;
  let traffic: Traffic | undefined;
  before(async () => {
    d = await createE2eDeployment(temporal, 'ro-approve');
    await d.bootstrap();
    await waitCaughtUp(d);
  });
  after(async () => {
    await traffic?.stop();
    await d?.dispose();
  });

  test('completes the upgrade on B, and status shows the run moved from build A to build B', async (t) => {
    const workerA = await startWorkerA(d);
    // The app takes 50 writes/s all along: while the run waits, while the workers swap, through the upgrade.
    traffic = await startWarmTraffic(d);
    const started = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--json']);
    assert.equal(started.exitCode, 0, started.stderr);
    assert.equal(JSON.parse(started.stdout).status.phase, 'awaiting-approval');
    const waiting = await statusJson(d, [d.name]);
    assert.equal(waiting.code.current, buildA, 'the waiting run is on code A');

    const buildB = await swapToB(d, workerA);
    const approved = await d.cli(['approve', d.name, '--plan-hash', waiting.planHash, '--comment', 'after the worker upgrade']);
    assert.equal(approved.exitCode, 0, approved.stderr);
    const followed = await d.cli(['status', d.name, '--follow', '--json']);
    assert.equal(followed.exitCode, 0, followed.stdout + followed.stderr);
    const status = JSON.parse(followed.stdout).status;
    assert.equal(status.outcome, 'succeeded', status.summary);
    // A step that code B added behind patched() shows as skipped on a run that started on A.
    for (const step of status.steps) assert.ok(['succeeded', 'skipped'].includes(step.state), `step ${step.name} is ${step.state}`);
    for (const name of ['build', 'stopOld', 'backup', 'migrate', 'startNew', 'smoke', 'finalize']) {
      assert.equal(status.steps.find((st: any) => st.name === name)?.state, 'succeeded', `step ${name}`);
    }
    assert.equal((await getJson(`http://127.0.0.1:${d.port}/api/healthz`)).body.version, '0.2.0');
    const written = await traffic.stop();
    traffic = undefined;
    const accounted = await assertConfirmedWritesAccountedFor(written, d.databaseUrl);
    assert.equal(accounted.setAside, 0, 'no confirmed write set aside');
    t.diagnostic(`traffic ${describeTraffic(written)}`);

    const final = await statusJson(d, [d.name]);
    assert.equal(final.code.startedOn, buildA);
    assert.equal(final.code.current, buildB, 'the run finished on code B');
    const text = await d.cli(['status', d.name]);
    assert.match(text.stdout, new RegExp(`Code: ${buildB.replace(/[.+]/g, '\\$&')} \\(started on ${buildA.replace(/[.+]/g, '\\$&')}`));
  });
});

// Without writes: the rollback is checked against the whole database before the upgrade
// (assertRestoredToPreUpgrade), and a squatter holds the app's port meanwhile; the rollback under
// writes and its data-loss gate are covered by rollback.e2e, data-loss-gate.e2e and the soak.
describe('a rollback blocked on code A, retried after the worker is replaced by code B', () => {
  let d: E2eDeployment;
  before(async () => {
    d = await createE2eDeployment(temporal, 'ro-rbretry');
    await d.bootstrap();
    await waitCaughtUp(d);
  });
  after(async () => d?.dispose());

  test('the retry on B finishes the rollback to the pre-upgrade state', async () => {
    const failDir = mkdtempSync(path.join(d.dir, 'failpoints-'));
    const workerA = await startWorkerA(d, { DG_UPGRADE_FAILPOINTS: 'restore.beforeSwap:mark', DG_UPGRADE_FAILPOINT_DIR: failDir });
    const before = await databaseFacts(d.databaseUrl);
    const started = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.3.0', '--yes']);
    assert.equal(started.exitCode, 0, started.stderr);
    // While the rollback restores, something else grabs the app's port: startOld fails and the rollback blocks.
    const marker = path.join(failDir, 'restore.beforeSwap');
    for (let i = 0; i < 2400 && !existsSync(marker); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(existsSync(marker), 'the rollback reached its restore');
    const squatter = http.createServer((_req, res) => res.end('{"squatter": true}')).listen(d.port, '127.0.0.1');
    let rollbackId: string;
    let buildB: string;
    try {
      const upgrading = await waitForStatus(d, (s) => !!s.rollbackWorkflowId, 'the rollback to start');
      rollbackId = upgrading.rollbackWorkflowId;
      const blocked = await waitForStatus(d, (s) => s.phase === 'rollback-blocked', 'the rollback to block', 120_000, ['--workflow-id', rollbackId]);
      assert.match(blocked.summary, /rollback step startOld failed/);
      assert.equal(blocked.code.current, buildA, 'the blocked rollback is on code A');
      buildB = await swapToB(d, workerA);
    } finally {
      await new Promise((r) => squatter.close(r));
    }
    const retried = await d.cli(['retry', d.name, '--by', 'e2e-operator', '--comment', 'port freed, worker upgraded']);
    assert.equal(retried.exitCode, 0, retried.stderr);
    const followed = await d.cli(['status', d.name, '--follow', '--json']);
    assert.equal(followed.exitCode, 1, followed.stdout);
    assert.equal(JSON.parse(followed.stdout).status.outcome, 'rolled-back');
    await assertRestoredToPreUpgrade(d, before);

    const rollback = await statusJson(d, ['--workflow-id', rollbackId!]);
    assert.equal(rollback.code.startedOn, buildA);
    assert.equal(rollback.code.current, buildB!, 'the rollback finished on code B');
  });
});
