import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { createRunningDeployment, editProfile, getJson, type E2eDeployment } from './support/e2e.js';
import { followAcceptingDataLoss, startWarmTraffic } from './support/liveRun.js';
import pg from 'pg';
import { ADMIN_DATABASE_URL } from './support/postgres.js';
import { startTestTemporal, type TestTemporal } from './support/temporal.js';
import type { Traffic } from './support/traffic.js';

// Backups on a real small filesystem (a tmpfs mounted for the test; this needs root, which CI
// has): a disk that fills up while the app is stopped for the backup, and who may read backups.
// Writes flow through the app (50/s) during both tests.

let temporal: TestTemporal;
let d: E2eDeployment;
let traffic: Traffic | undefined;
let mountPoint: string;
let backupsDir: string;

const mode = (p: string) => (statSync(p).mode & 0o777).toString(8);

before(async () => {
  if (process.getuid?.() !== 0) throw new Error('this test mounts a tmpfs and needs root (CI runs as root); run it as root');
  temporal = await startTestTemporal();
  d = await createRunningDeployment(temporal, 'backup-safety');
  mountPoint = path.join(d.dir, 'small-fs');
  mkdirSync(mountPoint);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=96m', 'tmpfs', mountPoint]);
  backupsDir = path.join(mountPoint, 'backups');
  editProfile(d, (p) => (p.backups.dir = backupsDir));
  traffic = await startWarmTraffic(d, { rate: 50 });
});

after(async () => {
  await traffic?.stop().catch(() => {});
  if (mountPoint) execFileSync('umount', ['-l', mountPoint], { stdio: 'ignore' });
  await d?.dispose();
  await temporal?.dispose();
});

async function startAndApprove(target: string): Promise<any> {
  const started = await d.cli(['upgrade', '--deployment', d.name, '--to', target, '--json']);
  assert.equal(started.exitCode, 0, started.stderr);
  return JSON.parse(started.stdout).status;
}

test('a disk that fills during the backup: no retries, the partial dump removed, the old version back at once', async (t) => {
  // The dump runs while the app is stopped only with this method (the default dumps from the frozen copy, below).
  t.after(editProfile(d, (p) => (p.backups.method = 'dump-while-stopped')));
  const waiting = await startAndApprove('v0.2.0');
  assert.equal(waiting.phase, 'awaiting-approval');
  // Preflight found room; now something else fills the filesystem, leaving 8 KiB: less than any
  // dump of this database (a young install's compressed dump can be under 64 KiB).
  const free = Number(execFileSync('df', ['--output=avail', '-B1', mountPoint]).toString().split('\n')[1]);
  execFileSync('fallocate', ['-l', String(free - 8 * 1024), path.join(mountPoint, 'filler')]);

  const approved = await d.cli(['approve', d.name, '--plan-hash', waiting.planHash]);
  assert.equal(approved.exitCode, 0, approved.stderr);
  const followed = await d.cli(['status', d.name, '--follow', '--json']);
  assert.notEqual(followed.exitCode, 0, 'the upgrade failed');
  const status = JSON.parse(followed.stdout).status;
  assert.equal(status.outcome, 'failed');
  assert.equal(status.error.step, 'backup');
  assert.match(status.error.message, new RegExp(`^no space left for the backup on the filesystem ${mountPoint} \\(backup dir ${backupsDir}\\): \\d+ bytes free, up to \\d+ needed`));
  assert.ok(status.steps.some((s: any) => s.name === 'restartOld' && s.state === 'succeeded'), 'the old version was restarted');
  assert.match(followed.stderr, /dg-upgrade: error: .*no space left for the backup/);

  // Checked from outside: the old version serves, nothing half-written is left.
  const health = await getJson(`http://127.0.0.1:${d.port}/api/healthz`);
  assert.equal(health.status, 200);
  assert.equal(health.body.version, '0.1.0');
  assert.deepEqual(readdirSync(backupsDir).filter((f) => f.endsWith('.partial') || f.endsWith('.dump')), [], 'no partial dump left');
  rmSync(path.join(mountPoint, 'filler'));
  assert.equal(mode(backupsDir), '700', 'a backup dir dg-upgrade creates is 0700');
});

test('frozen copy: a disk that fills before the pg_dump from the copy fails the upgrade loudly, keeps the copy, and a rollback swaps it in', async (t) => {
  const waiting = await startAndApprove('v0.2.0');
  const free = Number(execFileSync('df', ['--output=avail', '-B1', mountPoint]).toString().split('\n')[1]);
  execFileSync('fallocate', ['-l', String(free - 64 * 1024), path.join(mountPoint, 'filler')]);
  t.after(() => rmSync(path.join(mountPoint, 'filler'), { force: true })); // the next test needs the space, whatever this one ends
  const approved = await d.cli(['approve', d.name, '--plan-hash', waiting.planHash]);
  assert.equal(approved.exitCode, 0, approved.stderr);
  const followed = await d.cli(['status', d.name, '--follow', '--json']);
  assert.notEqual(followed.exitCode, 0, 'never a silent success');
  const status = JSON.parse(followed.stdout).status;
  assert.equal(status.outcome, 'failed');
  assert.equal(status.error.step, 'portableBackup');
  assert.match(status.summary, /v0\.2\.0 serves and passed its smoke checks, BUT ITS PRE-UPGRADE BACKUP IS NOT VERIFIED: .*no space left for the backup on the filesystem .*the frozen copy \S+ is kept/);
  assert.ok(!status.steps.some((s: any) => s.name === 'rollback' || s.name === 'restartOld'), 'a version that serves is not rolled back for its backup');
  assert.equal((await getJson(`http://127.0.0.1:${d.port}/api/healthz`)).body.version, '0.2.0');
  assert.deepEqual(readdirSync(backupsDir).filter((f) => f.endsWith('.partial') || f.endsWith('.dump')), [], 'no partial dump left');
  const frozen = status.backup.frozenDatabase as string;
  const admin = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
  await admin.connect();
  try {
    assert.equal((await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [frozen])).rowCount, 1, `the frozen copy ${frozen} is kept`);
  } finally {
    await admin.end();
  }
  rmSync(path.join(mountPoint, 'filler'));

  // The copy is the backup: a rollback swaps it in by rename (no pg_dump file exists).
  const rb = await d.cli(['rollback', '--deployment', d.name]);
  assert.equal(rb.exitCode, 0, rb.stderr);
  const rolled = await followAcceptingDataLoss(d);
  assert.equal(rolled.status.outcome, 'rolled-back', rolled.status.summary);
  assert.equal((await getJson(`http://127.0.0.1:${d.port}/api/healthz`)).body.version, '0.1.0');
});

test('backups are 0600 in a 0700 dir; a dir that others can read is warned about in the plan', async () => {
  chmodSync(backupsDir, 0o755);
  const waiting = await startAndApprove('v0.2.0');
  assert.ok(
    (waiting.plan.warnings ?? []).some((w: string) => w.startsWith(`backup dir ${backupsDir} is readable by group or others (mode 755)`)),
    `the plan warns: ${JSON.stringify(waiting.plan.warnings)}`,
  );
  chmodSync(backupsDir, 0o700);
  const approved = await d.cli(['approve', d.name, '--plan-hash', waiting.planHash]);
  assert.equal(approved.exitCode, 0, approved.stderr);
  const followed = await d.cli(['status', d.name, '--follow', '--json']);
  const status = JSON.parse(followed.stdout).status;
  assert.equal(status.outcome, 'succeeded', followed.stderr);
  const files = readdirSync(backupsDir);
  assert.ok(files.some((f) => f.endsWith('.dump')) && files.some((f) => f.endsWith('.manifest.json')), files.join(', '));
  for (const f of files) assert.equal(mode(path.join(backupsDir, f)), '600', `${f} is owner-only`);
  assert.equal(mode(backupsDir), '700');
  assert.ok(!existsSync(path.join(backupsDir, 'filler')));
});
