import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, watch, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { setProfilePath } from '../src/activities/deployment.js';
import { startRuntime, stopRuntime } from '../src/activities/runtime.js';
import { freePort } from './support/ports.js';

// The command adapter's side of "started means ours answers" (docs/decisions.md), at the
// activity level, no database: the start command daemonizes a server from the deployed beam dir
// (re-parented, so no process tree to follow); a listener from inside that dir is accepted, a
// stranger holding the port is refused, named, and left alive.

const SERVER = `import http from 'node:http';
import { existsSync } from 'node:fs';
process.on('SIGTERM', () => process.exit(0));
const go = () => existsSync('go') ? http.createServer((q, r) => r.end('{}')).listen(Number(process.env.PORT), '127.0.0.1') : setTimeout(go, 20);
go();
`;

let dir: string;
let beam: string;
let port: number;

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'dgu-runtime-identity-'));
  beam = path.join(dir, 'repo', 'beam');
  port = await freePort();
  mkdirSync(beam, { recursive: true });
  writeFileSync(path.join(beam, 'server.mjs'), SERVER);
  const profile = {
    stateDir: path.join(dir, 'state'),
    deployments: {
      cmd: {
        repoPath: path.join(dir, 'repo'),
        layout: 'in-place',
        runtime: {
          adapter: 'command',
          start: ['sh', '-c', `nohup ${process.execPath} server.mjs >/dev/null 2>&1 & echo $! > server.pid`],
          status: ['sh', '-c', `kill -0 "$(cat ${beam}/server.pid)" 2>/dev/null`],
          stop: ['sh', '-c', `kill "$(cat ${beam}/server.pid)"; rm -f ${beam}/server.pid`],
          startTimeout: '20s',
          stopTimeout: '5s',
        },
        port,
        database: { url: { fromEnv: 'DGU_IDENTITY_DB_URL' } },
        backups: { dir: path.join(dir, 'backups') },
        smoke: { tenant: 'default', readerToken: { fromEnv: 'DGU_IDENTITY_DB_URL' }, adminToken: { fromEnv: 'DGU_IDENTITY_DB_URL' } },
        toolchain: { mix: '/bin/false' },
      },
    },
  };
  process.env.DGU_IDENTITY_DB_URL = 'postgres://nobody@127.0.0.1:1/none';
  writeFileSync(path.join(dir, 'profile.json'), JSON.stringify(profile));
  setProfilePath(path.join(dir, 'profile.json'));
});

after(async () => {
  await stopRuntime('cmd').catch(() => {});
  rmSync(dir, { recursive: true, force: true });
});

test('command adapter: a daemonized server running from the deployed dir is accepted, and the proof says the tree was not followed', async () => {
  writeFileSync(path.join(beam, 'go'), '');
  const started = await startRuntime('cmd', path.join(dir, 'repo'));
  assert.equal(started.healthStatus, 200);
  const pid = Number(readFileSync(path.join(beam, 'server.pid'), 'utf8'));
  assert.match(started.servedBy ?? '', new RegExp(`held by pid ${pid}, running from its working directory`));
  assert.match(started.servedBy ?? '', /command adapter: the start command daemonizes/);
  await stopRuntime('cmd');
  rmSync(path.join(beam, 'go'));
});

test('command adapter: a stranger that takes the port after the start command is named, the started runtime is stopped, the stranger lives', async () => {
  const failDir = mkdtempSync(path.join(dir, 'failpoints-'));
  process.env.DG_UPGRADE_FAILPOINTS = 'startRuntime.afterStart:mark';
  process.env.DG_UPGRADE_FAILPOINT_DIR = failDir;
  // The stranger is this test process: not started by dg-upgrade, not running from the deployed dir.
  const stranger = http.createServer((_req, res) => res.end('{"stranger": true}'));
  const watcher = watch(failDir, () => !stranger.listening && stranger.listen(port, '127.0.0.1'));
  try {
    await assert.rejects(startRuntime('cmd', path.join(dir, 'repo')), (err: Error) => {
      assert.match(err.message, new RegExp(`port ${port} \\(127\\.0\\.0\\.1:${port}\\) is held by pid ${process.pid} \\(`));
      assert.match(err.message, /which does not run from the deployed release/);
      assert.match(err.message, /dg-upgrade stopped the runtime it started/);
      assert.match(err.message, new RegExp(`left pid ${process.pid} alone`));
      assert.match(err.message, new RegExp(`stop pid ${process.pid} or move it off port ${port}, then retry`));
      return true;
    });
    assert.equal(stranger.listening, true, 'the stranger still listens');
    assert.equal(((await (await fetch(`http://127.0.0.1:${port}/api/healthz`)).json()) as any).stranger, true);
  } finally {
    watcher.close();
    delete process.env.DG_UPGRADE_FAILPOINTS;
    await new Promise((r) => stranger.close(r));
  }
});
