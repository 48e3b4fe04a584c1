import { after, before, test } from 'node:test';
import { ROLLBACK_CRASHES, runCrashCase } from './support/crash.js';
import { startTestTemporal, type TestTemporal } from './support/temporal.js';

// The worker is SIGKILLed at each step of the rollback of a bad upgrade (v0.3.0 fails its
// smoke checks); a new worker must take the run to the rolled-back end state.
let temporal: TestTemporal;
before(async () => {
  temporal = await startTestTemporal();
});
after(async () => {
  await temporal?.dispose();
});

ROLLBACK_CRASHES.forEach((c, i) => {
  test(`worker killed ${c.name}: the rollback still completes`, async () => {
    const outcome = await runCrashCase(temporal, `crashrb${i}`, c);
    process.stderr.write(`# crash ${c.name}: step resumed ${outcome.resumeMs} ms and progressed ${outcome.recoveryMs} ms after SIGKILL\n`);
  });
});
