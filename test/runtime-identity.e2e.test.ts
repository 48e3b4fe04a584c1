import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, watch, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createE2eDeployment, getJson, listenersOnPort, waitCaughtUp, waitForStatus, type E2eDeployment } from './support/e2e.js';
import { followAcceptingDataLoss } from './support/liveRun.js';
import { startTestTemporal, type TestTemporal } from './support/temporal.js';

// Issue 20 item 1: "a stranger on the app's port is taken for the new version". A process binds
// the app's port the moment the new runtime is spawned (the real new version then dies with
// "port already in use"); healthz answers 200, but not from the runtime dg-upgrade started.
// "Started" must mean the spawned runtime is proven to be what listens (docs/decisions.md).

let temporal: TestTemporal;
before(async () => {
  temporal = await startTestTemporal();
});
after(async () => {
  await temporal?.dispose();
});

/** A foreign node process that binds the port only when told to (a line on its stdin): the timing is the test's. */
async function startStranger(port: number, dir: string): Promise<{ child: ChildProcess; bind(): void; listening: Promise<void>; alive(): boolean; stop(): Promise<void> }> {
  const script = `
    const http = require('node:http');
    process.stdin.once('data', () => {
      http.createServer((_req, res) => { res.setHeader('content-type', 'application/json'); res.end('{"status":"ok","stranger":true}'); })
        .listen(${port}, '127.0.0.1', () => process.stdout.write('listening\\n'))
        .on('error', (err) => { process.stdout.write('error ' + err.code + '\\n'); process.exit(1); });
    });`;
  const file = path.join(dir, 'dg-identity-stranger.cjs');
  writeFileSync(file, script);
  const child = spawn(process.execPath, [file], { cwd: dir, stdio: ['pipe', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  const listening = new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      const text = chunk.toString();
      if (text.includes('listening')) resolve();
      else if (text.includes('error')) reject(new Error(`the stranger could not bind: ${text}`));
    });
    child.once('exit', (code) => reject(new Error(`the stranger exited with ${code}`)));
  });
  listening.catch(() => {});
  const alive = () => child.exitCode === null && child.signalCode === null;
  return {
    child,
    listening,
    alive,
    bind: () => child.stdin!.write('bind\n'),
    stop: async () => {
      if (!alive()) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
    },
  };
}

describe('a stranger binds the app\'s port right after the new runtime is spawned', () => {
  let d: E2eDeployment;
  let failDir: string;
  let stranger: Awaited<ReturnType<typeof startStranger>> | undefined;
  before(async () => {
    d = await createE2eDeployment(temporal, 'identity');
    await d.bootstrap();
    await waitCaughtUp(d);
    failDir = mkdtempSync(path.join(d.dir, 'failpoints-'));
    // The first spawn in the worker is startNew's: the marker is written right after it, and the activity goes on.
    await d.startWorker({ DG_UPGRADE_FAILPOINTS: 'startRuntime.afterSpawn:mark', DG_UPGRADE_FAILPOINT_DIR: failDir });
  });
  after(async () => {
    await stranger?.stop();
    await d?.dispose();
  });

  test('the upgrade does not report v0.2.0 started: startNew fails naming the stranger\'s pid, the spawned runtime is stopped, the stranger lives, and the rollback ends on v0.1.0 once the port is freed', async (t) => {
    stranger = await startStranger(d.port, d.dir);
    const strangerPid = stranger.child.pid!;
    const marker = path.join(failDir, 'startRuntime.afterSpawn');
    let portFreeAtSpawn: number | undefined;
    const onMarker = () => {
      if (portFreeAtSpawn !== undefined || !existsSync(marker)) return;
      // The old version is stopped and the new one only just spawned: nobody listens yet.
      portFreeAtSpawn = listenersOnPort(d.port);
      stranger!.bind();
    };
    // inotify sees the marker within a millisecond; the poll is only a safety net.
    const watcher = watch(failDir, (_event, file) => file === 'startRuntime.afterSpawn' && onMarker());
    const poll = setInterval(onMarker, 2);
    let bound = false;
    void stranger.listening.then(() => (bound = true), () => {});
    let upgradeWorkflowId: string;
    try {
      const started = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--yes', '--json']);
      assert.equal(started.exitCode, 0, started.stderr);
      upgradeWorkflowId = JSON.parse(started.stdout).workflowId;
      // Fail fast (not hang) when the run ends before it spawns anything (e.g. the database refuses clients).
      await waitForStatus(d, (s) => bound || !!s.outcome, 'the stranger to bind', 180_000, ['--workflow-id', upgradeWorkflowId]);
      if (!bound) {
        const s = JSON.parse((await d.cli(['status', '--workflow-id', upgradeWorkflowId, '--json'])).stdout);
        assert.fail(`the upgrade ended before the new runtime was spawned: ${s.summary}`);
      }
      await stranger.listening;
      assert.ok(existsSync(marker), 'the stranger bound the port after the new runtime was spawned');
    } finally {
      watcher.close();
      clearInterval(poll);
    }
    assert.equal(portFreeAtSpawn, 0, 'nobody listened on the port when the new runtime was spawned');

    // The upgrade fails at startNew (never "started"), and rolls back.
    const upgrading = await waitForStatus(d, (s) => !!s.rollbackWorkflowId, 'the rollback to start', 180_000, ['--workflow-id', upgradeWorkflowId]);
    t.diagnostic(`startNew failed: ${upgrading.error?.message}`);
    assert.equal(upgrading.error?.step, 'startNew', JSON.stringify(upgrading.error));
    assert.match(upgrading.error.message, new RegExp(`pid ${strangerPid}\\b`), 'the failure names the pid holding the port');
    assert.match(upgrading.error.message, /dg-identity-stranger/, 'and its command line');
    assert.match(upgrading.error.message, /not by the runtime dg-upgrade started/);
    assert.match(upgrading.error.message, new RegExp(`stop pid ${strangerPid} or move it off port ${d.port}, then retry`), 'and says what to do');
    const startNew = upgrading.steps.find((s: any) => s.name === 'startNew');
    assert.equal(startNew.state, 'failed', 'startNew is not reported succeeded');
    assert.doesNotMatch(upgrading.summary, /upgraded v0\.1\.0 -> v0\.2\.0/);

    // The new runtime dg-upgrade spawned is gone (stopped, or dead of "port already in use"); the stranger is not.
    const runtimeLog = readFileSync(path.join(d.profile.stateDir, 'runtime', d.name, 'runtime.log'), 'utf8');
    assert.ok(stranger.alive(), 'the stranger was not killed');
    assert.equal((await getJson(`http://127.0.0.1:${d.port}/api/healthz`)).body.stranger, true, 'the stranger still answers');

    // The rollback meets the same stranger (its stop of the upgraded version sees the port still
    // answered) before it starts anything: it blocks and names it.
    const rollbackId = upgrading.rollbackWorkflowId as string;
    const blocked = await waitForStatus(d, (s) => s.phase === 'rollback-blocked', 'the rollback to block', 180_000, ['--workflow-id', rollbackId]);
    assert.match(blocked.summary, /rollback step stopUpgraded failed: port \d+ still answers after the stop: a runtime dg-upgrade did not start is running there/);
    assert.match(blocked.summary, new RegExp(`held by pid ${strangerPid}\\b`));
    assert.ok(stranger.alive(), 'the stranger is still alive after the failed upgrade and the blocked rollback');
    t.diagnostic(`runtime log tail: ${runtimeLog.trimEnd().split('\n').slice(-3).join(' | ')}`);

    // The operator frees the port and retries: the rollback finishes, v0.1.0 serves, started by dg-upgrade.
    await stranger.stop();
    const retried = await d.cli(['retry', d.name, '--by', 'e2e-operator', '--comment', 'stranger stopped']);
    assert.equal(retried.exitCode, 0, retried.stderr);
    await waitForStatus(d, (s) => s.phase !== 'rollback-blocked', 'the rollback to resume', 60_000, ['--workflow-id', rollbackId]);
    const run = await followAcceptingDataLoss(d, { workflowId: upgradeWorkflowId });
    assert.equal(run.exitCode, 1, JSON.stringify(run.status).slice(0, 1000));
    assert.equal(run.status.outcome, 'rolled-back');
    const health = await getJson(`http://127.0.0.1:${d.port}/api/healthz`);
    assert.equal(health.status, 200);
    assert.equal(health.body.version, '0.1.0', 'the old version serves');
    const probe = await d.cli(['status', d.name, '--json']);
    assert.equal(probe.exitCode, 0, probe.stderr);
  });
});
