import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { createRunningDeployment, editProfile, getJson, listDatabases, type CliResult, type E2eDeployment, whileServing } from './support/e2e.js';
import { ADMIN_DATABASE_URL } from './support/postgres.js';
import { startTestTemporal, type TestTemporal } from './support/temporal.js';

// Issue 20: what can be checked while the old version serves is checked before the stop.
// (c) a backup dir that cannot be written refuses the plan; (b) a hand-edited manifest fails
// `backups --verify`; (a) a rollback whose backup cannot be restored, or that other clients'
// sessions would block, is refused while the app serves: healthz 200 throughout, nothing renamed.

let temporal: TestTemporal;
let d: E2eDeployment;
let scratch: string;

before(async () => {
  temporal = await startTestTemporal();
  d = await createRunningDeployment(temporal, 'i20');
  scratch = mkdtempSync(path.join(d.dir, 'scratch-'));
});
after(async () => {
  await d?.dispose();
  await temporal?.dispose();
});

function errorLine(r: CliResult): string {
  return r.stderr.split('\n').find((l) => l.startsWith('dg-upgrade: error: ')) ?? '';
}

async function noRunLeft(): Promise<void> {
  const r = await d.cli(['list', '--deployment', d.name, '--state', 'running', '--json']);
  assert.equal(r.exitCode, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), [], 'no run left running');
}

describe('(c) plan refuses a backup dir it cannot write, nothing stopped', () => {
  const cases: Array<{ name: string; dir: () => string; cleanup?: () => void; code: RegExp }> = [];
  let roMount: string | undefined;
  cases.push({
    name: 'read-only filesystem (EROFS)',
    dir: () => {
      roMount = path.join(scratch, 'ro');
      mkdirSync(roMount);
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', roMount]);
      return path.join(roMount, 'backups');
    },
    cleanup: () => roMount && execFileSync('umount', ['-l', roMount]),
    code: /EROFS.*read-only/,
  });
  cases.push({
    name: 'a parent that is a file (ENOTDIR)',
    dir: () => {
      const file = path.join(scratch, 'not-a-dir');
      writeFileSync(file, 'x');
      return path.join(file, 'backups');
    },
    code: /ENOTDIR.*is a file, not a directory/,
  });
  cases.push({
    name: 'a symlink loop (ELOOP)',
    dir: () => {
      symlinkSync(path.join(scratch, 'loop-b'), path.join(scratch, 'loop-a'));
      symlinkSync(path.join(scratch, 'loop-a'), path.join(scratch, 'loop-b'));
      return path.join(scratch, 'loop-a', 'backups');
    },
    code: /ELOOP.*loop of symbolic links/,
  });
  for (const c of cases) {
    test(c.name, async () => {
      const dir = c.dir();
      const restore = editProfile(d, (x) => (x.backups.dir = dir));
      try {
        const { value: r, outages, versions } = await whileServing(d.port, () => d.cli(['plan', '-d', d.name, '--to', 'v0.2.0']));
        assert.equal(r.exitCode, 15, `${r.stdout}\n${r.stderr}`);
        const line = errorLine(r);
        assert.match(line, /refused at plan time, nothing was stopped or changed/);
        assert.ok(line.includes(dir), `names the path ${dir}: ${line}`);
        assert.match(line, c.code);
        assert.deepEqual(outages, [], 'the app served throughout');
        assert.deepEqual([...versions], ['0.1.0']);
        await noRunLeft();
      } finally {
        restore();
        c.cleanup?.();
      }
    });
  }
});

describe('after an upgrade to v0.2.0', () => {
  let manifestFile: string;
  let manifestText: string;
  let manifest: any;

  before(async () => {
    const r = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--yes', '--follow']);
    assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
    const dir = path.join(d.dir, 'backups');
    const name = readdirSync(dir).find((f) => f.endsWith('.manifest.json'))!;
    manifestFile = path.join(dir, name);
    manifestText = readFileSync(manifestFile, 'utf8');
    manifest = JSON.parse(manifestText);
  });

  test('(b) the manifest is sealed and verifies; each hand edit fails --verify naming the seal; an unreadable one names its file', async () => {
    assert.equal(manifest.seal?.alg, 'hmac-sha256', 'sealed');
    const ok = await d.cli(['backups', d.name, '--verify']);
    assert.equal(ok.exitCode, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /VERIFIED/);
    try {
      const edits: Array<[string, (m: any) => void]> = [
        ['eventLog.rowCount', (m) => (m.eventLog.rowCount -= 1)],
        ['eventLog.maxLogSeq', (m) => (m.eventLog.maxLogSeq -= 1)],
        ['rowCounts', (m) => (m.rowCounts.dg_event_log += 5)],
        ['gitSha', (m) => (m.gitSha = m.gitSha.replace(/^./, (c: string) => (c === 'a' ? 'b' : 'a')))],
      ];
      for (const [field, edit] of edits) {
        const m = JSON.parse(manifestText);
        edit(m);
        writeFileSync(manifestFile, JSON.stringify(m, null, 2));
        const r = await d.cli(['backups', d.name, '--verify']);
        assert.equal(r.exitCode, 1, `${field}: ${r.stdout}${r.stderr}`);
        assert.match(r.stdout, /BAD: .*the seal does not match its content: the manifest was edited/, field);
        assert.ok(r.stdout.includes(manifestFile), `${field}: names the file`);
        assert.doesNotMatch(r.stdout, /VERIFIED/);
      }
      writeFileSync(manifestFile, '{"id": "truncated');
      const broken = await d.cli(['backups', d.name, '--verify']);
      assert.notEqual(broken.exitCode, 0);
      assert.ok(errorLine(broken).includes(manifestFile), `the error names the file: ${broken.stderr}`);

      // An older, unsealed manifest (no key yet): cross-checked with the dump, shown UNSEALED.
      const keyFile = path.join(d.dir, 'state', 'keys', `${d.name}.manifest-seal-key.json`);
      assert.ok(existsSync(keyFile), 'the key lives in the state dir');
      renameSync(keyFile, `${keyFile}.away`);
      try {
        const { seal: _seal, ...unsealed } = JSON.parse(manifestText);
        writeFileSync(manifestFile, JSON.stringify(unsealed, null, 2));
        const u = await d.cli(['backups', d.name, '--verify']);
        assert.equal(u.exitCode, 0, u.stdout + u.stderr);
        assert.match(u.stdout, /UNSEALED \(older dg-upgrade\)/);
        assert.doesNotMatch(u.stdout, /VERIFIED/);
        writeFileSync(manifestFile, JSON.stringify({ ...unsealed, eventLog: { ...unsealed.eventLog, rowCount: unsealed.eventLog.rowCount + 7 } }, null, 2));
        const e = await d.cli(['backups', d.name, '--verify']);
        assert.equal(e.exitCode, 1, e.stdout + e.stderr);
        assert.match(e.stdout, /BAD: .*eventLog\.rowCount: the manifest says \d+, the dump holds \d+ events/);
      } finally {
        renameSync(`${keyFile}.away`, keyFile);
      }
    } finally {
      writeFileSync(manifestFile, manifestText);
    }
    const again = await d.cli(['backups', d.name, '--verify']);
    assert.equal(again.exitCode, 0, again.stdout + again.stderr);
  });

  test('(a) frozen copy gone and dump bytes flipped: the rollback is refused before the stop, the app serves throughout, nothing renamed', async () => {
    const admin = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
    await admin.connect();
    try {
      await admin.query(`DROP DATABASE IF EXISTS "${manifest.frozenDatabase}" WITH (FORCE)`);
    } finally {
      await admin.end();
    }
    const dump = manifest.file as string;
    copyFileSync(dump, `${dump}.good`);
    const bytes = readFileSync(dump);
    for (let i = Math.floor(bytes.length / 2); i < Math.floor(bytes.length / 2) + 64 && i < bytes.length; i++) bytes[i] = bytes[i]! ^ 0xff;
    writeFileSync(dump, bytes);
    const databases = await listDatabases(d.db.name);
    try {
      const { value: r, outages, versions } = await whileServing(d.port, () => d.cli(['rollback', '-d', d.name, '--follow']));
      assert.equal(r.exitCode, 14, `${r.stdout}\n${r.stderr}`);
      const all = r.stdout + r.stderr;
      assert.match(all, /rollback refused before anything was stopped/);
      assert.match(all, /frozen copy .* is gone/);
      assert.ok(all.includes(dump), `names the dump file: ${all}`);
      assert.match(all, /sha256 of its pg_dump file .* differs/);
      assert.match(all, /Roll back to another backup/);
      assert.deepEqual(outages, [], 'the app served throughout');
      assert.deepEqual([...versions], ['0.2.0'], 'the upgraded version still serves');
      assert.deepEqual(await listDatabases(d.db.name), databases, 'no database created or renamed');
      const s = JSON.parse((await d.cli(['status', d.name, '--json'])).stdout);
      assert.equal(s.phase, 'failed');
      assert.ok(s.steps.every((x: any) => x.state === 'skipped'), `no step ran: ${JSON.stringify(s.steps)}`);
      await noRunLeft();
    } finally {
      renameSync(`${dump}.good`, dump);
    }
  });

  test('(a) another client connected under policy "refuse": refused before the stop, naming it; without it the rollback runs (the app\'s own sessions are not counted)', async () => {
    const restore = editProfile(d, (x) => (x.database.otherSessions = { policy: 'refuse', timeout: '30s' }));
    const other = new pg.Client({ connectionString: d.databaseUrl, application_name: 'dgu-other-client' });
    await other.connect();
    try {
      const databases = await listDatabases(d.db.name);
      const { value: r, outages, versions } = await whileServing(d.port, () => d.cli(['rollback', '-d', d.name, '--follow']));
      assert.equal(r.exitCode, 15, `${r.stdout}\n${r.stderr}`);
      const all = r.stdout + r.stderr;
      assert.match(all, /rollback refused before anything was stopped.*other session\(s\) connected to database .*dgu-other-client/);
      assert.match(all, /policy to "terminate"/);
      assert.deepEqual(outages, [], 'the app served throughout');
      assert.deepEqual([...versions], ['0.2.0']);
      assert.deepEqual(await listDatabases(d.db.name), databases, 'nothing renamed');
      await noRunLeft();

      await other.end();
      // The app (v0.2.0) holds its own pool on the database: those sessions are the app's, not others'.
      const ok = await d.cli(['rollback', '-d', d.name, '--follow', '--json']);
      assert.equal(ok.exitCode, 0, `${ok.stdout}\n${ok.stderr}`);
      const h = await getJson(`http://127.0.0.1:${d.port}/api/healthz`);
      assert.equal(h.body.version, '0.1.0', 'rolled back from the pg_dump file');
    } finally {
      await other.end().catch(() => {});
      restore();
    }
  });
});

test('a failed step keeps its whole cause in the status (not only its first line)', async () => {
  // Pure check of the helper the step tracker and the rollback's blocked summary use.
  const { causeOf } = await import('../src/workflows/failures.js');
  const err = { message: 'activity failed', cause: { message: '`pg_restore --dbname=x f.dump` exited with 1 in /b:\npg_restore: error: could not read input file: end of file\n' } };
  assert.equal(causeOf(err), '`pg_restore --dbname=x f.dump` exited with 1 in /b: | pg_restore: error: could not read input file: end of file');
});
