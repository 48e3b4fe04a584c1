import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  completeCopyHead,
  migrationErrorLine,
  migrationTimings,
  predictDowntime,
  rehearsalCopyComment,
  rehearsalDatabaseName,
  rehearsalLine,
} from '../src/domain/rehearsal.js';

// The pure parts of the rehearsal (issue 21): names, the migration log's timings, the prediction.

const LOG = `12:00:01.100 [info] == Running 20260321000100 DecisionGraph.Store.Repo.Migrations.CreateDgTraceAnnotations.change/0 forward
12:00:01.150 [info] create table dg_trace_annotations
12:00:01.400 [info] == Migrated 20260321000100 in 0.3s
12:00:01.410 [info] == Running 20260321000200 DecisionGraph.Store.Repo.Migrations.BackfillTraceAnnotations.change/0 forward
** (Postgrex.Error) ERROR 42703 (undefined_column) column "annotation" does not exist`;

test('each migration is timed from its log lines; the one without "Migrated" failed', () => {
  const ended = Date.UTC(2026, 11, 1, 12, 0, 2, 10);
  const t = migrationTimings(LOG, { startedMs: ended - 1500, endedMs: ended });
  assert.deepEqual(t, [
    { version: '20260321000100', name: 'CreateDgTraceAnnotations', ms: 300 },
    { version: '20260321000200', name: 'BackfillTraceAnnotations', ms: 600, failed: true },
  ]);
  assert.equal(migrationErrorLine(LOG), '** (Postgrex.Error) ERROR 42703 (undefined_column) column "annotation" does not exist');
});

test("without clock stamps, Ecto's own rounded figure is the time", () => {
  const t = migrationTimings('== Running 1 Foo.change/0 forward\n== Migrated 1 in 1.2s\n');
  assert.deepEqual(t, [{ version: '1', name: 'Foo', ms: 1200 }]);
});

test('the copy name keeps within 63 bytes; its completion comment records the head', () => {
  const long = 'x'.repeat(70);
  const name = rehearsalDatabaseName(long, 'abcd1234');
  assert.equal(name.length, 63);
  assert.ok(name.endsWith('_rehearsal_abcd1234'));
  assert.equal(completeCopyHead(rehearsalCopyComment('live', 'abcd1234', 657)), 657);
  assert.equal(completeCopyHead(null), undefined, 'a half copy has no comment');
  assert.equal(completeCopyHead('dg-upgrade: frozen copy of backup x'), undefined);
});

test('the predicted downtime is the sum of its measured parts', () => {
  const frozen = predictDowntime({ stopMs: 300, migrateMs: 800, startMs: 1200, backupMethod: 'frozen-copy', fileCopyMs: 150, liveBytes: 8 << 20 });
  assert.equal(frozen.totalMs, 2450);
  assert.deepEqual(frozen.parts, { stopMs: 300, backupMs: 150, migrateMs: 800, startMs: 1200 });
  const dump = predictDowntime({ stopMs: 300, migrateMs: 800, startMs: 1200, backupMethod: 'dump-while-stopped', liveBytes: 100_000_000, dumpBytesPerSecond: 50_000_000 });
  assert.equal(dump.parts.backupMs, 2000);
});

test('a failed rehearsal is shown in capitals', () => {
  const line = rehearsalLine({ passed: false, targetRef: 'v0.2.1', failure: { step: 'migrateCopy', message: 'migration 20260321000200 failed: x\nmore' } });
  assert.equal(line, 'REHEARSAL FAILED AT MIGRATECOPY: MIGRATION 20260321000200 FAILED: X');
});

test("a log in local time (not UTC): the failed migration gets what is left of the command's wall time", () => {
  const ended = Date.UTC(2026, 11, 1, 15, 0, 2, 10); // three hours off the log's clock
  const t = migrationTimings(LOG, { startedMs: ended - 1500, endedMs: ended });
  assert.equal(t[1]!.ms, 1200);
});

test('profile rehearsal: defaults filled in; a bad policy or timeout is refused naming the field', async () => {
  const { readFileSync } = await import('node:fs');
  const path = await import('node:path');
  const { parseProfileFile } = await import('../src/config/profile.js');
  const { PROJECT_ROOT } = await import('./support/e2e.js');
  const example = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'examples', 'profile.example.json'), 'utf8'));
  assert.equal(parseProfileFile(example, 'p.json').deployments.sample!.rehearsal, undefined, 'absent: off');
  example.deployments.sample.rehearsal = { policy: 'required' };
  assert.deepEqual(parseProfileFile(example, 'p.json').deployments.sample!.rehearsal, { policy: 'required', keepCopyOnFailure: false, stageTimeout: '30m' });
  example.deployments.sample.rehearsal = { policy: 'sometimes', stageTimeout: '0s' };
  assert.throws(() => parseProfileFile(example, 'p.json'), (err: Error) => {
    assert.match(err.message, /deployments\.sample\.rehearsal\.policy: .*"required".*"advisory".*"off"/);
    assert.match(err.message, /deployments\.sample\.rehearsal\.stageTimeout: a positive duration, at least "1s"/);
    return true;
  });
});
