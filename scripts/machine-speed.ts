/**
 * One line on how fast this machine is right now, for the test log: CI's machine has run the
 * same suite in 19 and in 68 minutes, and a failure on a slow run reads differently.
 *
 *   node dist/scripts/machine-speed.js <label>
 *
 * cpu: sha256 over 256 MiB in this process. commits: 200 one-row INSERTs, each its own
 * transaction (a WAL flush each) on the local PostgreSQL. Figures of a quiet session machine
 * are printed beside them.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { withAdmin } from '../test/support/postgres.js';

// Measured on a quiet session machine on 2026-12-01 (three runs: 159-169 ms, 112-164 ms).
const QUIET = { cpuMs: 165, commitsMs: 140 };

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

const label = process.argv[2] ?? 'now';
const cpu = cpuMs();
const commits = await commitsMs().catch(() => NaN);
const ratio = (v: number, q: number) => (Number.isFinite(v) ? `${(v / q).toFixed(1)}x` : '?');
console.log(
  `test: machine ${label}: cpu ${cpu.toFixed(0)} ms (${ratio(cpu, QUIET.cpuMs)} a quiet machine's ${QUIET.cpuMs}), ` +
    `200 commits ${Number.isFinite(commits) ? commits.toFixed(0) : 'unmeasured'} ms (${ratio(commits, QUIET.commitsMs)} of ${QUIET.commitsMs})`,
);
