import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import path from 'node:path';
import {
  createE2eDeployment,
  databaseFacts,
  editProfile,
  getJson,
  listenersOnPort,
  processesWithEnv,
  waitCaughtUp,
  type E2eDeployment,
} from './e2e.js';
import type { TestTemporal } from './temporal.js';
import { assertRestoredToBackup, followAcceptingDataLoss, startWarmTraffic } from './liveRun.js';
import { databaseUrlFor } from './postgres.js';
import { assertConfirmedWritesAccountedFor, assertGateCountMatchesDiscarded, type Traffic } from './traffic.js';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';

export interface CrashCase {
  /** Where the worker dies, in words. */
  name: string;
  target: 'v0.2.0' | 'v0.3.0';
  /** DG_UPGRADE_FAILPOINTS value for the first worker. */
  failpoint: string;
  /** For ":mark" failpoints: how long after the marker to kill (the step is mid-way then). */
  killAfterMs?: number;
  /** Profile changes that make the step long enough to be killed in the middle. */
  profile?: (deployment: any) => void;
  /** The deployment model (default source). */
  model?: 'source' | 'release';
}

export interface CrashOutcome {
  /** From the SIGKILL to the new worker starting the interrupted step again (its next attempt). */
  resumeMs: number;
  /** From the SIGKILL to the first step state change seen under the new worker. */
  recoveryMs: number;
  finalStatus: any;
  rollbackStatus?: any;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits for a failpoint's marker file. */
export async function waitForFile(file: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(file)) {
    if (Date.now() > deadline) throw new Error(`failpoint ${path.basename(file)} not reached in ${timeoutMs} ms`);
    await sleep(50);
  }
}

async function statusOf(d: E2eDeployment): Promise<any> {
  const r = await d.statusJson();
  return r.exitCode === 0 ? JSON.parse(r.stdout) : undefined;
}

type PendingActivity = NonNullable<Awaited<ReturnType<WorkflowHandle['describe']>>['raw']['pendingActivities']>[number];

/** The pending activities of the deployment's running upgrade and rollback child, with their workflow ID. */
async function pendingActivities(temporal: TestTemporal, deployment: string): Promise<Array<{ workflowId: string; activity: PendingActivity }>> {
  const connection = await Connection.connect({ address: temporal.address });
  try {
    const client = new Client({ connection });
    const out: Array<{ workflowId: string; activity: PendingActivity }> = [];
    for await (const wf of client.workflow.list({ query: `WorkflowId STARTS_WITH "dg-upgrade-${deployment}" AND ExecutionStatus = "Running"` })) {
      const desc = await client.workflow.getHandle(wf.workflowId, wf.runId).describe();
      for (const activity of desc.raw.pendingActivities ?? []) out.push({ workflowId: wf.workflowId, activity });
    }
    return out;
  } finally {
    await connection.close();
  }
}

/** Activities pending in the deployment's upgrade and its rollback child, with their attempt and last start. */
async function pendingActivityAttempts(temporal: TestTemporal, deployment: string): Promise<Array<{ id: string; attempt: number; startedAt: number }>> {
  return (await pendingActivities(temporal, deployment)).map(({ workflowId, activity: a }) => ({
    id: `${workflowId}/${a.activityId}`,
    attempt: a.attempt ?? 0,
    startedAt: a.lastStartedTime ? Number(a.lastStartedTime.seconds ?? 0) * 1000 + Math.floor((a.lastStartedTime.nanos ?? 0) / 1e6) : 0,
  }));
}

/** What a run that stopped moving is doing: its phase, pending activities (attempt, state, last failure) and the database's sessions. */
async function stuckState(temporal: TestTemporal, d: E2eDeployment, status: any): Promise<string> {
  const parts = [`phase ${status?.phase}: ${status?.summary ?? ''}`];
  for (const { workflowId, activity: a } of await pendingActivities(temporal, d.name)) {
    parts.push(`${workflowId} ${a.activityType?.name} attempt ${a.attempt} state ${a.state} last failure: ${a.lastFailure?.message ?? 'none'}`);
  }
  try {
    parts.push(execFileSync('psql', ['-h', '127.0.0.1', '-U', 'postgres', '-Atc', `SELECT datname, application_name, state, wait_event_type, wait_event, left(query, 80) FROM pg_stat_activity WHERE datname LIKE '${d.db.name}%' OR query ILIKE '%${d.db.name}%'`], { encoding: 'utf8' }));
  } catch (err) {
    parts.push(`pg_stat_activity unreadable: ${(err as Error).message}`);
  }
  return parts.join('\n');
}

// Progress is any change of phase, outcome or step state: a run that finished its rollback child
// may show the same steps as at the crash (the child's work is behind one step) but not the same phase.
const fingerprint = (s: any) => JSON.stringify([s?.phase, s?.outcome, s?.steps?.map((st: any) => [st.name, st.state]) ?? []]);

/**
 * Runs an upgrade, SIGKILLs its worker at `failpoint`, starts a new worker, and checks the run
 * reaches the right end state: upgraded for a good target, rolled back for a bad one, with one
 * backup, no orphan app or command processes and one runtime on the port.
 */
export async function runCrashCase(temporal: TestTemporal, label: string, c: CrashCase): Promise<CrashOutcome> {
  const d = await createE2eDeployment(temporal, label, { model: c.model });
  let traffic: Traffic | undefined;
  try {
    await d.bootstrap();
    await waitCaughtUp(d);
    // The app takes 50 writes/s throughout: crashes and recoveries happen on a busy install.
    traffic = await startWarmTraffic(d);
    const before = await databaseFacts(d.databaseUrl);
    if (c.profile) editProfile(d, c.profile);
    const failDir = mkdtempSync(path.join(d.dir, 'failpoints-')); // removed with the deployment's dir
    const first = await d.startWorker({ DG_UPGRADE_FAILPOINTS: c.failpoint, DG_UPGRADE_FAILPOINT_DIR: failDir });
    const started = await d.cli(['upgrade', '-d', d.name, '--to', c.target, '--yes']);
    assert.equal(started.exitCode, 0, started.stderr);

    // A rollback stops at its data-loss gate (the new version took writes) before its own failpoints: accept it meanwhile.
    const marker = path.join(failDir, c.failpoint.replace(/[#:].*$/, ''));
    const gate = followAcceptingDataLoss(d, { until: () => existsSync(marker), timeoutMs: 120_000 }).catch((err: Error) => err);
    await waitForFile(marker, 120_000);
    // Read before the wait of a ":mark" point: on a loaded host these reads take seconds, and the
    // step the kill is meant for must still be running when it comes.
    const snapshot = fingerprint(await statusOf(d));
    const interrupted = await pendingActivityAttempts(temporal, d.name);
    if (c.killAfterMs) await sleep(c.killAfterMs);
    await first.kill('SIGKILL');
    const killedAt = Date.now();
    // The new worker first: a status query the follower sent just before the kill waits for a
    // worker (about 30 s on the dead one's sticky queue), which would count as recovery time.
    await d.startWorker();
    const gateError = await gate;
    if (gateError instanceof Error) throw gateError;
    let recoveryMs = -1;
    let resumeMs = -1;
    // The resume watcher reads the server's start time of the interrupted step's next attempt.
    const watchResume = (async () => {
      while (resumeMs < 0 && recoveryMs < 0) {
        const attempts = await pendingActivityAttempts(temporal, d.name);
        const resumed = attempts.find((a) => a.startedAt > killedAt && a.attempt > (interrupted.find((i) => i.id === a.id)?.attempt ?? 0));
        if (resumed) resumeMs = resumed.startedAt - killedAt;
        else await sleep(250);
      }
    })();
    while (recoveryMs < 0) {
      const s = await statusOf(d);
      if (fingerprint(s) !== snapshot) recoveryMs = Date.now() - killedAt;
      else if (Date.now() - killedAt > 120_000) throw new Error(`no progress within 120 s after the crash at ${c.failpoint}: ${await stuckState(temporal, d, s)}`);
      else await sleep(250);
    }
    await watchResume;
    if (resumeMs < 0) resumeMs = recoveryMs;

    const followed = await followAcceptingDataLoss(d);
    const status = followed.status;
    let rollbackStatus: any;
    const asides: Record<string, string> = {};
    if (c.target === 'v0.2.0') {
      assert.equal(followed.exitCode, 0, `upgrade succeeds after the crash: ${JSON.stringify(status).slice(0, 1500)}`);
      assert.equal(status.outcome, 'succeeded');
      assert.equal((await getJson(`http://127.0.0.1:${d.port}/api/healthz`)).body.version, '0.2.0');
      const after = await databaseFacts(d.databaseUrl);
      assert.equal(after.versions.length, before.versions.length + 1, 'the migration applied once');
    } else {
      assert.equal(followed.exitCode, 1, `the upgrade ends rolled back: ${JSON.stringify(status).slice(0, 1500)}`);
      assert.equal(status.outcome, 'rolled-back', status.summary);
      const aside = databaseUrlFor(status.rollback.asideDatabase);
      asides[status.rollback.asideDatabase] = aside;
      await assertRestoredToBackup(d, status, aside);
      await assertGateCountMatchesDiscarded(status, d.databaseUrl, aside, traffic.snapshot());
      const rb = await d.cli(['status', '--workflow-id', status.rollbackWorkflowId, '--json']);
      rollbackStatus = JSON.parse(rb.stdout);
    }
    const written = await traffic.stop();
    traffic = undefined;
    const accounted = await assertConfirmedWritesAccountedFor(written, d.databaseUrl, asides);
    if (c.target === 'v0.2.0') assert.equal(accounted.setAside, 0, 'no confirmed write set aside');

    const backups = readdirSync(d.profile.deployments[d.name]!.backups.dir);
    assert.deepEqual(backups.filter((f) => f.endsWith('.dump')).length, 1, `one backup, not a duplicate: ${backups.join(', ')}`);
    assert.deepEqual(backups.filter((f) => f.endsWith('.manifest.json')).length, 1);
    assert.deepEqual(backups.filter((f) => f.endsWith('.partial') || f.endsWith('.tmp')), [], 'no half-written files left');
    assert.equal(processesWithEnv('DG_UPGRADE_RUNTIME', d.name).length, 1, 'exactly one app process: no orphan runtime');
    assert.equal(listenersOnPort(d.port), 1, 'one runtime on the port');
    return { resumeMs, recoveryMs, finalStatus: status, rollbackStatus };
  } finally {
    await traffic?.stop();
    await d.dispose();
  }
}

export const UPGRADE_CRASHES: CrashCase[] = [
  { name: 'during build', target: 'v0.2.0', failpoint: 'build.compile:mark', killAfterMs: 1000, profile: (p) => (p.toolchain.env.DG_FIXTURE_COMPILE_MS = '4000') },
  { name: 'right after stop', target: 'v0.2.0', failpoint: 'stopRuntime.afterStop' },
  // The dump while stopped (backups.method dump-while-stopped); the frozen-copy steps: test/crash-frozen-copy.e2e.test.ts.
  { name: 'during backup', target: 'v0.2.0', failpoint: 'backup.afterDump', profile: (p) => (p.backups.method = 'dump-while-stopped') },
  { name: 'right after backup', target: 'v0.2.0', failpoint: 'backup.afterManifest', profile: (p) => (p.backups.method = 'dump-while-stopped') },
  { name: 'during migrate', target: 'v0.2.0', failpoint: 'migrate.start:mark', killAfterMs: 1500, profile: (p) => (p.toolchain.env.DG_FIXTURE_MIGRATE_MS = '4000') },
  { name: 'during start', target: 'v0.2.0', failpoint: 'startRuntime.afterSpawn' },
  { name: 'during smoke', target: 'v0.2.0', failpoint: 'smoke.afterHealthz' },
];

export const ROLLBACK_CRASHES: CrashCase[] = [
  { name: 'during restore, before the swap', target: 'v0.3.0', failpoint: 'restore.beforeSwap' },
  { name: 'during the swap, between the renames', target: 'v0.3.0', failpoint: 'restore.betweenRenames' },
  { name: "during the old runtime's start", target: 'v0.3.0', failpoint: 'startRuntime.afterSpawn#2' },
  { name: "during the rollback's smoke checks", target: 'v0.3.0', failpoint: 'smoke.afterHealthz#2' },
];

/** The steps that differ in the release model: building the release, migrating through it, starting it. */
export const RELEASE_MODEL_CRASHES: CrashCase[] = [
  { ...UPGRADE_CRASHES[0]!, name: 'during the release build', model: 'release' },
  { ...UPGRADE_CRASHES[4]!, name: 'during the migration through the release', model: 'release' },
  { ...UPGRADE_CRASHES[5]!, name: "during the release's start", model: 'release' },
];
