import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classifyFailure } from '../src/domain/classifyFailure.js';
import { decideRecoveryPath, type RecoveryFacts } from '../src/domain/recoveryRule.js';
import type { SmokeReport } from '../src/domain/types.js';

const BASE = ['20260307000100', '20260307000200'];
const backup = { id: 'b1', migrationVersions: BASE, eventLog: { maxLogSeq: 28, rowCount: 28 } };

const cases: Array<{ name: string; facts: RecoveryFacts; path: 'rebuild-projections' | 'restore'; reason?: RegExp }> = [
  { name: 'nothing changed', facts: { backup, current: { migrationVersions: BASE, eventLog: { maxLogSeq: 28, rowCount: 28 } } }, path: 'rebuild-projections' },
  { name: 'events written since the backup', facts: { backup, current: { migrationVersions: BASE, eventLog: { maxLogSeq: 31, rowCount: 31 } } }, path: 'rebuild-projections' },
  { name: 'a migration applied', facts: { backup, current: { migrationVersions: [...BASE, '20260314000100'], eventLog: { maxLogSeq: 28, rowCount: 28 } } }, path: 'restore', reason: /applied migration 20260314000100/ },
  { name: 'a migration applied, marked not suspect', facts: { backup, current: { migrationVersions: [...BASE, '20260314000100'], eventLog: { maxLogSeq: 28, rowCount: 28 } }, migrationsNotSuspect: true }, path: 'rebuild-projections', reason: /marked not suspect/ },
  { name: 'high-water mark below the backup', facts: { backup, current: { migrationVersions: BASE, eventLog: { maxLogSeq: 20, rowCount: 28 } } }, path: 'restore', reason: /high-water mark 20 is below the backup's 28/ },
  { name: 'fewer event rows than the backup', facts: { backup, current: { migrationVersions: BASE, eventLog: { maxLogSeq: 28, rowCount: 27 } } }, path: 'restore', reason: /27 rows, fewer than the backup's 28/ },
  { name: 'a backup migration missing now', facts: { backup, current: { migrationVersions: [BASE[0]!], eventLog: { maxLogSeq: 28, rowCount: 28 } } }, path: 'restore', reason: /missing from the live database/ },
  { name: 'not suspect does not excuse a lost event', facts: { backup, current: { migrationVersions: [...BASE, '9'], eventLog: { maxLogSeq: 27, rowCount: 27 } }, migrationsNotSuspect: true }, path: 'restore', reason: /events were lost/ },
];

for (const c of cases) {
  test(`recovery rule: ${c.name} -> ${c.path}`, () => {
    const decision = decideRecoveryPath(c.facts);
    assert.equal(decision.path, c.path, decision.reasons.join('; '));
    if (c.reason) assert.match(decision.reasons.join('; '), c.reason);
  });
}

function smoke(failed: Array<{ name: SmokeReport['checks'][number]['name']; projectionSymptom?: boolean }>): SmokeReport {
  const names = ['healthz', 'projections', 'console', 'replay', 'traces-workflows'] as const;
  return {
    passed: failed.length === 0,
    checkedAt: '',
    observations: {},
    checks: names.map((name) => {
      const f = failed.find((x) => x.name === name);
      return { name, passed: !f, latencyMs: 1, reason: '', projectionSymptom: f?.projectionSymptom };
    }),
  };
}

test('failure classes: projection-only only when projection data alone failed and no migration ran', () => {
  const projOnly = smoke([{ name: 'projections', projectionSymptom: true }, { name: 'traces-workflows', projectionSymptom: true }]);
  assert.deepEqual(classifyFailure({ failedStep: 'smoke', backupTaken: true, pendingMigrations: 0, smoke: projOnly }).kind, 'projection-only');
  assert.equal(classifyFailure({ failedStep: 'smoke', backupTaken: true, pendingMigrations: 0, smoke: projOnly }).path, 'rebuild-projections');
  assert.equal(classifyFailure({ failedStep: 'smoke', backupTaken: true, pendingMigrations: 1, smoke: projOnly }).path, 'restore', 'a migration ran');
  const consoleBroken = smoke([{ name: 'console' }, { name: 'replay' }]);
  assert.equal(classifyFailure({ failedStep: 'smoke', backupTaken: true, pendingMigrations: 0, smoke: consoleBroken }).kind, 'unclear');
  assert.equal(classifyFailure({ failedStep: 'smoke', backupTaken: true, pendingMigrations: 0, smoke: consoleBroken }).path, 'restore');
  assert.equal(classifyFailure({ failedStep: 'migrate', backupTaken: true, pendingMigrations: 2 }).kind, 'schema');
  assert.equal(classifyFailure({ failedStep: 'startNew', backupTaken: true, pendingMigrations: 0 }).path, 'restore', 'unclear means full restore');
  assert.equal(classifyFailure({ failedStep: 'build', backupTaken: false, pendingMigrations: 1 }).path, 'restart-old');
});
