import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import pg from 'pg';
import { createE2eDeployment, editProfile, getJson, waitCaughtUp, type E2eDeployment } from './support/e2e.js';
import { assertRestoredToBackup } from './support/liveRun.js';
import { startTestTemporal, type TestTemporal } from './support/temporal.js';

// A rollback restored from the pg_dump file verifies the restore inside its window: row counts
// and the event-log digest, a read of the whole log. At real sizes that takes longer than any
// fixed heartbeat timeout; here each of the digest's chunks is made 2.5 s slower (failpoint),
// so the verification runs well past the 5 s heartbeat timeout (and past the 20 s one it had
// before 0.3.0). It must finish on its first attempt, heartbeating its progress.

const CHUNKS = 10;
const DELAY_MS = 2500;

let temporal: TestTemporal;
let d: E2eDeployment;

before(async () => {
  temporal = await startTestTemporal();
  d = await createE2eDeployment(temporal, 'slowverify');
  await d.bootstrap();
  await waitCaughtUp(d);
  const client = new pg.Client({ connectionString: d.databaseUrl });
  await client.connect();
  const rows = Number((await client.query('SELECT count(*) AS n FROM dg_event_log')).rows[0].n);
  await client.end();
  assert.ok(rows >= CHUNKS, `the sample install has ${rows} events`);
  await d.startWorker({
    DG_UPGRADE_FAILPOINTS: `verify.digestChunk:delay=${DELAY_MS}`,
    DG_UPGRADE_DIGEST_CHUNK_ROWS: String(Math.ceil(rows / CHUNKS)),
  });
  editProfile(d, (p) => (p.backups.method = 'dump-while-stopped'));
});

after(async () => {
  await d?.dispose();
  await temporal?.dispose();
});

interface ActivityRun {
  attempts: number[];
  startedAt?: Date;
  completedAt?: Date;
  progress: string[];
}

async function verifyActivity(workflowId: string): Promise<ActivityRun> {
  const connection = await Connection.connect({ address: temporal.address });
  try {
    const client = new Client({ connection, namespace: temporal.namespace });
    const history = await client.workflow.getHandle(workflowId).fetchHistory();
    const run: ActivityRun = { attempts: [], progress: [] };
    let scheduledId: string | undefined;
    for (const e of history.events ?? []) {
      if (e.activityTaskScheduledEventAttributes?.activityType?.name === 'verifyRestored') scheduledId = String(e.eventId);
      if (scheduledId && String(e.activityTaskStartedEventAttributes?.scheduledEventId ?? '') === scheduledId) {
        run.attempts.push(Number(e.activityTaskStartedEventAttributes!.attempt));
        run.startedAt = new Date(Number(e.eventTime!.seconds) * 1000 + Math.floor((e.eventTime!.nanos ?? 0) / 1e6));
      }
      if (scheduledId && String(e.activityTaskCompletedEventAttributes?.scheduledEventId ?? '') === scheduledId) {
        run.completedAt = new Date(Number(e.eventTime!.seconds) * 1000 + Math.floor((e.eventTime!.nanos ?? 0) / 1e6));
      }
      if (scheduledId && e.activityTaskTimedOutEventAttributes) run.attempts.push(-1);
    }
    return run;
  } finally {
    await connection.close();
  }
}

test('a restore verification slower than the heartbeat timeout completes on its first attempt', async () => {
  // v0.2.1's migration fails half-way: the upgrade rolls back, restoring the pg_dump file.
  const started = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.1', '--yes', '--json']);
  assert.equal(started.exitCode, 0, started.stderr);
  // While it verifies, `status` shows how far the digest is (the rollback child's heartbeats).
  let seen: any;
  for (const deadline = Date.now() + 240_000; !seen && Date.now() < deadline; ) {
    const s = await d.statusJson();
    const progress = s.exitCode === 0 ? (JSON.parse(s.stdout).progress ?? []) : [];
    seen = progress.find((p: any) => p.activity === 'verifyRestored' && /event-log digest: [\d,]+ (of ~[\d,]+ )?rows/.test(p.detail ?? ''));
    if (!seen) await new Promise((r) => setTimeout(r, 250));
  }
  assert.ok(seen, 'status --json listed the verification\'s progress');
  const text = await d.cli(['status', d.name]);
  assert.match(text.stdout, /in progress: verifyRestored: event-log digest: [\d,]+/, text.stdout);
  const up = await d.cli(['status', d.name, '--follow', '--json']);
  assert.equal(up.exitCode, 1, `a rolled-back upgrade exits 1: ${up.stdout.slice(-1500)} ${up.stderr.slice(-500)}`);
  const status = JSON.parse(up.stdout).status;
  assert.equal(status.outcome, 'rolled-back', JSON.stringify(status).slice(0, 1500));
  const rollbackId = status.rollbackWorkflowId as string;
  assert.ok(rollbackId, 'the rollback ran as a child workflow');

  const verify = await verifyActivity(rollbackId);
  assert.deepEqual(verify.attempts, [1], `verifyRestored ran once, on its first attempt: ${JSON.stringify(verify.attempts)}`);
  assert.ok(verify.startedAt && verify.completedAt, 'verifyRestored completed');
  const tookMs = verify.completedAt!.getTime() - verify.startedAt!.getTime();
  assert.ok(tookMs >= CHUNKS * DELAY_MS * 0.9, `the verification took ${tookMs} ms: the slow digest ran (${CHUNKS} chunks × ${DELAY_MS} ms)`);
  assert.ok(tookMs > 20_000, `longer than the 20 s heartbeat timeout verifyRestored had before: ${tookMs} ms`);

  const rbStep = (status.rollback?.steps ?? status.steps ?? []).find((s: any) => s.name === 'verifyRestore');
  if (rbStep) assert.equal(rbStep.state, 'succeeded');
  await assertRestoredToBackup(d, status);
  const health = await getJson(`http://127.0.0.1:${d.port}/api/healthz`);
  assert.equal(health.status, 200);
  assert.equal(health.body.version, '0.1.0', 'v0.1.0 serves again');
});
