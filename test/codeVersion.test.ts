import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderRunCode, runCodeOfHistory } from '../src/client/codeVersion.js';
import { recordedHistories } from './support/replay.js';

test('the build a run started on and is on now come from its WorkflowTaskCompleted events', () => {
  const approved = recordedHistories().find((h) => h.name === '0.1.0-bbe888c/approved.json')!;
  const code = runCodeOfHistory(approved.json as any);
  // Workers of 0.1.0 had no build ID of their own: the SDK's default names the bundle by its hash.
  assert.match(code.current!, /^@temporalio\/worker@1\.24\.0\+[0-9a-f]{64}$/);
  assert.equal(code.startedOn, code.current);
  assert.equal(code.builds.length, 1);
  assert.ok(code.builds[0]!.workflowTasks > 5);
  assert.equal(renderRunCode(code), `Code: ${code.current}`);
});

test('a run taken over by another build shows both, in order', () => {
  const task = (buildId: string) => ({ workflowTaskCompletedEventAttributes: { workerVersion: { buildId } } });
  const code = runCodeOfHistory({ events: [task('a'), {}, task('a'), task('b'), {}, task('b'), task('b')] });
  assert.deepEqual(code, { startedOn: 'a', current: 'b', builds: [{ buildId: 'a', workflowTasks: 2 }, { buildId: 'b', workflowTasks: 3 }] });
  assert.equal(renderRunCode(code), 'Code: b (started on a; builds in order: a x2, b x3)');
  assert.equal(renderRunCode(runCodeOfHistory({ events: [] })), 'Code: no workflow task completed yet');
});
