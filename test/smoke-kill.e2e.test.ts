// The new runtime is killed with SIGKILL while its smoke checks run (a good upgrade, v0.1.0 ->
// v0.2.0, under 50 writes/s): the smoke step notices within 3 s (a refused connection and a
// vanished process are not waited out to the check's timeout), and the run ends rolled back to
// v0.1.0 with the backup restored.

import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, watch } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { createE2eDeployment, processesWithEnv, waitCaughtUp, type E2eDeployment } from './support/e2e.js';
import { assertRestoredToBackup, followAcceptingDataLoss, startWarmTraffic } from './support/liveRun.js';
import { databaseUrlFor } from './support/postgres.js';
import { startTestTemporal, type TestTemporal } from './support/temporal.js';
import { assertConfirmedWritesAccountedFor, assertGateCountMatchesDiscarded, describeTraffic, type Traffic } from './support/traffic.js';

let temporal: TestTemporal;
let d: E2eDeployment;
let failDir: string;
let traffic: Traffic | undefined;
before(async () => {
  temporal = await startTestTemporal();
  d = await createE2eDeployment(temporal, 'smokekill');
  await d.bootstrap();
  await waitCaughtUp(d);
  failDir = mkdtempSync(path.join(d.dir, 'failpoints-'));
  // ":mark": the smoke checks go on after healthz; the marker tells the test when to kill.
  await d.startWorker({ DG_UPGRADE_FAILPOINTS: 'smoke.afterHealthz:mark', DG_UPGRADE_FAILPOINT_DIR: failDir });
});
after(async () => {
  await traffic?.stop();
  await d?.dispose();
  await temporal?.dispose();
});

test('SIGKILL of the runtime during smoke: detected in under 3 s, rolled back', async (t) => {
  traffic = await startWarmTraffic(d, { rate: 50 });
  const oldPids = new Set(processesWithEnv('DG_UPGRADE_RUNTIME', d.name));
  let killedAt = 0;
  let killedPids: number[] = [];
  const marker = path.join(failDir, 'smoke.afterHealthz');
  // fs.watch reacts within a millisecond or so: the kill lands right after healthz passed.
  const watcher = watch(failDir, (_event, file) => {
    if (file !== 'smoke.afterHealthz' || killedAt) return;
    killedPids = processesWithEnv('DG_UPGRADE_RUNTIME', d.name).filter((p) => !oldPids.has(p));
    killedAt = Date.now();
    for (const pid of killedPids) process.kill(pid, 'SIGKILL');
  });
  try {
    const started = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--yes', '--json']);
    assert.equal(started.exitCode, 0, started.stderr);
    const run = await followAcceptingDataLoss(d, { workflowId: JSON.parse(started.stdout).workflowId });
    assert.ok(existsSync(marker), 'the smoke checks reached the failpoint');
    assert.ok(killedAt > 0 && killedPids.length > 0, `the new runtime was killed (pids ${killedPids.join(', ')})`);
    const s = run.status;
    assert.equal(run.exitCode, 1, 'a rolled-back upgrade exits 1');
    assert.equal(s.outcome, 'rolled-back', s.summary);
    assert.match(s.summary, /failed at smoke/);
    assert.doesNotMatch(s.summary, /COMPENSATION FAILED/);
    const smoke = s.steps.find((st: any) => st.name === 'smoke');
    assert.equal(smoke.state, 'failed');
    const checks = Object.fromEntries((s.smoke?.checks ?? []).map((c: any) => [c.name, c]));
    assert.equal(checks.healthz?.passed, true, `healthz passed before the kill, so the kill is what failed the smoke: ${JSON.stringify(checks.healthz)}`);
    assert.match(checks.projections?.reason ?? '', /gone|refused|not running/, 'the next check failed because the runtime is gone');
    const detectedMs = Date.parse(smoke.endedAt) - killedAt;
    t.diagnostic(`kill -> smoke step failed: ${detectedMs} ms; smoke: ${JSON.stringify(s.smoke?.checks?.map((c: any) => `${c.name}: ${c.passed ? 'ok' : c.reason} (${c.latencyMs} ms)`))}`);
    assert.ok(detectedMs >= 0, 'the smoke step ended after the kill');
    assert.ok(detectedMs < 3000, `the kill was detected ${detectedMs} ms after it (limit 3000 ms)`);

    const aside = databaseUrlFor(s.rollback.asideDatabase);
    await assertRestoredToBackup(d, s, aside);
    const gate = await assertGateCountMatchesDiscarded(s, d.databaseUrl, aside, traffic.snapshot());
    const final = await traffic.stop();
    traffic = undefined;
    const accounted = await assertConfirmedWritesAccountedFor(final, d.databaseUrl, { [s.rollback.asideDatabase]: aside });
    t.diagnostic(`traffic ${describeTraffic(final)}; gate accepted ${gate.accepted}, discarded ${gate.discarded}; ${accounted.live} live, ${accounted.setAside} set aside`);
  } finally {
    watcher.close();
  }
});
