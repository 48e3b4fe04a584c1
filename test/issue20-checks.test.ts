import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import type { ResolvedDeployment } from '../src/config/profile.js';
import type { BackupManifest } from '../src/domain/types.js';
import { backupDirProblem } from '../src/activities/backupDirCheck.js';
import { checkSeal, sealKeyPathOf, sealManifest } from '../src/database/manifestSeal.js';
import { readManifest } from '../src/database/postgres.js';

// Issue 20, items 4 and 5, the parts that need no Temporal: manifest seals and the backup dir check.
const tmp = mkdtempSync(path.join(os.tmpdir(), 'dgu-issue20-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const deployment = (name = 'sealtest') => ({ name, stateDir: path.join(tmp, 'state'), profile: { backups: { dir: path.join(tmp, 'backups') } } }) as unknown as ResolvedDeployment;

function manifest(): BackupManifest {
  return {
    id: 'b1', deployment: 'sealtest', kind: 'pre-upgrade', createdAt: new Date().toISOString(), file: '/x/b1.dump', sizeBytes: 10, sha256: 'ab',
    database: 'db', gitSha: 'a'.repeat(40), gitTag: undefined, environment: 'prod', migrationVersions: ['1', '2'], rowCounts: { dg_event_log: 5 },
    eventLog: { maxLogSeq: 5, rowCount: 5, checksum: 'c' }, workflowId: 'w', verified: { at: 'now', tocEntries: 3 },
  };
}

test('a sealed manifest verifies after a JSON round trip; every edited figure breaks the seal', () => {
  const d = deployment();
  const sealed = JSON.parse(JSON.stringify(sealManifest(d, manifest()), null, 2)) as BackupManifest;
  assert.equal(checkSeal(d, sealed, 'm.json').state, 'sealed');
  assert.equal(statSync(sealKeyPathOf(d)).mode & 0o777, 0o600, 'the key is 0600');
  assert.equal(statSync(path.dirname(sealKeyPathOf(d))).mode & 0o777, 0o700, 'its dir is 0700');
  const edits: Array<(m: any) => void> = [
    (m) => (m.eventLog.rowCount = 4),
    (m) => (m.eventLog.maxLogSeq = 99),
    (m) => (m.rowCounts.dg_event_log = 1),
    (m) => (m.gitSha = 'b'.repeat(40)),
    (m) => (m.gitTag = 'v9'),
  ];
  for (const edit of edits) {
    const m = structuredClone(sealed);
    edit(m);
    const c = checkSeal(d, m, '/backups/b1.manifest.json');
    assert.equal(c.state, 'bad');
    assert.match((c as { problem: string }).problem, /\/backups\/b1\.manifest\.json: the seal does not match/);
  }
  // Removing the seal of a manifest written after the key existed is seen as such.
  const stripped = structuredClone(sealed) as any;
  delete stripped.seal;
  const c = checkSeal(d, stripped, 'm.json');
  assert.equal(c.state, 'bad');
  assert.match((c as { problem: string }).problem, /seal was removed/);
  // An older manifest (before the key existed) is unsealed, not bad.
  stripped.createdAt = '2020-01-01T00:00:00.000Z'; // before the key's first manifest
  assert.equal(checkSeal(d, stripped, 'm.json').state, 'unsealed');
  // Another deployment's key cannot vouch for it.
  const other = deployment('other');
  sealManifest(other, manifest());
  const elsewhere = checkSeal(other, sealed, 'm.json');
  assert.equal(elsewhere.state, 'bad');
  assert.match((elsewhere as { problem: string }).problem, /sealed with another key/);
});

test('an unreadable or malformed manifest names its file', () => {
  const file = path.join(tmp, 'broken.manifest.json');
  writeFileSync(file, '{"id": "b1", ');
  assert.throws(() => readManifest(file), (e: Error) => e.message.includes(file) && /not valid JSON/.test(e.message));
  writeFileSync(file, JSON.stringify({ id: 'b1' }));
  assert.throws(() => readManifest(file), (e: Error) => e.message.includes(file) && /malformed: .*"deployment"/.test(e.message));
  assert.throws(() => readManifest(path.join(tmp, 'missing.manifest.json')), (e: Error) => e.message.includes('missing.manifest.json'));
});

test('the backup dir check: created 0700 when missing, and refuses ENOTDIR, ELOOP, EROFS and a file, naming the path', () => {
  const fresh = path.join(tmp, 'new', 'backups');
  assert.deepEqual(backupDirProblem(fresh), { created: true });
  assert.equal(statSync(fresh).mode & 0o777, 0o700);
  assert.deepEqual(readdirSync(fresh), [], 'the probe file is removed');
  assert.deepEqual(backupDirProblem(fresh), { created: false });

  const file = path.join(tmp, 'a-file');
  writeFileSync(file, 'x');
  assert.match(String(backupDirProblem(path.join(file, 'backups'))), /ENOTDIR/);
  assert.match(String(backupDirProblem(file)), /is not a directory/);

  const loop = path.join(tmp, 'loop');
  symlinkSync(path.join(tmp, 'loop2'), loop);
  symlinkSync(loop, path.join(tmp, 'loop2'));
  assert.match(String(backupDirProblem(path.join(loop, 'backups'))), /ELOOP/);

  if (process.getuid?.() === 0) {
    const ro = path.join(tmp, 'ro');
    mkdirSync(ro);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', ro]);
    try {
      const problem = String(backupDirProblem(ro));
      assert.match(problem, /EROFS/);
      assert.match(problem, /read-only/);
      assert.match(String(backupDirProblem(path.join(ro, 'sub'))), /EROFS/);
    } finally {
      execFileSync('umount', ['-l', ro]);
    }
  }
});
