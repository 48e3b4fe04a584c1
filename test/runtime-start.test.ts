import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { setProfilePath } from '../src/activities/deployment.js';
import { probeRuntime, startRuntime, stopRuntime } from '../src/activities/runtime.js';
import { freePort } from './support/ports.js';

// The process adapter's "started" decision, exercised for real: a `#!/usr/bin/env node`
// runtime (the shape of the stand-in's mix, and of many launchers) started and stopped in a loop.
// The old check read /proc/<pid>/environ right after the spawn and, about once in 100 spawns,
// caught the process between fork and exec and reported a healthy start as "exited".
// No database and no writes: this test is about process identity only.

const RUNTIME = `#!/usr/bin/env node
import http from 'node:http';
if (process.argv[2] !== 'phx.server') process.exit(2);
if (process.env.DIE_AT_START === '1') { console.error('refusing to boot: DIE_AT_START'); process.exit(3); }
http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ version: 'loop', store: { 'repo_started?': true } }));
}).listen(Number(process.env.PORT), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
`;

let dir: string;
let port: number;

function writeProfile(env: Record<string, string> = {}): void {
  const profile = {
    stateDir: path.join(dir, 'state'),
    deployments: {
      loop: {
        repoPath: path.join(dir, 'repo'),
        layout: 'in-place',
        runtime: { adapter: 'process', startTimeout: '20s', stopTimeout: '5s' },
        port,
        database: { url: { fromEnv: 'DGU_LOOP_DB_URL' } },
        backups: { dir: path.join(dir, 'backups') },
        smoke: { tenant: 'default', readerToken: { fromEnv: 'DGU_LOOP_DB_URL' }, adminToken: { fromEnv: 'DGU_LOOP_DB_URL' } },
        toolchain: { mix: path.join(dir, 'mix'), env },
      },
    },
  };
  writeFileSync(path.join(dir, 'profile.json'), JSON.stringify(profile));
}

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'dgu-runtime-start-'));
  port = await freePort();
  mkdirSync(path.join(dir, 'repo', 'beam'), { recursive: true });
  writeFileSync(path.join(dir, 'mix'), RUNTIME);
  chmodSync(path.join(dir, 'mix'), 0o755);
  process.env.DGU_LOOP_DB_URL = 'postgres://nobody@127.0.0.1:1/none';
  writeProfile();
  setProfilePath(path.join(dir, 'profile.json'));
});

after(async () => {
  await stopRuntime('loop').catch(() => {});
  rmSync(dir, { recursive: true, force: true });
});

test('200 starts in a row: every healthy start is reported started, and stop finds it', async () => {
  const repo = path.join(dir, 'repo');
  const pids = new Set<number>();
  for (let i = 0; i < 200; i++) {
    const started = await startRuntime('loop', repo).catch((err: Error) => assert.fail(`start ${i + 1} of 200 failed: ${err.message}`));
    assert.equal(started.running, true, `start ${i + 1}: running`);
    assert.equal(started.healthStatus, 200, `start ${i + 1}: healthz 200`);
    pids.add(started.pid!);
    const stopped = await stopRuntime('loop');
    assert.equal(stopped.wasRunning, true, `stop ${i + 1} found the runtime it started`);
    assert.equal(stopped.forced, false, `stop ${i + 1}: graceful`);
  }
  assert.ok(pids.size > 1, 'each start was a new process');
  assert.equal((await probeRuntime('loop')).answering, false, 'nothing left on the port');
});

test('a runtime that exits during start still fails fast, quoting its log', async () => {
  writeProfile({ DIE_AT_START: '1' });
  const t0 = Date.now();
  await assert.rejects(startRuntime('loop', path.join(dir, 'repo')), (err: Error) => {
    assert.match(err.message, /exited with code 3 during start/);
    assert.match(err.message, /refusing to boot: DIE_AT_START/);
    return true;
  });
  assert.ok(Date.now() - t0 < 10_000, 'failed before the 20 s start timeout');
  writeProfile();
});
