import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Context } from '@temporalio/activity';
import { NativeConnection, Worker } from '@temporalio/worker';
import * as activities from '../src/activities/index.js';
import { setProfilePath } from '../src/activities/deployment.js';
import { taskQueueForNode } from '../src/config/profile.js';
import { PAYLOAD_CONVERTER_PATH } from '../src/worker/bundle.js';
import { loadWorkflowCode } from '../src/worker/workflowCode.js';
import { createRunningDeployment, getJson, waitForStatus, type E2eDeployment } from './support/e2e.js';
import { waitForFile } from './support/crash.js';
import { followAcceptingDataLoss } from './support/liveRun.js';
import { startTestTemporal, type TestTemporal } from './support/temporal.js';

// Issue 20 item 11: what the CLI says about Temporal-level events. The runs end right; these
// tests check what the operator is told: a stopped worker (exit 5 and the hint, not a 30 s wait
// and exit 1), a cancel whose build finished before it heard of it, a cancel after the cutover,
// and a finished rollback read without a worker. The pure parts: test/cli-temporal-events.test.ts.

let temporal: TestTemporal;
let d: E2eDeployment;
let fpDir: string;

before(async () => {
  temporal = await startTestTemporal();
  d = await createRunningDeployment(temporal, 'clievents');
  fpDir = mkdtempSync(path.join(os.tmpdir(), 'dgu-clievents-fp-'));
});

after(async () => {
  await d?.dispose();
  await temporal?.dispose();
  if (fpDir) rmSync(fpDir, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function statusJson(args: string[] = [d.name]): Promise<any> {
  const r = await d.cli(['status', ...args, '--json']);
  assert.equal(r.exitCode, 0, `status ${args.join(' ')}: ${r.stdout}${r.stderr}`);
  return JSON.parse(r.stdout);
}

async function servedVersion(): Promise<string> {
  return (await getJson(`http://127.0.0.1:${d.port}/api/healthz`)).body.version;
}

test('worker down: approve, reject, status and cancel exit 5 with the hint, bounded, and nothing is lost', async () => {
  const started = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0']);
  assert.equal(started.exitCode, 0, started.stdout + started.stderr);
  const waiting = await statusJson();
  assert.equal(waiting.phase, 'awaiting-approval');
  await d.worker!.kill('SIGTERM');

  const noWorker = /(no worker polls task queue "dg-upgrade-[^"]+"|the worker that last polled task queue "dg-upgrade-[^"]+" \(.+\) does not answer: it is down, stuck or overloaded; no answer within 8 s)/;
  const hint = /hint: start the worker \(dg-upgrade worker --profile FILE, or systemctl start dg-upgrade-worker\) and run the command again; the run waits and loses nothing/;
  const t0 = Date.now();
  const approve = await d.cli(['approve', d.name, '--plan-hash', waiting.planHash]);
  const approveMs = Date.now() - t0;
  assert.equal(approve.exitCode, 5, `approve with the worker down: ${approve.stdout}${approve.stderr}`);
  assert.match(approve.stderr, new RegExp(`cannot approve dg-upgrade-${d.name}: ${noWorker.source}`));
  assert.match(approve.stderr, hint);
  assert.doesNotMatch(approve.stderr, /Failed to query Workflow/);
  // Not a speed check: the query is bounded (8 s) instead of waiting for the server's own ~30 s.
  assert.ok(approveMs < 25_000, `approve waited ${approveMs} ms for a worker`);

  for (const args of [['status', d.name], ['reject', d.name, '--comment', 'no']]) {
    const r = await d.cli(args);
    assert.equal(r.exitCode, 5, `${args[0]} with the worker down: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, noWorker);
    assert.match(r.stderr, hint);
  }
  const cancel = await d.cli(['cancel', d.name]);
  assert.equal(cancel.exitCode, 5, `cancel with the worker down: ${cancel.stdout}${cancel.stderr}`);
  assert.match(cancel.stderr, /the cancel request is recorded, but cannot tell what a cancel does to .*: the run acts on it once a worker runs/);

  // The worker comes back: the run takes the recorded cancel, nothing changed.
  await d.startWorker();
  const followed = await d.cli(['status', d.name, '--follow']);
  assert.equal(followed.exitCode, 3, followed.stdout + followed.stderr);
  assert.match(followed.stdout, /cancelled at approval; nothing changed/);
  assert.match(followed.stdout, /cancel requested at approval \([^)]+\): nothing has changed yet: the run stops before its next step and the old version keeps serving; the run ended aborted/);
  assert.equal(await servedVersion(), '0.1.0');
});

test('cancel while the build finishes: the build is shown cancelled and the summary names it (was "cancelled at unknown")', async () => {
  // The race in production: a build that ends before its next heartbeat completes although the
  // cancel was requested (it never heard of it), and the run stops at its next command, outside
  // any step. Held here deterministically: the worker of this test process runs the real
  // activities and workflow code, its buildRelease returning (successfully, as such a build does)
  // only once the cancel request is in.
  await d.worker!.kill('SIGTERM');
  const built = path.join(fpDir, 'built');
  const release = path.join(fpDir, 'release');
  Object.assign(process.env, d.temporalEnv, d.env, { DG_UPGRADE_PROFILE: d.profilePath });
  setProfilePath(d.profilePath);
  const connection = await NativeConnection.connect({ address: temporal.address });
  const code = await loadWorkflowCode();
  const worker = await Worker.create({
    connection,
    namespace: temporal.namespace,
    taskQueue: taskQueueForNode(JSON.parse(readFileSync(d.profilePath, 'utf8')).deployments[d.name].node),
    workflowBundle: { code: code.code },
    dataConverter: { payloadConverterPath: PAYLOAD_CONVERTER_PATH },
    buildId: code.buildId,
    stickyQueueScheduleToStartTimeout: '2 seconds',
    activities: {
      ...activities,
      async buildRelease(deployment: string, dir: string) {
        await activities.buildRelease(deployment, dir);
        writeFileSync(built, '');
        while (!existsSync(release)) {
          Context.current().heartbeat('built; held until the test has cancelled');
          await sleep(200);
        }
      },
    },
  });
  const running = worker.run();
  try {
    const started = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--yes']);
    assert.equal(started.exitCode, 0, started.stdout + started.stderr);
    await waitForFile(built, 240_000);
    const cancel = await d.cli(['cancel', d.name]);
    assert.equal(cancel.exitCode, 0, cancel.stdout + cancel.stderr);
    assert.match(cancel.stdout, /Cancellation requested for dg-upgrade-\S+ at build: nothing has changed yet/);
    // The cancel request is in the history before the build returns.
    const info = await d.cli(['status', d.name]);
    assert.match(info.stdout, /cancel requested at build \(/);
    writeFileSync(release, '');

    const followed = await d.cli(['status', d.name, '--follow', '--json']);
    assert.equal(followed.exitCode, 3, followed.stdout + followed.stderr);
    const status = JSON.parse(followed.stdout).status;
    assert.match(status.summary, /v0\.1\.0 -> v0\.2\.0 cancelled at build; nothing changed$/);
    assert.doesNotMatch(status.summary, /unknown/);
    const build = status.steps.find((s: any) => s.name === 'build');
    assert.equal(build.state, 'cancelled', JSON.stringify(status.steps));
    assert.match(build.detail, /the cancel arrived while it ran; it finished before it heard of it/);
    assert.ok(status.steps.filter((s: any) => ['stopOld', 'backup', 'migrate', 'startNew', 'smoke', 'finalize'].includes(s.name)).every((s: any) => s.state === 'skipped'), JSON.stringify(status.steps));
    const text = await d.cli(['status', d.name]);
    assert.match(text.stdout, /⊘ build {7}cancelled/);
    assert.equal(await servedVersion(), '0.1.0');
  } finally {
    writeFileSync(release, '');
    worker.shutdown();
    await running;
    await connection.close();
  }
  await d.startWorker();
});

test('cancel after cutover: status and cancel say the new version serves and that it means a rollback; the finished rollback reads as one without a worker', async () => {
  // The smoke checks are held (each pass 45 s slower, heartbeating) after the new version's
  // healthz answered: the cutover is done and the smoke step runs while the cancel comes.
  await d.worker!.kill('SIGTERM');
  await d.startWorker({ DG_UPGRADE_FAILPOINTS: 'smoke.afterHealthz:delay=45000' });
  const started = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--yes']);
  assert.equal(started.exitCode, 0, started.stdout + started.stderr);
  await waitForStatus(d, (s) => s.steps.some((st: any) => st.name === 'smoke' && st.state === 'running'), 'the smoke step', 300_000);
  assert.equal(await servedVersion(), '0.2.0', 'the new version serves (startNew waited for it): the cutover is done');

  const cancel = await d.cli(['cancel', d.name]);
  assert.equal(cancel.exitCode, 0, cancel.stdout + cancel.stderr);
  assert.match(cancel.stdout, /at smoke: the new version already serves \(cutover done\); cancelling now means a rollback: the running step stops or finishes, then the pre-upgrade backup \S+ is restored and the previous version started/);
  const during = await d.cli(['status', d.name]);
  assert.equal(during.exitCode, 0, during.stderr);
  assert.match(during.stdout, /\n {2}cancel requested at smoke \([^)]+ by [^)]+\): the new version already serves \(cutover done\); cancelling now means a rollback/);
  assert.equal(JSON.parse((await d.cli(['status', d.name, '--json'])).stdout).cancelRequest.at_step, 'smoke');

  // The smoke step runs to its end (it does not stop for a cancel), then the run rolls back.
  const run = await followAcceptingDataLoss(d, { timeoutMs: 600_000 });
  const status = run.status;
  assert.equal(status.outcome, 'rolled-back', JSON.stringify(status).slice(0, 2000));
  assert.match(status.summary, /v0\.1\.0 -> v0\.2\.0 cancelled at smoke; rolled back: /);
  assert.equal(status.steps.find((s: any) => s.name === 'smoke').state, 'cancelled');
  assert.match(status.classification.reason, /cancelled by an operator at smoke, after the pre-upgrade backup was taken/);
  assert.equal(await servedVersion(), '0.1.0');
  const followed = await d.cli(['status', d.name, '--follow']);
  assert.equal(followed.exitCode, 1, `a cancel that rolled back is not "nothing changed" (exit 3): ${followed.stdout}${followed.stderr}`);
  assert.match(followed.stdout, /cancel requested at smoke \([^)]+\): the new version already serves .*; the run ended rolled-back/);

  // The rollback (a workflow of its own) reads as a rollback in its own phase, with and without a worker.
  const rollbackId = status.rollbackWorkflowId as string;
  const header = new RegExp(`^${rollbackId} {2}rollback {2}phase: rolled-back\\n {2}${d.name}: rolled back to v0\\.1\\.0`, 'm');
  const up = await d.cli(['status', '--workflow-id', rollbackId, '--follow']);
  assert.equal(up.exitCode, 0, up.stdout + up.stderr);
  assert.match(up.stdout, header);
  await d.worker!.kill('SIGTERM');
  const down = await d.cli(['status', '--workflow-id', rollbackId, '--follow']);
  assert.equal(down.exitCode, 0, down.stdout + down.stderr);
  assert.match(down.stdout, header);
  assert.doesNotMatch(down.stdout, /upgrade {2}phase: failed/);
  await d.startWorker();
});
