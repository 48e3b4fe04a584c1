import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { bundleWorkflowCode, DefaultLogger } from '@temporalio/worker';
import { loadWorkflowCode } from '../src/worker/workflowCode.js';
import { WORKFLOWS_PATH } from '../src/worker/bundle.js';
import { PROJECT_ROOT } from './support/e2e.js';
import { recordedHistories, replayHistories } from './support/replay.js';

// Offline: no Temporal server. The histories are those of the previous release's runs
// (test/fixtures/histories/*/index.json); docs/workflow-changes.md says why and how to re-record.
const histories = recordedHistories();

test('every recorded history of the previous release replays on the current workflow code', async () => {
  assert.ok(histories.length >= 8, `at least 8 recorded histories, found ${histories.length}`);
  const current = await loadWorkflowCode({});
  const failures = await replayHistories(current.code, histories);
  assert.deepEqual(failures.map((f) => f.message), [], `workflow code ${current.buildId} (${current.origin}) is not deterministic against recorded histories; guard the change with patched() (docs/workflow-changes.md)`);
});

test('a deliberately non-deterministic change of the upgrade workflow fails the replay, naming the histories', async () => {
  // Copy of the current compiled workflows whose `upgrade` starts with a timer the recorded runs never had.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dgu-nondeterministic-'));
  try {
    const src = path.dirname(path.dirname(WORKFLOWS_PATH)); // dist/src
    cpSync(path.join(src, 'workflows'), path.join(dir, 'workflows'), { recursive: true });
    for (const part of ['config', 'domain']) cpSync(path.join(src, part), path.join(dir, part), { recursive: true });
    symlinkSync(path.join(PROJECT_ROOT, 'node_modules'), path.join(dir, 'node_modules'));
    renameSync(path.join(dir, 'workflows', 'index.js'), path.join(dir, 'workflows', 'original-index.js'));
    writeFileSync(
      path.join(dir, 'workflows', 'index.js'),
      [
        `import { sleep } from '@temporalio/workflow';`,
        `import { upgrade as originalUpgrade } from './original-index.js';`,
        `export * from './original-index.js';`,
        `export async function upgrade(...args) { await sleep(1); return originalUpgrade(...args); }`,
      ].join('\n'),
    );
    const { code } = await bundleWorkflowCode({ workflowsPath: path.join(dir, 'workflows', 'index.js'), logger: new DefaultLogger('WARN') });
    const failures = await replayHistories(code, histories);
    const upgradeRuns = histories.filter((h) => h.workflowType === 'upgrade');
    assert.ok(upgradeRuns.length >= 8);
    for (const h of upgradeRuns) {
      const failure = failures.find((f) => f.name === h.name);
      assert.ok(failure, `${h.name} replays on the broken code, but it must not`);
      assert.match(failure.message, new RegExp(`^${h.name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\[`), 'the failure names the history');
      assert.match(failure.message, /[Nn]ondetermin/, 'the failure is a non-determinism error');
      // The inserted timer is the first command; a history whose first event is a patch marker
      // (a run that took a patched branch before anything else) diverges there instead.
      assert.match(failure.message, /StartTimer|Timer|patch marker encountered for change [\w-]+, but there is no corresponding change command/, `the failure names the divergent command: ${failure.message}`);
    }
    const unaffected = histories.filter((h) => !failures.some((f) => f.name === h.name));
    assert.ok(unaffected.length > 0, 'runs of the other workflows (rollback, rebuildProjections) still replay');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the committed code A of the worker roll-out test is the code the histories were recorded from', async () => {
  // test/fixtures/workflows-bbe888c is what test/worker-rollout.e2e.test.ts runs as the previous release.
  const { code } = await bundleWorkflowCode({ workflowsPath: path.join(PROJECT_ROOT, 'test', 'fixtures', 'workflows-bbe888c', 'workflows', 'index.js'), logger: new DefaultLogger('WARN') });
  const failures = await replayHistories(code, histories.filter((h) => h.name.startsWith('0.1.0-bbe888c/')));
  assert.deepEqual(failures.map((f) => f.message), []);
});
