import { after, before, test } from 'node:test';
import { runCrashCase, type CrashCase } from './support/crash.js';
import { startTestTemporal, type TestTemporal } from './support/temporal.js';

// The steps of the frozen-copy backup method (issue 12): the worker is SIGKILLed during the copy
// made while the app is stopped, during the pg_dump written from the copy after the cutover, and
// during the rollback's swap of the copy (and, for the fallback, of a pg_restore'd database). A
// new worker must take the run to the right end state: upgraded with one verified backup, or
// rolled back to exactly the pre-upgrade database.
const FROZEN_COPY_CRASHES: CrashCase[] = [
  // Held after sending the CREATE DATABASE, before its answer: the server finishes the copy (or
  // is still making it) for a worker that is gone; the next attempt must wait for it or reuse it.
  { name: 'during the frozen copy (CREATE DATABASE ... TEMPLATE sent, no answer seen)', target: 'v0.2.0', failpoint: 'freeze.duringCopy' },
  { name: 'right after the frozen copy, before its record', target: 'v0.2.0', failpoint: 'freeze.afterCopy' },
  { name: 'during the pg_dump from the frozen copy, after the cutover', target: 'v0.2.0', failpoint: 'portableBackup.afterDump' },
  { name: 'during the swap of the frozen copy, between the renames', target: 'v0.3.0', failpoint: 'restore.betweenRenames' },
  { name: 'before the swap of the frozen copy', target: 'v0.3.0', failpoint: 'restore.beforeSwap' },
  {
    name: 'during the swap after pg_restore (backups.method dump-while-stopped)',
    target: 'v0.3.0',
    failpoint: 'restore.betweenRenames',
    profile: (p) => (p.backups.method = 'dump-while-stopped'),
  },
];

let temporal: TestTemporal;
before(async () => {
  temporal = await startTestTemporal();
});
after(async () => {
  await temporal?.dispose();
});

FROZEN_COPY_CRASHES.forEach((c, i) => {
  test(`worker killed ${c.name}: the run still ends in the right state`, async () => {
    const outcome = await runCrashCase(temporal, `crashfz${i}`, c);
    process.stderr.write(`# crash ${c.name}: step resumed ${outcome.resumeMs} ms and progressed ${outcome.recoveryMs} ms after SIGKILL\n`);
  });
});
