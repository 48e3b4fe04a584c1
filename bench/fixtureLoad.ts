/**
 * What the sample target costs under the tests' traffic: the app's and PostgreSQL's CPU seconds
 * while 50 API writes/s flow for a while, and how far its projector is behind at the end. The
 * suite runs up to three such apps at once on 2 cores; on a slow machine an app that needs too
 * much falls behind its writers and the smoke checks (rightly) fail.
 *
 *   node dist/bench/fixtureLoad.js [seconds=60] [rate=50]
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { createSampleDeployment } from '../src/demo/sampleDeployment.js';
import { freePort } from '../test/support/ports.js';
import { createTestDatabase } from '../test/support/postgres.js';
import { startTraffic } from '../test/support/traffic.js';
import { getJson, processesWithEnv } from '../test/support/e2e.js';

const seconds = Number(process.argv[2] ?? 60);
const rate = Number(process.argv[3] ?? 50);
const TICKS = 100; // USER_HZ

/** utime + stime of a process and of its waited-for children, in seconds. */
function cpuOf(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
  return [11, 12, 13, 14].reduce((s, i) => s + Number(fields[i]), 0) / TICKS;
}

/** Every PostgreSQL process's CPU (backends come and go: the sum over those alive at both reads is a floor). */
function postgresCpu(): Map<number, number> {
  const out = new Map<number, number>();
  for (const pid of execFileSync('pgrep', ['-u', 'postgres'], { encoding: 'utf8' }).trim().split('\n').map(Number)) {
    try {
      out.set(pid, cpuOf(pid));
    } catch {
      /* gone */
    }
  }
  return out;
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'dgu-fixture-load-'));
const db = await createTestDatabase('fixtureload');
const d = await createSampleDeployment({ dir, databaseUrl: db.url, port: await freePort(), name: 'fixtureload' });
try {
  await d.bootstrap();
  const [app] = processesWithEnv('PORT', String(d.port));
  if (!app) throw new Error('fixtureLoad: the app process was not found');
  const traffic = startTraffic(d, { rate });
  const appBefore = cpuOf(app);
  const pgBefore = postgresCpu();
  const t0 = Date.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const appCpu = cpuOf(app) - appBefore;
  let pgCpu = 0;
  for (const [pid, after] of postgresCpu()) pgCpu += after - (pgBefore.get(pid) ?? 0);
  const wall = (Date.now() - t0) / 1000;
  const report = await traffic.stop();
  const h = await getJson(`http://127.0.0.1:${d.port}/api/v1/projections/health`, { authorization: `Bearer ${d.secrets.readerToken}`, 'x-tenant-id': 'default' });
  const behind = (h.body?.data?.projections ?? []).map((p: any) => `${p.projection_name} ${p.pending_events}`).join(', ');
  console.log(`fixtureLoad: ${report.confirmed.length} writes confirmed in ${wall.toFixed(0)} s (${rate}/s asked)`);
  console.log(`fixtureLoad: app cpu ${appCpu.toFixed(1)} s (${((100 * appCpu) / wall).toFixed(0)} % of a core), PostgreSQL cpu ${pgCpu.toFixed(1)} s (${((100 * pgCpu) / wall).toFixed(0)} %)`);
  console.log(`fixtureLoad: pending events at the end: ${behind}`);
} finally {
  await d.stopRuntime().catch(() => {});
  await db.drop().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
}
