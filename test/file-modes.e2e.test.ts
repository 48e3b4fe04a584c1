import assert from 'node:assert/strict';
import { chmodSync, existsSync, lstatSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { createRunningDeployment, type E2eDeployment } from './support/e2e.js';
import { startTestTemporal, type TestTemporal } from './support/temporal.js';

// Issue 20 item 10: what dg-upgrade writes on the node (the runtime's pidfile and log, the step
// logs, the commands' pidfiles) and the dev server's SQLite file (plans, comments) and log are
// readable by their owner only: files 0600, the directories holding them 0700. Created so under
// a umask of 022, and tightened when an older dg-upgrade left them looser.

let temporal: TestTemporal;
let d: E2eDeployment;

before(async () => {
  temporal = await startTestTemporal();
  d = await createRunningDeployment(temporal, 'filemodes');
});
after(async () => {
  await d?.dispose();
  await temporal?.dispose();
});

const modeOf = (p: string) => lstatSync(p).mode & 0o777;

/** Every file and directory under `root` (itself included) that group or others may read, as "path mode". */
function openToOthers(root: string): string[] {
  const out: string[] = [];
  const walk = (p: string) => {
    const st = lstatSync(p);
    if (st.isSymbolicLink()) return;
    if (st.mode & 0o077) out.push(`${p} ${(st.mode & 0o777).toString(8)}`);
    if (st.isDirectory()) for (const e of readdirSync(p)) walk(path.join(p, e));
  };
  walk(root);
  return out;
}

function filesUnder(root: string): string[] {
  const out: string[] = [];
  const walk = (p: string) => {
    const st = lstatSync(p);
    if (st.isDirectory()) for (const e of readdirSync(p)) walk(path.join(p, e));
    else if (st.isFile()) out.push(p);
  };
  walk(root);
  return out;
}

const stateDir = () => d.profile.stateDir;
const runDir = () => path.join(stateDir(), 'runtime', d.name);
const logDir = () => path.join(stateDir(), 'logs', d.name);

function assertPrivate(roots: string[], when: string): void {
  const open = roots.filter(existsSync).flatMap(openToOthers);
  assert.deepEqual(open, [], `${when}: readable by group or others:\n${open.join('\n')}`);
}

test('a fresh install: the runtime files and step logs are created owner-only', () => {
  // The bootstrap built, migrated and started v0.1.0 through the activities, under umask 022.
  assert.ok(existsSync(path.join(runDir(), 'runtime.json')), 'the runtime record was written');
  assert.ok(existsSync(path.join(runDir(), 'runtime.log')), 'the runtime log was written');
  assert.ok(filesUnder(logDir()).some((f) => f.endsWith('.log')), `step logs in ${logDir()}`);
  assertPrivate([stateDir(), d.profile.deployments[d.name]!.backups.dir], 'after the bootstrap');
});

test('an upgrade tightens what an older dg-upgrade left readable, and writes its own files owner-only', async () => {
  // As an older dg-upgrade left them: files 0644, the directories holding them 0755.
  const loosened: string[] = [];
  for (const f of filesUnder(stateDir())) {
    if (f.includes(`${path.sep}keys${path.sep}`)) continue; // owner-only since issue 19, not this item's
    chmodSync(f, 0o644);
    loosened.push(f);
  }
  for (const dir of [stateDir(), path.dirname(runDir()), runDir(), path.dirname(logDir()), logDir()]) chmodSync(dir, 0o755);
  assert.ok(loosened.some((f) => f.endsWith('runtime.log')), 'runtime.log loosened');

  const up = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--yes', '--follow']);
  assert.equal(up.exitCode, 0, `${up.stdout.slice(-1500)}\n${up.stderr.slice(-1500)}`);

  // The appended logs are the same files as before (tightened, not replaced), and new ones appeared.
  for (const f of ['runtime.log', 'runtime.json']) assert.ok(existsSync(path.join(runDir(), f)), f);
  const logs = filesUnder(logDir()).map((f) => path.basename(f));
  assert.ok(logs.includes('build.log'), `build.log among ${logs.join(', ')}`);
  assertPrivate([stateDir(), d.profile.deployments[d.name]!.backups.dir], 'after the upgrade');
  // The runtime's log is still appended to after the tightening (the new version wrote to it).
  assert.equal(modeOf(path.join(runDir(), 'runtime.log')), 0o600);
});

test("the dev server's SQLite file and log are owner-only, and tightened on a restart", async () => {
  assert.ok(existsSync(temporal.dbFile), temporal.dbFile);
  // The run above wrote its plan and comments into it.
  assertPrivate([temporal.stateDir], 'the dev server in use');
  const other = await startTestTemporal();
  try {
    await other.stop();
    // As an older dg-upgrade left them.
    const files = filesUnder(other.stateDir);
    assert.ok(files.includes(other.dbFile), `${other.dbFile} among ${files.join(', ')}`);
    for (const f of files) chmodSync(f, 0o644);
    chmodSync(other.stateDir, 0o755);
    await other.restart();
    assertPrivate([other.stateDir], 'after a restart on the same files');
  } finally {
    await other.dispose();
  }
});
