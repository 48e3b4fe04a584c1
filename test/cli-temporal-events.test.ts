import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { StepTracker } from '../src/workflows/stepTracker.js';
import { UPGRADE_STEPS, type StepStatus, type UpgradeStatus } from '../src/domain/types.js';
import { CliError, EXIT } from '../src/client/exitCodes.js';
import { errorChainText, isNoAnswer, noWorkerReason, queryStatus, QUERY_DEADLINE_MS } from '../src/client/runQuery.js';
import { cancelRequestOfHistory, describeCancelRequest, renderCancelRequest, stepAt } from '../src/client/cancelRequest.js';
import { statusOfFinishedRun } from '../src/client/finishedRun.js';
import { renderStatus } from '../src/client/render.js';
import { codeHashOf, codeIdentity, codeVersionTag, codeVersionText } from '../src/client/codeVersion.js';
import { CLI } from './support/e2e.js';

// Issue 20 item 11: what the CLI says about Temporal-level events. The e2e side (a real worker
// stopped, a real cancel) is test/cli-temporal-events.e2e.test.ts.

/** A workflow handle whose task queue has `pollers` and whose query behaves as `query` says. */
function fakeHandle(pollers: Array<{ identity: string; secondsAgo: number }>, query: () => Promise<unknown>) {
  let queried = 0;
  const handle = {
    workflowId: 'dg-upgrade-prod',
    query: () => {
      queried++;
      return query();
    },
    client: {
      options: { namespace: 'default' },
      workflowService: {
        describeTaskQueue: async () => ({ pollers: pollers.map((p) => ({ identity: p.identity, lastAccessTime: { seconds: Math.floor(Date.now() / 1000) - p.secondsAgo } })) }),
      },
      connection: { withDeadline: async (deadline: number, fn: () => Promise<unknown>) => (assert.ok(deadline - Date.now() <= QUERY_DEADLINE_MS), fn()) },
    },
  };
  return { handle: handle as never, queried: () => queried };
}
const runningDesc = { taskQueue: 'dg-upgrade-local', status: { name: 'RUNNING' } } as never;

test('item 1: a run no worker polls for is exit 5 at once, with the queue named and the hint; the query is not even sent', async () => {
  const { handle, queried } = fakeHandle([], () => new Promise(() => {}));
  await assert.rejects(queryStatus(handle, runningDesc, 'approve'), (err: unknown) => {
    assert.ok(err instanceof CliError);
    assert.equal(err.exitCode, EXIT.unavailable);
    assert.match(err.message, /^cannot approve dg-upgrade-prod: no worker polls task queue "dg-upgrade-local"$/);
    assert.match(err.hint!, /start the worker \(dg-upgrade worker .*systemctl start dg-upgrade-worker\) and run the command again/);
    return true;
  });
  assert.equal(queried(), 0);
});

test('item 1: a query whose deadline passes (the worker polled lately but is gone) is exit 5, naming the last poller', async () => {
  const deadline = Object.assign(new Error('Failed to query Workflow'), { cause: Object.assign(new Error('4 DEADLINE_EXCEEDED: Deadline exceeded'), { code: 4 }) });
  const { handle } = fakeHandle([{ identity: '4242@node-a dg-upgrade 0.2.0+abc', secondsAgo: 12 }], () => Promise.reject(deadline));
  await assert.rejects(queryStatus(handle, runningDesc), (err: unknown) => {
    assert.ok(err instanceof CliError);
    assert.equal(err.exitCode, EXIT.unavailable);
    assert.match(err.message, /cannot read the status of dg-upgrade-prod: the worker that last polled task queue "dg-upgrade-local" \(4242@node-a dg-upgrade 0\.2\.0\+abc, 1\d s ago\) does not answer: it is down, stuck or overloaded; no answer within 8 s/);
    return true;
  });
  // A worker that answers with an error is not "no worker".
  assert.equal(isNoAnswer(Object.assign(new Error('Query handler threw'), { cause: { code: 3 } })), false);
  assert.equal(isNoAnswer(deadline), true);
  assert.match(noWorkerReason('q', undefined), /no worker answered for task queue "q"/);
});

test('item 1: a query our deadline ends as "1 CANCELLED: Call cancelled" is exit 5 too; one cancelled before the deadline is not "no worker"', async () => {
  const cancelled = Object.assign(new Error('Failed to query Workflow'), { cause: Object.assign(new Error('1 CANCELLED: Call cancelled'), { code: 1 }) });
  const realNow = Date.now;
  const atDeadline = () => {
    // The call ended when our deadline passed: the clock is past it.
    const shifted = realNow() + QUERY_DEADLINE_MS + 10;
    Date.now = () => shifted;
    return Promise.reject(cancelled);
  };
  try {
    await assert.rejects(queryStatus(fakeHandle([{ identity: '4242@node-a', secondsAgo: 9 }], atDeadline).handle, runningDesc), (err: unknown) => {
      assert.ok(err instanceof CliError);
      assert.equal(err.exitCode, EXIT.unavailable);
      assert.match(err.message, /does not answer: it is down, stuck or overloaded; no answer within 8 s/);
      return true;
    });
  } finally {
    Date.now = realNow;
  }
  await assert.rejects(queryStatus(fakeHandle([{ identity: 'w', secondsAgo: 1 }], () => Promise.reject(cancelled)).handle, runningDesc), (err: unknown) => err === cancelled);
});

test("item 1: Temporal's own refusal (no poller seen lately, FAILED_PRECONDITION at once) is exit 5 too, not 'Failed to query Workflow' exit 1", async () => {
  const refused = Object.assign(new Error('Failed to query Workflow'), { cause: Object.assign(new Error('9 FAILED_PRECONDITION: no poller seen for task queue recently, worker may be down'), { code: 9 }) });
  const { handle } = fakeHandle([{ identity: '4242@node-a', secondsAgo: 3 }], () => Promise.reject(refused));
  await assert.rejects(queryStatus(handle, runningDesc, 'approve'), (err: unknown) => {
    assert.ok(err instanceof CliError);
    assert.equal(err.exitCode, EXIT.unavailable);
    assert.match(err.message, /^cannot approve dg-upgrade-prod: no worker polls task queue "dg-upgrade-local" \(Temporal has seen no poller of it lately: the worker is down\)$/);
    return true;
  });
  // Any other refusal stays what it is.
  const other = Object.assign(new Error('Failed to query Workflow'), { cause: Object.assign(new Error('3 INVALID_ARGUMENT: bad'), { code: 3 }) });
  await assert.rejects(queryStatus(fakeHandle([{ identity: 'w', secondsAgo: 1 }], () => Promise.reject(other)).handle, runningDesc), (err: unknown) => err === other);
  assert.equal(errorChainText(other), 'Failed to query Workflow <- 3 INVALID_ARGUMENT: bad');
});

test('item 2: a cancel that found the build running names the build, also when its activity finished first', () => {
  const steps = new StepTracker(UPGRADE_STEPS);
  for (const name of ['preflight', 'plan', 'approval', 'build'] as const) Object.assign(steps.list.find((s) => s.name === name)!, { state: 'succeeded', startedAt: '2026-01-01T00:00:00Z', endedAt: '2026-01-01T00:00:05Z', durationMs: 5000 });
  steps.cancelRequest = { at: '2026-01-01T00:00:04Z', running: ['build'] };
  const reached = steps.markCancelled();
  assert.equal(reached?.name, 'build');
  const build = steps.list.find((s) => s.name === 'build')!;
  assert.equal(build.state, 'cancelled');
  assert.equal(build.durationMs, 5000, 'its timings are those of the work it did');
  assert.match(build.detail!, /finished before it heard of it/);
  steps.abandonRunning('cancelled');
  assert.deepEqual(steps.list.filter((s) => s.state === 'skipped').map((s) => s.name), ['stopOld', 'backup', 'migrate', 'startNew', 'smoke', 'portableBackup', 'finalize']);
});

test('item 2: a cancel between steps names the step that would have come next; one begun after it is shown as not run', async () => {
  const between = new StepTracker(UPGRADE_STEPS);
  for (const name of ['preflight', 'plan', 'approval', 'build'] as const) between.list.find((s) => s.name === name)!.state = 'succeeded';
  between.cancelRequest = { at: '2026-01-01T00:00:04Z', running: [] };
  assert.equal(between.markCancelled()?.name, 'stopOld');
  assert.equal(between.list.find((s) => s.name === 'stopOld')!.state, 'cancelled');
  assert.ok(between.neverRan.has('stopOld'));

  const after = new StepTracker(UPGRADE_STEPS);
  after.cancelRequest = { at: '2026-01-01T00:00:04Z', running: ['build'] };
  const { CancelledFailure } = await import('@temporalio/common');
  await assert.rejects(after.run('stopOld', () => Promise.reject(new CancelledFailure('refused'))));
  const stopOld = after.list.find((s) => s.name === 'stopOld')!;
  assert.equal(stopOld.state, 'skipped');
  assert.match(stopOld.detail!, /not run: the run was cancelled before this step/);
  assert.ok(after.neverRan.has('stopOld'));
});

const step = (name: string, state: StepStatus['state'], start?: string, end?: string): StepStatus => ({ name: name as never, state, startedAt: start, endedAt: end });
const upgradeAt = (steps: StepStatus[]): UpgradeStatus => ({ workflowId: 'dg-upgrade-prod', operation: 'upgrade', deployment: 'prod', targetRef: 'v0.2.0', phase: 'smoke-checking', steps, ignoredSignals: [], summary: 'prod: smoke checks', backup: { id: 'prod-1', file: 'f', sizeBytes: 1, sha256: 'x', migrationVersions: [] } });

test('item 3: status says when a cancel came, at which step, and that after cutover it means a rollback', () => {
  const steps = [
    step('build', 'succeeded', '2026-01-01T00:00:00Z', '2026-01-01T00:00:10Z'),
    step('backup', 'succeeded', '2026-01-01T00:00:11Z', '2026-01-01T00:00:12Z'),
    step('migrate', 'succeeded', '2026-01-01T00:00:12Z', '2026-01-01T00:00:13Z'),
    step('startNew', 'succeeded', '2026-01-01T00:00:13Z', '2026-01-01T00:00:15Z'),
    step('smoke', 'running', '2026-01-01T00:00:15Z'),
  ];
  const history = { events: [{ eventTime: { seconds: Date.parse('2026-01-01T00:00:20Z') / 1000 }, workflowExecutionCancelRequestedEventAttributes: { identity: '77@ops-host', cause: '' } }] };
  const request = cancelRequestOfHistory(history)!;
  assert.equal(stepAt(steps, request.at), 'smoke');
  const info = describeCancelRequest(upgradeAt(steps), request, 'RUNNING')!;
  assert.equal(info.at_step, 'smoke');
  assert.equal(info.by, '77@ops-host');
  assert.match(info.effect, /^the new version already serves \(cutover done\); cancelling now means a rollback: .*backup prod-1 is restored/);
  const text = renderStatus({ ...upgradeAt(steps), cancelRequest: info } as UpgradeStatus);
  assert.match(text, /\n {2}cancel requested at smoke \(2026-01-01T00:00:20\.000Z by 77@ops-host\): the new version already serves/);

  // Before the stop nothing changes; between steps it says after which one.
  const early = describeCancelRequest(upgradeAt(steps.slice(0, 1)), { at: new Date('2026-01-01T00:00:10.500Z') }, 'RUNNING')!;
  assert.equal(early.at_step, 'after build');
  assert.match(early.effect, /nothing has changed yet: .*old version keeps serving/);
  assert.match(renderCancelRequest(early), /^ {2}cancel requested after build \(/);
  // A finished run says how it ended; a rollback says it cannot be cancelled.
  assert.match(describeCancelRequest({ ...upgradeAt(steps), outcome: 'rolled-back' }, request, 'CANCELLED')!.effect, /; the run ended rolled-back$/);
  assert.match(describeCancelRequest({ ...upgradeAt(steps), operation: 'rollback' }, request, 'RUNNING')!.effect, /cannot be cancelled/);
  assert.equal(cancelRequestOfHistory({ events: [{}] }), undefined);
});

test("item 4: a finished rollback read from its result is a rollback in its own phase, not 'upgrade phase: failed'", () => {
  const status = statusOfFinishedRun(
    { workflowId: 'dg-upgrade-prod', type: 'rollback', runStatus: 'COMPLETED', deployment: 'prod', targetRef: 'backup' },
    { outcome: 'rolled-back', summary: 'prod: rolled back to v0.1.0: backup prod-1 restored' } as never,
  );
  assert.equal(status.operation, 'rollback');
  assert.equal(status.phase, 'rolled-back');
  assert.match(renderStatus(status), /^dg-upgrade-prod {2}rollback {2}phase: rolled-back\n {2}prod: rolled back to v0\.1\.0/);
  assert.equal(statusOfFinishedRun({ workflowId: 'w', type: 'upgrade', runStatus: 'CANCELLED' }, undefined, 'cancelled by an operator').phase, 'aborted');
  assert.equal(statusOfFinishedRun({ workflowId: 'w', type: 'rebuildProjections', runStatus: 'COMPLETED' }, { outcome: 'rebuilt', summary: 's' } as never).phase, 'rebuilt');
});

test('item 5: two builds of different code at the same version tell themselves apart; --version says which', () => {
  const roots = [0, 1].map((i) => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'dgu-codever-'));
    writeFileSync(path.join(root, 'package.json'), JSON.stringify({ version: '0.2.0' }));
    mkdirSync(path.join(root, 'dist', 'src', 'client'), { recursive: true });
    writeFileSync(path.join(root, 'dist', 'src', 'client', 'cli.js'), `export const x = ${i};\n`);
    return root;
  });
  try {
    const [a, b] = roots.map((r) => codeIdentity(r));
    assert.equal(a!.version, b!.version);
    assert.notEqual(a!.codeHash, b!.codeHash);
    assert.notEqual(codeVersionText(a!), codeVersionText(b!));
    assert.match(codeVersionText(a!), /^dg-upgrade 0\.2\.0 \(no git checkout, code [0-9a-f]{12}\)$/);
    assert.equal(codeHashOf(path.join(roots[0]!, 'dist', 'src')), a!.codeHash);
  } finally {
    for (const r of roots) rmSync(r, { recursive: true, force: true });
  }
  const here = codeIdentity();
  assert.match(here.commit ?? '', /^[0-9a-f]{12}$/, 'this checkout is a git checkout');
  assert.match(codeVersionTag(here), /^\d+\.\d+\.\d+\+[0-9a-f]{12}(-dirty)?\.[0-9a-f]{12}$/);
  const printed = execFileSync(process.execPath, [CLI, '--version'], { encoding: 'utf8' }).trim();
  assert.equal(printed, codeVersionText(here));
  assert.match(printed, /^dg-upgrade \d+\.\d+\.\d+ \(commit [0-9a-f]{12}(-dirty)?, code [0-9a-f]{12}\)$/);
  assert.deepEqual(JSON.parse(execFileSync(process.execPath, [CLI, '--version', '--json'], { encoding: 'utf8' })), here);
});
