import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

const memoryModule = fileURLToPath(new URL('../src/worker/memory.js', import.meta.url));

/**
 * A process shaped like a worker in the middle of a whole-database read: about 60 MB it holds
 * (the worker holds about 40-60), then 300 batches of 2,000 row objects (about 1 MB each) that
 * live for ten batches and are dropped, so they reach V8's old generation before they die, as
 * the rows of a dump being read do. Prints its peak JS heap and the collections the watcher ran.
 */
function churn(growthMb: number): { peakHeapMb: number; collections: number } {
  const script = `
    const { watchMemory } = await import(${JSON.stringify(memoryModule)});
    const w = watchMemory({ growthMb: ${growthMb} });
    const held = Array.from({ length: 60 }, (_, i) => Array.from({ length: 2500 }, (_, k) => (i + ':' + k + ':').padEnd(400, 'y')));
    const recent = new Array(10);
    let peak = 0;
    for (let i = 0; i < 300; i++) {
      recent[i % recent.length] = Array.from({ length: 2000 }, (_, k) => ({ k, line: (i + '\\t' + k + '\\t').padEnd(400, 'x') }));
      await new Promise((r) => setTimeout(r, 10));
      peak = Math.max(peak, process.memoryUsage().heapUsed);
    }
    console.log(JSON.stringify({ peakHeapMb: peak / 1e6, collections: w.collections(), held: held.length }));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

test('the worker collects the garbage of a whole-database read before it piles up: its heap stays near what it holds', () => {
  const unwatched = churn(0);
  const watched = churn(32);
  assert.equal(unwatched.collections, 0);
  assert.ok(watched.collections >= 1, `collections run by the watcher: ${watched.collections}`);
  const text = `peak JS heap with the watcher ${watched.peakHeapMb.toFixed(0)} MB (${watched.collections} collections), without ${unwatched.peakHeapMb.toFixed(0)} MB`;
  // About 70 MB held, 32 MB of growth allowed, a 500 ms check: about 110 MB at most with the watcher.
  assert.ok(watched.peakHeapMb < 130, text);
  assert.ok(watched.peakHeapMb < unwatched.peakHeapMb - 40, text);
});
