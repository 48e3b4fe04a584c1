import { after, before, test } from 'node:test';
import { runCrashCase, UPGRADE_CRASHES } from './support/crash.js';
import { startTestTemporal, type TestTemporal } from './support/temporal.js';

// The worker is SIGKILLed at each step of a good upgrade (v0.1.0 -> v0.2.0); a new worker
// must take the run to the upgraded end state.
let temporal: TestTemporal;
before(async () => {
  temporal = await startTestTemporal();
});
after(async () => {
  await temporal?.dispose();
});

UPGRADE_CRASHES.forEach((c, i) => {
  test(`worker killed ${c.name}: the upgrade still completes`, async () => {
    const outcome = await runCrashCase(temporal, `crashup${i}`, c);
    process.stderr.write(`# crash ${c.name}: step resumed ${outcome.resumeMs} ms and progressed ${outcome.recoveryMs} ms after SIGKILL\n`);
  });
});
