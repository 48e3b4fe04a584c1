import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { NOTIFICATION_EVENTS } from '../src/domain/notification.js';
import { assertNoSecrets, createRunningDeployment, editProfile, historyText, type E2eDeployment } from './support/e2e.js';
import { followAcceptingDataLoss } from './support/liveRun.js';
import { freePort } from './support/ports.js';
import { findSecrets } from './support/secrets.js';
import { startTestTemporal, type TestTemporal } from './support/temporal.js';

// The profile's webhook gets, in order and once each, the events of an approval-gated upgrade
// and of a failing upgrade with its rollback. With the receiver down, the same runs end the same
// way, and `status` lists the deliveries that failed. No body holds the URL or a secret.

interface Delivery {
  path: string;
  headers: http.IncomingHttpHeaders;
  raw: string;
  body: any;
}

interface Receiver {
  port: number;
  received: Delivery[];
  close(): Promise<void>;
}

async function startReceiver(): Promise<Receiver> {
  const received: Delivery[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      received.push({ path: req.url ?? '', headers: req.headers, raw, body: JSON.parse(raw) });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return { port, received, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/** The webhook URL, with a token in its path as chat webhooks have, given to the profile as a file reference. */
function configureWebhook(d: E2eDeployment, port: number): { url: string; token: string } {
  const token = `T0K-${randomBytes(12).toString('hex')}`;
  const url = `http://127.0.0.1:${port}/hooks/${token}`;
  const file = path.join(d.dir, 'secrets', 'ops-chat-webhook');
  writeFileSync(file, `${url}\n`, { mode: 0o600 });
  editProfile(d, (p) => {
    p.notifications = { webhooks: [{ name: 'ops-chat', url: { fromFile: file }, events: [...NOTIFICATION_EVENTS], timeout: '5s' }] };
  });
  return { url, token };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor<T>(what: string, probe: () => T | undefined, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** Upgrade to v0.2.0 without --yes, approve once it waits, follow it to the end. */
async function approvalGatedUpgrade(d: E2eDeployment, receiver?: Receiver) {
  const started = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--json']);
  assert.equal(started.exitCode, 0, started.stderr);
  const { runId, status } = JSON.parse(started.stdout);
  assert.equal(status.phase, 'awaiting-approval');
  // Sent while the run waits, not when it ends.
  if (receiver) await waitFor('the awaiting-approval notification', () => receiver.received.find((r) => r.body.runId === runId && r.body.event === 'awaiting-approval'));
  const approved = await d.cli(['approve', d.name, '--plan-hash', status.planHash, '--comment', 'e2e']);
  assert.equal(approved.exitCode, 0, approved.stderr);
  const followed = await d.cli(['status', d.name, '--follow', '--json']);
  return { runId: runId as string, planHash: status.planHash as string, exitCode: followed.exitCode, status: JSON.parse(followed.stdout).status };
}

/** Upgrade to v0.2.1 (its second migration fails) with --yes: rolled back to v0.2.0 by a child rollback. */
async function failingUpgrade(d: E2eDeployment) {
  const started = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.1', '--yes', '--json']);
  assert.equal(started.exitCode, 0, started.stderr);
  const { runId, workflowId } = JSON.parse(started.stdout);
  const run = await followAcceptingDataLoss(d, { workflowId }).catch((err) => {
    throw new Error(`${(err as Error).message}; last CLI outputs: ${d.cliOutputs.slice(-2).join(' // ').slice(0, 3000)}`);
  });
  return { runId: runId as string, exitCode: run.exitCode, status: run.status };
}

function eventsOf(receiver: Receiver, runId: string): string[] {
  return receiver.received.filter((r) => r.body.runId === runId).map((r) => r.body.event);
}

let temporal: TestTemporal;
before(async () => {
  temporal = await startTestTemporal();
});
after(async () => {
  await temporal?.dispose();
});

/** What the receiver-down runs must end like: filled by the first describe. */
const reference: { approved?: { exitCode: number; outcome: string; phase: string }; failing?: { exitCode: number; outcome: string; phase: string } } = {};

describe('receiver up', () => {
  let d: E2eDeployment;
  let receiver: Receiver;
  let webhook: { url: string; token: string };
  before(async () => {
    d = await createRunningDeployment(temporal, 'notify-up');
    receiver = await startReceiver();
    webhook = configureWebhook(d, receiver.port);
  });
  after(async () => {
    await receiver?.close();
    await d?.dispose();
  });

  let firstBackup: string;

  test('an approval-gated upgrade: awaiting-approval, then succeeded, once each, with a chat-readable text and the run link', async () => {
    const run = await approvalGatedUpgrade(d, receiver);
    firstBackup = run.status.backup.id;
    assert.equal(run.exitCode, 0, JSON.stringify(run.status).slice(0, 1000));
    assert.equal(run.status.outcome, 'succeeded');
    reference.approved = { exitCode: run.exitCode, outcome: run.status.outcome, phase: run.status.phase };
    // The run awaits its notifications before it ends: both are in when it has ended.
    assert.deepEqual(eventsOf(receiver, run.runId), ['awaiting-approval', 'succeeded']);
    assert.deepEqual(run.status.notificationFailures ?? [], []);

    const [waiting, done] = receiver.received.filter((r) => r.body.runId === run.runId);
    assert.equal(waiting!.path, `/hooks/${webhook.token}`);
    assert.equal(waiting!.headers['content-type'], 'application/json');
    for (const r of [waiting!, done!]) {
      assert.equal(r.headers['idempotency-key'], r.body.deliveryId);
      assert.equal(r.headers['x-dg-upgrade-event'], r.body.event);
      assert.equal(r.body.deployment, d.name);
      assert.equal(r.body.operation, 'upgrade');
      assert.equal(r.body.from, 'v0.1.0');
      assert.equal(r.body.to, 'v0.2.0');
      assert.equal(r.body.link, `${temporal.uiUrl}/namespaces/${temporal.namespace}/workflows/dg-upgrade-${d.name}/${run.runId}/history`);
      assert.ok(r.body.text.split('\n').length <= 2, r.body.text);
    }
    assert.notEqual(waiting!.body.deliveryId, done!.body.deliveryId);
    assert.equal(waiting!.body.planHash, run.planHash);
    assert.equal(waiting!.body.phase, 'awaiting-approval');
    assert.equal(
      waiting!.body.text.split('\n')[0],
      `dg-upgrade: ${d.name} upgrade v0.1.0 -> v0.2.0 is waiting for approval of plan ${run.planHash}; approve: dg-upgrade approve ${d.name} --plan-hash ${run.planHash}`,
    );
    assert.equal(done!.body.phase, 'succeeded');
    assert.equal(done!.body.planHash, undefined);
    assert.match(done!.body.text, new RegExp(`^dg-upgrade: ${d.name} upgrade v0\\.1\\.0 -> v0\\.2\\.0 succeeded\\nupgraded v0\\.1\\.0 -> v0\\.2\\.0; all \\d+ smoke checks passed`));
  });

  test('a failing upgrade with its rollback: awaiting-approval, then rolled-back, once each', async () => {
    const before = receiver.received.length;
    const run = await failingUpgrade(d);
    assert.equal(run.exitCode, 1, JSON.stringify(run.status).slice(0, 1000));
    assert.equal(run.status.outcome, 'rolled-back');
    reference.failing = { exitCode: run.exitCode, outcome: run.status.outcome, phase: run.status.phase };
    // The child rollback waited for nobody (no event after the backup): it leaves the ending to its upgrade.
    assert.deepEqual(receiver.received.slice(before).map((r) => `${r.body.workflowId === `dg-upgrade-${d.name}` ? 'upgrade' : r.body.workflowId}:${r.body.event}`), ['upgrade:awaiting-approval', 'upgrade:rolled-back']);
    const rolledBack = receiver.received.at(-1)!.body;
    assert.equal(rolledBack.from, 'v0.2.0');
    assert.equal(rolledBack.to, 'v0.2.1');
    assert.match(rolledBack.text, new RegExp(`^dg-upgrade: ${d.name} upgrade v0\\.2\\.0 -> v0\\.2\\.1 failed and was rolled back\\n.*failed at migrate: .*rolled back to v0\\.2\\.0`));
  });

  test('a standalone rollback to v0.1.0: needs-operator at the data-loss gate, then rolled-back', async () => {
    // One event after the first upgrade's backup: the restore would discard it, so the gate asks.
    const client = new pg.Client({ connectionString: d.databaseUrl });
    await client.connect();
    try {
      await client.query(`INSERT INTO dg_event_log (tenant_id, trace_id, event_type, payload) VALUES ('default', 'trace-late', 'trace.started', '{}')`);
    } finally {
      await client.end();
    }
    const before = receiver.received.length;
    const started = await d.cli(['rollback', '--deployment', d.name, '--backup', firstBackup, '--json']);
    assert.equal(started.exitCode, 0, started.stdout + started.stderr);
    const run = await followAcceptingDataLoss(d, { workflowId: JSON.parse(started.stdout).workflowId });
    assert.equal(run.exitCode, 0, JSON.stringify(run.status).slice(0, 1000));
    assert.equal(run.status.outcome, 'rolled-back');
    assert.equal(run.asked.length, 1);
    const events = receiver.received.slice(before).map((r) => r.body);
    assert.deepEqual(events.map((b) => `${b.operation}:${b.event}`), ['rollback:needs-operator', 'rollback:rolled-back']);
    const n = run.asked[0];
    assert.equal(events[0].eventsAfterBackup, n);
    assert.equal(
      events[0].text.split('\n')[0],
      `dg-upgrade: ${d.name} rollback to v0.1.0 needs an operator: a restore would discard ${n} events written after the backup; accept: dg-upgrade accept-data-loss ${d.name} --events ${n}, or: dg-upgrade abandon ${d.name}`,
    );
    assert.match(events[1].text, new RegExp(`^dg-upgrade: ${d.name} rollback to v0\\.1\\.0 done\\nrolled back to v0\\.1\\.0: backup ${firstBackup} restored`));
  });

  test('once each: no delivery twice; no body holds the webhook URL, its token or a secret of the profile', async () => {
    const ids = receiver.received.map((r) => r.body.deliveryId);
    assert.equal(new Set(ids).size, ids.length, `duplicate deliveries: ${ids.join(', ')}`);
    assert.equal(receiver.received.length, 6);
    for (const r of receiver.received) {
      assert.ok(!r.raw.includes(webhook.url) && !r.raw.includes(webhook.token), `a body holds the webhook URL: ${r.raw}`);
    }
    const secrets = { ...d.secrets, webhookUrl: webhook.url, webhookToken: webhook.token };
    assert.deepEqual(findSecrets(secrets, receiver.received.map((r, i) => ({ source: `body #${i + 1} (${r.body.event})`, text: r.raw }))), []);
    assertNoSecrets({ ...d, secrets }, await historyText(temporal, `dg-upgrade-${d.name}`));
  });
});

describe('receiver down', () => {
  let d: E2eDeployment;
  let webhook: { url: string; token: string };
  before(async () => {
    d = await createRunningDeployment(temporal, 'notify-down');
    // A free port nobody listens on: every delivery is refused.
    webhook = configureWebhook(d, await freePort());
  });
  after(async () => {
    await d?.dispose();
  });

  test('the approval-gated upgrade ends the same way; status lists both failed deliveries by the webhook name', async () => {
    const run = await approvalGatedUpgrade(d);
    assert.deepEqual({ exitCode: run.exitCode, outcome: run.status.outcome, phase: run.status.phase }, reference.approved ?? { exitCode: 0, outcome: 'succeeded', phase: 'succeeded' });
    const failures = run.status.notificationFailures as Array<{ webhook: string; event: string; error: string }>;
    assert.deepEqual(failures.map((f) => `${f.webhook}:${f.event}`), ['ops-chat:awaiting-approval', 'ops-chat:succeeded']);
    for (const f of failures) assert.match(f.error, /^webhook "ops-chat": cannot reach the receiver \(ECONNREFUSED\)$/);

    const text = await d.cli(['status', d.name]);
    assert.equal(text.exitCode, 0, text.stderr);
    assert.match(text.stdout, /! notification not delivered: awaiting-approval to webhook ops-chat: webhook "ops-chat": cannot reach the receiver \(ECONNREFUSED\)/);
    assert.match(text.stdout, /! notification not delivered: succeeded to webhook ops-chat/);
  });

  test('the failing upgrade rolls back the same way; status lists its failed deliveries', async () => {
    const run = await failingUpgrade(d);
    assert.deepEqual({ exitCode: run.exitCode, outcome: run.status.outcome, phase: run.status.phase }, reference.failing ?? { exitCode: 1, outcome: 'rolled-back', phase: 'rolled-back' });
    assert.match(run.status.summary, /failed at migrate: .*rolled back to v0\.2\.0/);
    assert.deepEqual(
      (run.status.notificationFailures as Array<{ webhook: string; event: string }>).map((f) => `${f.webhook}:${f.event}`),
      ['ops-chat:awaiting-approval', 'ops-chat:rolled-back'],
    );
    const text = await d.cli(['status', d.name]);
    assert.match(text.stdout, /! notification not delivered: rolled-back to webhook ops-chat/);
  });

  test('neither the failures nor anything else shows the webhook URL or a secret', async () => {
    for (const out of d.cliOutputs) assert.ok(!out.includes(webhook.token), 'a CLI output shows the webhook token');
    const secrets = { ...d.secrets, webhookUrl: webhook.url, webhookToken: webhook.token };
    assertNoSecrets({ ...d, secrets }, await historyText(temporal, `dg-upgrade-${d.name}`));
  });
});
