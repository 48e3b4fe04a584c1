import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseProfileFile, ProfileError } from '../src/config/profile.js';
import { headline, NOTIFICATION_EVENTS, notificationBody, notificationFacts, terminalEvents } from '../src/domain/notification.js';
import type { OperationStatus, UpgradePlan } from '../src/domain/types.js';

const run = { workflowId: 'dg-upgrade-prod', runId: '0195f0c2-aaaa-7bbb-8ccc-123456789abc', sequence: 1, at: new Date('2025-03-30T20:00:00Z') };

function upgradeStatus(over: Partial<OperationStatus> = {}): OperationStatus {
  return {
    workflowId: 'dg-upgrade-prod',
    operation: 'upgrade',
    deployment: 'prod',
    targetRef: 'v0.2.0',
    phase: 'awaiting-approval',
    steps: [],
    ignoredSignals: [],
    plan: { from: { sha: 'a'.repeat(40), tag: 'v0.1.0', dir: '/srv/r/a' }, to: { ref: 'v0.2.0', sha: 'b'.repeat(40), tag: 'v0.2.0' } } as unknown as UpgradePlan,
    planHash: '3f2a9c0d1e2b4a5c6d7e8f90',
    summary: 'prod: v0.1.0 -> v0.2.0 waiting for approval of plan 3f2a9c0d1e2b4a5c6d7e8f90',
    waitingFor: 'signal "approve" with planHash 3f2a9c0d1e2b4a5c6d7e8f90, or "reject"',
    ...over,
  };
}

test('awaiting-approval: facts, the plan hash, and a chat line with the approve command', () => {
  const facts = notificationFacts(upgradeStatus(), 'awaiting-approval', run);
  assert.deepEqual(facts, {
    deliveryId: 'dg-upgrade-prod/0195f0c2-aaaa-7bbb-8ccc-123456789abc/1-awaiting-approval',
    event: 'awaiting-approval',
    deployment: 'prod',
    operation: 'upgrade',
    workflowId: 'dg-upgrade-prod',
    runId: run.runId,
    from: 'v0.1.0',
    to: 'v0.2.0',
    phase: 'awaiting-approval',
    summary: 'v0.1.0 -> v0.2.0 waiting for approval of plan 3f2a9c0d1e2b4a5c6d7e8f90',
    waitingFor: 'signal "approve" with planHash 3f2a9c0d1e2b4a5c6d7e8f90, or "reject"',
    planHash: '3f2a9c0d1e2b4a5c6d7e8f90',
    at: '2025-03-30T20:00:00.000Z',
  });
  const body = notificationBody(facts, { url: 'https://temporal.example.com/', namespace: 'ops' });
  assert.equal(body.source, 'dg-upgrade');
  assert.equal(body.link, `https://temporal.example.com/namespaces/ops/workflows/dg-upgrade-prod/${run.runId}/history`);
  const lines = body.text.split('\n');
  assert.equal(lines.length, 2, body.text);
  assert.equal(
    lines[0],
    'dg-upgrade: prod upgrade v0.1.0 -> v0.2.0 is waiting for approval of plan 3f2a9c0d1e2b4a5c6d7e8f90; approve: dg-upgrade approve prod --plan-hash 3f2a9c0d1e2b4a5c6d7e8f90',
  );
  assert.match(lines[1]!, /^v0\.1\.0 -> v0\.2\.0 waiting for approval .* https:\/\/temporal\.example\.com\/namespaces\/ops\//);
});

test('without a UI address the link is left out; a long summary is cut to one line', () => {
  const long = upgradeStatus({ phase: 'failed', outcome: 'failed', summary: `prod: ${'x'.repeat(1000)}\nsecond line` });
  const body = notificationBody(notificationFacts(long, 'failed', { ...run, sequence: 4 }));
  assert.equal(body.link, undefined);
  assert.equal('link' in body, false);
  assert.equal(body.planHash, undefined, 'the plan hash only where a run waits on it');
  const [first, second, more] = body.text.split('\n');
  assert.equal(first, 'dg-upgrade: prod upgrade v0.1.0 -> v0.2.0 FAILED (phase failed)');
  assert.ok(second!.length <= 300, `${second!.length}`);
  assert.equal(more, undefined);
  assert.equal(body.deliveryId, `dg-upgrade-prod/${run.runId}/4-failed`);
});

test('every event has a headline; rollbacks and window events read well', () => {
  const rollback = upgradeStatus({ operation: 'rollback', plan: undefined, planHash: undefined, targetRef: 'v0.1.0', phase: 'awaiting-data-loss-approval', waitingFor: 'signal "acceptDataLoss" with {"by": "<you>", "events": 3}, or "abandon"' });
  for (const event of NOTIFICATION_EVENTS) {
    const line = headline(notificationFacts(rollback, event, run, { window: 'Sat 22:00..23:00 (Europe/Berlin)' }));
    assert.match(line, /^dg-upgrade: prod rollback to v0\.1\.0/, event);
  }
  assert.equal(
    headline(notificationFacts(rollback, 'needs-operator', run)),
    'dg-upgrade: prod rollback to v0.1.0 needs an operator: signal "acceptDataLoss" with {"by": "<you>", "events": 3}, or "abandon"',
  );
  const waiting = notificationFacts(upgradeStatus({ phase: 'preflight' }), 'window-waiting', run, { window: 'Sat 22:00..23:00 (Europe/Berlin)' });
  assert.equal(waiting.window, 'Sat 22:00..23:00 (Europe/Berlin)');
  assert.equal(waiting.planHash, '3f2a9c0d1e2b4a5c6d7e8f90');
  assert.match(headline(waiting), /waiting for its maintenance window Sat 22:00\.\.23:00 \(Europe\/Berlin\)/);
});

test('terminal events follow the outcome; a child rollback leaves them to its upgrade', () => {
  const s = (over: Partial<OperationStatus>) => upgradeStatus(over);
  assert.deepEqual(terminalEvents(s({ outcome: 'succeeded' }), { standalone: true }), ['succeeded']);
  assert.deepEqual(terminalEvents(s({ outcome: 'rolled-back' }), { standalone: true }), ['rolled-back']);
  assert.deepEqual(terminalEvents(s({ outcome: 'failed' }), { standalone: true }), ['failed']);
  assert.deepEqual(terminalEvents(s({ outcome: 'rejected' }), { standalone: true }), []);
  assert.deepEqual(terminalEvents(s({ outcome: 'aborted' }), { standalone: true }), []);
  const problem = { id: 'b', file: 'f', sizeBytes: 0, sha256: '', migrationVersions: [], problem: 'ENOSPC' };
  assert.deepEqual(terminalEvents(s({ outcome: 'failed', backup: problem, error: { step: 'portableBackup', message: 'x' } }), { standalone: true }), ['backup-unverified']);
  assert.deepEqual(terminalEvents(s({ outcome: 'rolled-back', backup: problem }), { standalone: true }), ['rolled-back', 'backup-unverified']);
  assert.deepEqual(terminalEvents(s({ outcome: 'rolled-back' }), { standalone: false }), []);
  assert.deepEqual(terminalEvents(s({ outcome: undefined }), { standalone: true, threw: true }), ['failed'], 'an abandoned standalone rollback');
  assert.deepEqual(terminalEvents(s({ outcome: undefined }), { standalone: false, threw: true }), []);
});

function profileWith(notifications: unknown) {
  return {
    stateDir: '/var/lib/dg',
    deployments: {
      prod: {
        repoPath: '/srv/dg',
        runtime: { adapter: 'process' },
        database: { url: { fromEnv: 'DATABASE_URL' } },
        backups: { dir: '/var/backups/dg' },
        smoke: { tenant: 'default', readerToken: { fromEnv: 'R' }, adminToken: { fromEnv: 'A' } },
        notifications,
      },
    },
  };
}

test('profile: webhooks with a secret URL reference, events and a timeout', () => {
  const file = parseProfileFile(profileWith({ webhooks: [{ name: 'ops-chat', url: { fromEnv: 'OPS_CHAT_WEBHOOK' }, events: ['awaiting-approval', 'failed'] }] }));
  assert.deepEqual(file.deployments.prod!.notifications, {
    webhooks: [{ name: 'ops-chat', url: { fromEnv: 'OPS_CHAT_WEBHOOK' }, events: ['awaiting-approval', 'failed'], timeout: '5s' }],
  });
  assert.equal(parseProfileFile(profileWith(undefined)).deployments.prod!.notifications, undefined, 'optional');
});

test('profile: an unknown event is named with the valid ones; a plain URL, a duplicate name and a long timeout are refused', () => {
  assert.throws(
    () => parseProfileFile(profileWith({ webhooks: [{ name: 'ops-chat', url: { fromEnv: 'X' }, events: ['succeeded', 'awaiting-aproval'] }] }), 'p.json'),
    (err: ProfileError) => {
      assert.match(err.message, /deployments\.prod\.notifications\.webhooks\.0\.events\.1: unknown event "awaiting-aproval"; valid events: awaiting-approval, window-waiting, window-opened, succeeded, failed, rolled-back, needs-operator, backup-unverified/);
      return true;
    },
  );
  assert.throws(() => parseProfileFile(profileWith({ webhooks: [{ name: 'a', url: 'https://hooks.example.com/T0/abc', events: ['failed'] }] })), /webhooks\.0\.url/);
  assert.throws(
    () => parseProfileFile(profileWith({ webhooks: [{ name: 'a', url: { fromEnv: 'X' }, events: ['failed'] }, { name: 'a', url: { fromEnv: 'Y' }, events: ['failed'] }] })),
    /webhooks\.1\.name: webhook name "a" is used twice/,
  );
  assert.throws(() => parseProfileFile(profileWith({ webhooks: [{ name: 'a', url: { fromEnv: 'X' }, events: ['failed'], timeout: '2m' }] })), /webhooks\.0\.timeout: at most "30s"/);
  assert.throws(() => parseProfileFile(profileWith({ webhooks: [{ name: 'a', url: { fromEnv: 'X' }, events: [] }] })), /webhooks\.0\.events: at least one event/);
  assert.throws(() => parseProfileFile(profileWith({ webhooks: [{ name: 'a', url: { fromEnv: 'X' }, events: ['failed'], secret: 'x' }] })), /secret/);
});

test('sendNotification: POSTs the body with its delivery ID; a non-2xx answer, a timeout or a refused connection fail naming the webhook, never its URL', async (t) => {
  const { MockActivityEnvironment } = await import('@temporalio/testing');
  const { sendNotification, webhookSubscriptions } = await import('../src/activities/notify.js');
  const { setProfilePath } = await import('../src/activities/deployment.js');
  const http = await import('node:http');
  const { mkdtempSync, rmSync, writeFileSync } = await import('node:fs');
  const os = await import('node:os');
  const path = await import('node:path');

  const got: Array<{ url: string; headers: Record<string, unknown>; body: any }> = [];
  let answer = 204;
  const server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (c) => (raw += c));
    req.on('end', () => {
      got.push({ url: req.url!, headers: req.headers, body: JSON.parse(raw) });
      if (answer === 0) return; // never answers
      res.writeHead(answer).end('echo of a token would be here');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dgu-notify-'));
  t.after(() => {
    server.closeAllConnections();
    server.close();
    rmSync(dir, { recursive: true, force: true });
    delete process.env.DGU_TEST_HOOK;
    delete process.env.TEMPORAL_UI_URL;
  });
  const token = 'T0K-5ecret-path-token';
  const profile = profileWith({
    webhooks: [
      { name: 'ops-chat', url: { fromEnv: 'DGU_TEST_HOOK' }, events: ['awaiting-approval', 'failed'], timeout: '300ms' },
      { name: 'unset', url: { fromEnv: 'DGU_TEST_HOOK_UNSET' }, events: ['failed'] },
    ],
  });
  const file = path.join(dir, 'profile.json');
  writeFileSync(file, JSON.stringify(profile));
  setProfilePath(file);
  process.env.DGU_TEST_HOOK = `http://127.0.0.1:${port}/hooks/${token}`;
  process.env.TEMPORAL_UI_URL = 'http://ui.example:8233';
  const env = new MockActivityEnvironment();
  const facts = notificationFacts(upgradeStatus(), 'awaiting-approval', run);

  assert.deepEqual(await env.run(webhookSubscriptions, 'prod'), [
    { name: 'ops-chat', events: ['awaiting-approval', 'failed'] },
    { name: 'unset', events: ['failed'] },
  ]);

  assert.deepEqual(await env.run(sendNotification, 'prod', 'ops-chat', facts), { status: 204 });
  assert.equal(got[0]!.url, `/hooks/${token}`);
  assert.equal(got[0]!.headers['idempotency-key'], facts.deliveryId);
  assert.equal(got[0]!.body.deliveryId, facts.deliveryId);
  assert.equal(got[0]!.body.link, `http://ui.example:8233/namespaces/default/workflows/dg-upgrade-prod/${run.runId}/history`);
  assert.ok(!JSON.stringify(got[0]!.body).includes(token));

  const failsWith = async (webhook: string, pattern: RegExp, retryable: boolean) => {
    await assert.rejects(env.run(sendNotification, 'prod', webhook, facts), (err: any) => {
      assert.match(err.message, pattern);
      assert.ok(!err.message.includes(token) && !err.message.includes('127.0.0.1'), err.message);
      assert.equal(err.nonRetryable, !retryable, err.message);
      return true;
    });
  };
  answer = 500;
  await failsWith('ops-chat', /^webhook "ops-chat": the receiver answered HTTP 500 Internal Server Error$/, true);
  answer = 0;
  await failsWith('ops-chat', /^webhook "ops-chat": no answer within 300ms$/, true);
  await failsWith('unset', /^webhook "unset": secret environment variable DGU_TEST_HOOK_UNSET is not set/, false);
  await failsWith('gone', /^webhook "gone" is no longer in the profile of deployment "prod"$/, false);
  process.env.DGU_TEST_HOOK = 'hooks.example.com/T0K-5ecret-path-token';
  await failsWith('ops-chat', /^webhook "ops-chat": the URL in environment variable DGU_TEST_HOOK is not an http:\/\/ or https:\/\/ URL$/, false);
  // A port nobody listens on (the receiver's own has a pooled connection the client may reuse).
  const closed = http.createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const closedPort = (closed.address() as { port: number }).port;
  await new Promise<void>((r) => closed.close(() => r()));
  process.env.DGU_TEST_HOOK = `http://127.0.0.1:${closedPort}/hooks/${token}`;
  await failsWith('ops-chat', /^webhook "ops-chat": cannot reach the receiver \(ECONNREFUSED\)$/, true);
});
