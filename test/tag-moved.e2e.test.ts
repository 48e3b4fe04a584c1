import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { execa } from 'execa';
import { createRunningDeployment, getJson, type E2eDeployment } from './support/e2e.js';
import { startWarmTraffic } from './support/liveRun.js';
import { startTestTemporal, type TestTemporal } from './support/temporal.js';
import type { SampleTarget } from './fixtures/sample-target/generate.js';
import type { Traffic } from './support/traffic.js';

// A tag can move on origin between the plan and its approval. The approved plan names a commit,
// and that commit is deployed; the run says the tag moved (status, UI details, summary) instead
// of staying silent. Writes flow through the app during the upgrade.

let temporal: TestTemporal;
let d: E2eDeployment;
let traffic: Traffic | undefined;

before(async () => {
  temporal = await startTestTemporal();
  d = await createRunningDeployment(temporal, 'tagmove');
  traffic = await startWarmTraffic(d, { rate: 50 });
});

after(async () => {
  await traffic?.stop().catch(() => {});
  await d?.dispose();
  await temporal?.dispose();
});

test('a tag moved after the plan: the planned commit is deployed, and the run says the tag moved', async () => {
  const started = await d.cli(['upgrade', '--deployment', d.name, '--to', 'v0.2.0', '--json']);
  assert.equal(started.exitCode, 0, started.stderr);
  const waiting = JSON.parse(started.stdout).status;
  const planned = waiting.plan.to.sha as string;

  const upstream = (d.target as SampleTarget).upstreamDir;
  const other = (await execa('git', ['-C', upstream, 'rev-parse', 'v0.2.1^{commit}'])).stdout.trim();
  await execa('git', ['-C', upstream, 'tag', '-f', 'v0.2.0', other]);

  const approved = await d.cli(['approve', d.name, '--plan-hash', waiting.planHash]);
  assert.equal(approved.exitCode, 0, approved.stderr);
  const followed = await d.cli(['status', d.name, '--follow', '--json']);
  assert.equal(followed.exitCode, 0, followed.stderr);
  const status = JSON.parse(followed.stdout).status;
  assert.equal(status.outcome, 'succeeded');
  assert.deepEqual(status.tagMoved, { tag: 'v0.2.0', plannedSha: planned, currentSha: other });
  assert.match(status.summary, new RegExp(`tag v0\\.2\\.0 moved to ${other.slice(0, 12)} after the plan: deployed the planned commit ${planned.slice(0, 12)}`));

  // From outside: the planned v0.2.0 serves (v0.2.1 would say 0.2.1), checked out at the planned commit.
  const health = await getJson(`http://127.0.0.1:${d.port}/api/healthz`);
  assert.equal(health.status, 200);
  assert.equal(health.body.version, '0.2.0');
  const text = await d.cli(['status', d.name]);
  assert.match(text.stdout, new RegExp(`! tag v0\\.2\\.0 moved after the plan: it now points at ${other.slice(0, 12)}; the planned commit ${planned.slice(0, 12)} is the one deployed`));
});
