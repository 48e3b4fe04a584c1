/**
 * One line on how fast this machine is right now, for the test log: CI's machine has run the
 * same suite in 19 and in 68 minutes, and a failure on a slow run reads differently.
 *
 *   node dist/scripts/machine-speed.js <label>
 *
 * cpu: sha256 over 256 MiB in this process, then on two threads at once (the suite keeps both
 * cores busy; a host may give two busy vCPUs less than two cores' time). js: JSON round trips of
 * small objects. commits: 200 one-row INSERTs, each its own transaction (a WAL flush each) on the
 * local PostgreSQL. Figures of a quiet session machine
 * are printed beside them.
 */
import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import pg from 'pg';
import { withAdmin } from '../test/support/postgres.js';

// This session's machine, idle, on 2026-12-01 (three runs each: sha256 159-169 ms, js 112-117 ms,
// commits 112-164 ms); the suite then took 58 minutes and 4603 CPU-s on it, against 19 minutes
// and 1322 CPU-s on the machine of the landing before (not probed): whether these figures tell
// such machines apart, the next logs will say.
const QUIET = { cpuMs: 165, jsMs: 115, commitsMs: 140 };

function cpuMs(): number {
  const chunk = Buffer.alloc(1 << 20, 7);
  const t0 = performance.now();
  const h = createHash('sha256');
  for (let i = 0; i < 256; i++) h.update(chunk);
  h.digest();
  return performance.now() - t0;
}

async function commitsMs(): Promise<number> {
  return withAdmin(async (c: pg.Client) => {
    // Not a temporary table: those are not WAL-logged, and the flush is what is timed.
    await c.query('DROP TABLE IF EXISTS public.dgu_machine_speed; CREATE TABLE public.dgu_machine_speed (n int)');
    try {
      const t0 = performance.now();
      for (let i = 0; i < 200; i++) await c.query('INSERT INTO public.dgu_machine_speed VALUES ($1)', [i]);
      return performance.now() - t0;
    } finally {
      await c.query('DROP TABLE public.dgu_machine_speed');
    }
  });
}

/** Plain JavaScript (objects, strings, JSON), as most of the suite's own CPU is: sha256 runs on the CPU's SHA instructions and may not tell. */
function jsMs(): number {
  const t0 = performance.now();
  let n = 0;
  for (let i = 0; i < 20_000; i++) {
    const o = { id: `evt-${i}`, seq: i, payload: { tags: ['a', 'b', String(i)], note: 'x'.repeat(i % 64) } };
    n += (JSON.parse(JSON.stringify(o)) as typeof o).payload.tags.length;
  }
  if (n < 0) throw new Error('unreachable');
  return performance.now() - t0;
}

/** The same hashing on two threads at once: on a host that runs two busy vCPUs as less than two cores it takes longer than one. */
async function twoThreadsMs(): Promise<number> {
  const code = `const { createHash } = require('node:crypto');
    require('node:worker_threads').parentPort.postMessage((${cpuMs.toString()})());`;
  const one = () =>
    new Promise<number>((resolve, reject) => {
      const w = new Worker(code, { eval: true });
      w.once('message', (ms: number) => void w.terminate().then(() => resolve(ms)));
      w.once('error', reject);
    });
  const times = await Promise.all([one(), one()]);
  return Math.max(...times);
}

const label = process.argv[2] ?? 'now';
const cpu = cpuMs();
const js = jsMs();
const both = await twoThreadsMs().catch(() => NaN);
const commits = await commitsMs().catch(() => NaN);
const ratio = (v: number, q: number) => (Number.isFinite(v) ? `${(v / q).toFixed(1)}x` : '?');
console.log(
  `test: machine ${label}: cpu ${cpu.toFixed(0)} ms (${ratio(cpu, QUIET.cpuMs)} a quiet machine's ${QUIET.cpuMs}), ` +
    `js ${js.toFixed(0)} ms (${ratio(js, QUIET.jsMs)} of ${QUIET.jsMs}), ` +
    `on both cores at once ${Number.isFinite(both) ? both.toFixed(0) : '?'} ms (${ratio(both, cpu)} of one alone), ` +
    `200 commits ${Number.isFinite(commits) ? commits.toFixed(0) : 'unmeasured'} ms (${ratio(commits, QUIET.commitsMs)} of ${QUIET.commitsMs})`,
);
