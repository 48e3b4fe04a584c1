import assert from 'node:assert/strict';
import { test } from 'node:test';
import { progressText, renderProgress } from '../src/client/progress.js';

test('a long step\'s heartbeat reads as progress in status', () => {
  assert.equal(
    progressText({ step: 'event-log digest', rows: 1_200_000, ofRows: 4_000_000, lastLogSeq: 1_250_000 }),
    'event-log digest: 1,200,000 of ~4,000,000 rows (~30%), at log_seq 1250000',
  );
  assert.equal(progressText({ step: 'event-log digest', rows: 20_000 }), 'event-log digest: 20,000 rows');
  assert.equal(progressText('pg_restore'), 'pg_restore');
  assert.equal(progressText(undefined), undefined);
  assert.deepEqual(renderProgress([{ activity: 'verifyRestored', attempt: 2, detail: 'verify: row counts' }]), ['  in progress: verifyRestored (attempt 2): verify: row counts']);
});
