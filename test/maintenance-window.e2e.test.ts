import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { createRunningDeployment, editProfile, getJson, waitForStatus, type E2eDeployment } from './support/e2e.js';
import { startTestTemporal, type TestTemporal } from './support/temporal.js';
import { Worker } from '@temporalio/worker';
import { lockWorkflowId } from '../src/domain/lock.js';
import { loadWorkflowCode } from '../src/worker/workflowCode.js';
import { WEEKDAYS, wallTime, localToInstant } from '../src/domain/maintenanceWindow.js';

// Issue 22, maintenance windows: the run does everything that leaves the live install alone at
// once, takes the approval, then waits durably for the window before it stops the app. A prober
// reads /api/healthz every 50 ms: no probe may fail before the window opens.

let temporal: TestTemporal;
const deployments: E2eDeployment[] = [];

/** A deployment of its own per test, disposed at its end: workers of all deployments share the task queue dg-upgrade-local. */
async function withDeployment(label: string, body: (d: E2eDeployment) => Promise<void>): Promise<void> {
  const d = await createRunningDeployment(temporal, label);
  deployments.push(d);
  try {
    await body(d);
  } finally {
    await d.dispose();
    deployments.splice(deployments.indexOf(d), 1);
  }
}

before(async () => {
  temporal = await startTestTemporal();
});

after(async () => {
  for (const d of deployments) await d.dispose();
  await temporal?.dispose();
});

interface Probe {
  at: number;
  ok: boolean;
  version?: string;
}

/** /api/healthz every 50 ms, each answer (or failure) with its time. */
function startProber(port: number) {
  const probes: Probe[] = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const at = Date.now();
      try {
        const res = await fetch(`http://127.0.0.1:${port}/api/healthz`, { signal: AbortSignal.timeout(1000) });
        const body = (await res.json().catch(() => ({}))) as { version?: string };
        probes.push({ at, ok: res.status === 200, version: body.version });
      } catch {
        probes.push({ at, ok: false });
      }
      await new Promise((r) => setTimeout(r, Math.max(0, 50 - (Date.now() - at))));
    }
  })();
  return {
    probes,
    async stop() {
      stopped = true;
      await loop;
      return probes;
    },
  };
}

/** "2026-12-01T23:00:45+01:00": the instant in a fixed offset, as an operator in Berlin's winter would type it. */
function isoWithOffset(instant: number, offsetMinutes: number): string {
  const local = new Date(instant + offsetMinutes * 60_000).toISOString().slice(0, 19);
  const sign = offsetMinutes < 0 ? '-' : '+';
  const abs = Math.abs(offsetMinutes);
  return `${local}${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
}

async function withClient<T>(fn: (client: Client) => Promise<T>): Promise<T> {
  const connection = await Connection.connect({ address: temporal.address });
  try {
    return await fn(new Client({ connection, namespace: temporal.namespace }));
  } finally {
    await connection.close();
  }
}

/** The run's "current details" as the Temporal UI shows them. */
async function uiDetails(d: E2eDeployment): Promise<string> {
  return withClient(async (client) => {
    const meta = await client.workflow.getHandle(lockWorkflowId(d.name)).query<{ currentDetails?: string }>('__temporal_workflow_metadata');
    return meta.currentDetails ?? '';
  });
}

/** The run's search attribute DgPhase, as the server holds it (describe, not the visibility list, which may lag). */
async function searchAttributePhase(d: E2eDeployment): Promise<unknown> {
  return withClient(async (client) => (await client.workflow.getHandle(lockWorkflowId(d.name)).describe()).searchAttributes?.DgPhase?.[0]);
}

function stepStart(status: any, name: string): number {
  const step = status.steps.find((s: any) => s.name === name);
  assert.ok(step?.startedAt, `step ${name} started: ${JSON.stringify(status.steps)}`);
  return Date.parse(step.startedAt);
}

/** No probe failed before `instant`, and the app served the whole time before it. */
function assertServedUntil(probes: Probe[], instant: number, what: string): void {
  const before = probes.filter((p) => p.at < instant);
  assert.ok(before.length > 100, `probes before ${what}: ${before.length}`);
  const failed = before.filter((p) => !p.ok);
  assert.deepEqual(failed.map((p) => new Date(p.at).toISOString()), [], `no failed probe before ${what} (${new Date(instant).toISOString()})`);
}

test('an upgrade approved before its --not-before window waits for it: the app stops only in the window, then the upgrade completes', () =>
  withDeployment('window-notbefore', async (d) => {
    editProfile(d, (p) => (p.maintenance = { predictedDowntime: '2m' }));
    const prober = startProber(d.port);
    // Opens about 45 s after the start: preflight, plan and approval take some of them.
    const windowStart = Math.ceil((Date.now() + 45_000) / 1000) * 1000;
    const notBefore = isoWithOffset(windowStart, 60);
    const started = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--not-before', notBefore, '--window-length', '10m', '--yes', '--json']);
    assert.equal(started.exitCode, 0, started.stderr);
    const approvedAt = Date.now();
    const startedJson = JSON.parse(started.stdout);
    assert.deepEqual(startedJson.status.plan.window, {
      kind: 'one-off',
      start: new Date(windowStart).toISOString(),
      end: new Date(windowStart + 600_000).toISOString(),
      timeZone: '+01:00',
      predictedDowntimeMs: 120_000,
      predictedDowntimeFrom: 'profile',
      whenTooShort: 'next-window',
    }, 'the plan (and so its hash) names the window');
    assert.ok(windowStart - approvedAt >= 15_000, `approved ${(windowStart - approvedAt) / 1000} s before the window`);

    const waiting = await waitForStatus(d, (s) => s.phase === 'waiting-for-window', 'the wait for the window', 60_000);
    assert.ok(Date.now() < windowStart, 'it waits before the window opens');
    assert.deepEqual(waiting.window, { start: new Date(windowStart).toISOString(), end: new Date(windowStart + 600_000).toISOString(), timeZone: '+01:00' });
    assert.match(waiting.summary, /waiting for window \w{3} \d{4}-\d\d-\d\d \d\d:\d\d\.\.\d\d:\d\d \(\+01:00\) to stop v0\.1\.0/);
    const build = waiting.steps.find((s: any) => s.name === 'build');
    assert.equal(build.state, 'succeeded', 'the releases layout built the target before the wait');
    assert.equal(waiting.steps.find((s: any) => s.name === 'window').state, 'running');
    assert.equal(waiting.steps.find((s: any) => s.name === 'stopOld').state, 'pending');
    const text = await d.cli(['status', d.name]);
    assert.match(text.stdout, /phase: waiting-for-window/);
    assert.match(text.stdout, /window: waiting for window .*\(\+01:00\)/);
    assert.match(await uiDetails(d), /\*\*maintenance window:\*\* waiting for window .*\(\+01:00\)/);
    assert.equal(await searchAttributePhase(d), 'waiting-for-window', 'search attribute DgPhase');

    const done = await waitForStatus(d, (s) => s.outcome !== undefined, 'the upgrade to end', 300_000);
    const probes = await prober.stop();
    assert.equal(done.outcome, 'succeeded', done.summary);
    assert.ok(stepStart(done, 'stopOld') >= windowStart, `stopOld started ${done.steps.find((s: any) => s.name === 'stopOld').startedAt}, the window at ${new Date(windowStart).toISOString()}`);
    assertServedUntil(probes, windowStart, 'the window');
    assert.equal(probes.at(-1)?.version, '0.2.0', 'the new version serves');
    assert.ok(probes.some((p) => p.at >= windowStart && !p.ok), 'the app was stopped (in the window)');
  }));

test('a window too short for the predicted downtime: the run passes over it, says why, and a cancel changes nothing; with whenTooShort "end" it ends at once; bad window input starts nothing', () =>
  withDeployment('window-short', async (d) => {
    // Bad input, checked by the CLI before anything starts (no windows in the profile yet).
    const none = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--window', 'next', '--yes']);
    assert.equal(none.exitCode, 2, none.stderr);
    assert.match(none.stderr, /--window next: deployment "[^"]+" has no maintenance windows in its profile \(maintenance\.windows\); nothing was started/);
    const past = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--not-before', '2020-01-01T22:00:00+01:00', '--yes']);
    assert.equal(past.exitCode, 2, past.stderr);
    assert.match(past.stderr, /--not-before 2020-01-01T22:00:00\+01:00 is in the past/);
    const noOffset = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--not-before', '2030-01-01T22:00:00', '--yes']);
    assert.equal(noOffset.exitCode, 2);
    assert.match(noOffset.stderr, /is not an ISO-8601 time with an offset/);
    assert.equal((await d.cli(['status', d.name])).exitCode, 6, 'no run was started');

    // A 1-minute window in Berlin one to two minutes from now (after the plan and the approval), and a 2-hour one three days later.
    const zone = 'Europe/Berlin';
    const soon = wallTime(Date.now() + 120_000, zone);
    const shortStart = localToInstant(soon.year, soon.month, soon.day, soon.hour, soon.minute, zone);
    const hhmm = (i: number) => { const w = wallTime(i, zone); return `${String(w.hour).padStart(2, '0')}:${String(w.minute).padStart(2, '0')}`; };
    const dayOf = (i: number) => { const w = wallTime(i, zone); return WEEKDAYS[new Date(Date.UTC(w.year, w.month - 1, w.day)).getUTCDay()]!; };
    const shortWindow = { days: [dayOf(shortStart)], start: hhmm(shortStart), end: hhmm(shortStart + 60_000), timeZone: zone };
    const later = Date.now() + 3 * 86_400_000;
    const longWindow = { days: [dayOf(later)], start: '03:00', end: '05:00', timeZone: zone };
    const restore = editProfile(d, (p) => (p.maintenance = { windows: [shortWindow, longWindow], predictedDowntime: '10m', whenTooShort: 'next-window' }));
    const prober = startProber(d.port);

    // Started as from the Temporal UI: the workflow input {"window": "next"}.
    await withClient((client) =>
      client.workflow.start('upgrade', { taskQueue: 'dg-upgrade-local', workflowId: lockWorkflowId(d.name), args: [{ deployment: d.name, targetRef: 'v0.2.0', window: 'next', requestedBy: 'temporal-ui' }] }),
    );
    const planned = await waitForStatus(d, (s) => s.phase === 'awaiting-approval', 'the plan', 120_000);
    assert.equal(planned.plan.window.kind, 'profile');
    assert.deepEqual(planned.plan.window.windows, [shortWindow, longWindow]);
    assert.match(planned.plan.steps.join('\n'), /wait for the maintenance window .*predicted downtime 10m fits in what is left of it, else wait for the next window/);
    const approved = await d.cli(['approve', d.name, '--plan-hash', planned.planHash]);
    assert.equal(approved.exitCode, 0, approved.stderr);

    const waiting = await waitForStatus(d, (s) => s.phase === 'waiting-for-window', 'the wait', 60_000);
    assert.match(waiting.summary, /window \w{3} \d{4}-\d\d-\d\d \d\d:\d\d\.\.\d\d:\d\d \(Europe\/Berlin\) (is 1m long|has \d+s left), the predicted downtime is 10m: waiting for window .* \(Europe\/Berlin\) instead to stop v0\.1\.0/);
    assert.equal(wallTime(Date.parse(waiting.window.start), zone).hour, 3, 'it waits for the 2-hour window');
    assert.match(waiting.window.note, /the predicted downtime is 10m/);
    assert.equal(await searchAttributePhase(d), 'waiting-for-window', 'search attribute DgPhase');

    // Through the short window: the app is never stopped.
    const shortEnd = shortStart + 60_000;
    while (Date.now() < shortEnd + 3000) await new Promise((r) => setTimeout(r, 500));
    const still = await waitForStatus(d, () => true, 'status');
    assert.equal(still.phase, 'waiting-for-window');
    assert.equal(still.steps.find((s: any) => s.name === 'stopOld').state, 'pending');

    const cancelled = await d.cli(['cancel', d.name]);
    assert.equal(cancelled.exitCode, 0, cancelled.stderr);
    const ended = await waitForStatus(d, (s) => s.outcome !== undefined, 'the cancel', 60_000);
    assert.equal(ended.outcome, 'aborted');
    assert.match(ended.summary, /cancelled at window; nothing changed/);
    const health = await getJson(`http://127.0.0.1:${d.port}/api/healthz`);
    assert.equal(health.body.version, '0.1.0', 'the old version still serves');

    // whenTooShort "end": the run ends when it reaches the window, saying why, nothing changed.
    restore();
    editProfile(d, (p) => (p.maintenance = { windows: [{ ...shortWindow, days: [...WEEKDAYS] }], predictedDowntime: '10m', whenTooShort: 'end' }));
    const endRun = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--window', 'next', '--yes', '--follow']);
    const probes = await prober.stop();
    assert.equal(endRun.exitCode, 3, `${endRun.stdout}\n${endRun.stderr}`);
    assert.match(endRun.stdout, /phase: aborted/);
    assert.match(endRun.stdout, /not started: window .* \(Europe\/Berlin\) (is 1m long|has \d+s left), the predicted downtime is 10m \(maintenance\.whenTooShort "end"\); v0\.1\.0 still serves, nothing changed/);
    const final = await waitForStatus(d, () => true, 'status');
    assert.equal(final.steps.find((s: any) => s.name === 'stopOld').state, 'skipped');
    assert.deepEqual(probes.filter((p) => !p.ok).map((p) => new Date(p.at).toISOString()), [], 'the app was never stopped');
    assert.ok(probes.every((p) => p.version === '0.1.0'));
  }));

test('a worker and a Temporal server restarted while the run waits lose nothing: the app stops only in the window, and the upgrade completes', () =>
  withDeployment('window-restart', async (d) => {
    editProfile(d, (p) => (p.maintenance = { predictedDowntime: '1m' }));
    const prober = startProber(d.port);
    const windowStart = Math.ceil((Date.now() + 90_000) / 1000) * 1000;
    const windowFlags = ['--not-before', new Date(windowStart).toISOString(), '--window-length', '15m'];
    // `plan` with the same window shows the plan the upgrade will wait on: one hash, another without the window.
    const plainPlan = await d.cli(['plan', '-d', d.name, '--to', 'v0.2.0', '--json']);
    const windowPlan = await d.cli(['plan', '-d', d.name, '--to', 'v0.2.0', ...windowFlags, '--json']);
    assert.equal(windowPlan.exitCode, 0, windowPlan.stderr);
    const planned = JSON.parse(windowPlan.stdout);
    assert.notEqual(planned.planHash, JSON.parse(plainPlan.stdout).planHash, 'the hash covers the window');
    const started = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', ...windowFlags, '--yes', '--json']);
    assert.equal(started.exitCode, 0, started.stderr);
    assert.equal(JSON.parse(started.stdout).status.planHash, planned.planHash, 'plan and upgrade agree on the hash of the windowed plan');
    await waitForStatus(d, (s) => s.phase === 'waiting-for-window', 'the wait', 60_000);
    assert.ok(Date.now() < windowStart - 10_000, 'time left to restart before the window');

    await d.worker!.kill('SIGKILL');
    await temporal.restart();
    await new Promise((r) => setTimeout(r, 3000));
    await d.startWorker();
    const after = await waitForStatus(d, () => true, 'status after the restarts', 60_000);
    assert.ok(after.phase === 'waiting-for-window' || Date.now() >= windowStart, `still waiting: ${after.phase}`);

    const done = await waitForStatus(d, (s) => s.outcome !== undefined, 'the upgrade to end', 300_000);
    const probes = await prober.stop();
    assert.equal(done.outcome, 'succeeded', done.summary);
    assert.ok(stepStart(done, 'stopOld') >= windowStart, 'stopOld started in the window');
    assertServedUntil(probes, windowStart, 'the window');
    assert.equal(probes.at(-1)?.version, '0.2.0');

    // The wait is one durable timer under the patch, and the run (Intl's zone arithmetic included)
    // replays offline on the current workflow code.
    const history = await withClient((client) => client.workflow.getHandle(lockWorkflowId(d.name)).fetchHistory());
    const patches = (history.events ?? [])
      .filter((e) => e.markerRecordedEventAttributes?.markerName === 'core_patch')
      .map((e) => Object.values(e.markerRecordedEventAttributes!.details ?? {}).flatMap((p) => p.payloads ?? []).map((p) => Buffer.from(p.data ?? []).toString()).join(' '));
    assert.ok(patches.some((p) => p.includes('maintenance-windows')), `the patch marker is recorded: ${patches.join(', ')}`);
    assert.ok((history.events ?? []).some((e) => e.timerStartedEventAttributes), 'a workflow timer for the window');
    const { code } = await loadWorkflowCode({});
    await Worker.runReplayHistory({ workflowBundle: { code }, replayName: 'window-replay' }, history, lockWorkflowId(d.name));
  }));
