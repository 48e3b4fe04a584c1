import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { createRunningDeployment, databaseFacts, editProfile, getJson, listDatabases, processesWithEnv, type CliResult, type E2eDeployment } from './support/e2e.js';
import { ADMIN_DATABASE_URL, databaseUrlFor } from './support/postgres.js';
import { startTestTemporal, type TestTemporal } from './support/temporal.js';
import { eventLogRows, startTraffic } from './support/traffic.js';

// Issue 21: `dg-upgrade rehearse` runs the upgrade's database side on a copy of the live database
// while the old version serves. A failing migration and a failing smoke check are caught there,
// with their own errors, while a 20 Hz prober sees no failed probe and the live database, the
// checkout and the runtime stay exactly as they were; nothing of the rehearsal is left behind.

let temporal: TestTemporal;
let d: E2eDeployment;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  temporal = await startTestTemporal();
  d = await createRunningDeployment(temporal, 'reh');
});
after(async () => {
  if (d) for (const db of await listDatabases(copyPrefix())) await dropDatabase(db);
  await d?.dispose();
  await temporal?.dispose();
});

function copyPrefix(): string {
  return `${d.db.name.slice(0, 44)}_rehearsal_`;
}

async function dropDatabase(name: string): Promise<void> {
  const c = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
  await c.connect();
  try {
    await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  } finally {
    await c.end();
  }
}

function errorLine(r: CliResult): string {
  return r.stderr.split('\n').find((l) => l.startsWith('dg-upgrade: error: ')) ?? '';
}

/** Polls /api/healthz every 50 ms while `fn` runs; returns what fn returned and every failed probe. */
async function whileServing<T>(fn: () => Promise<T>): Promise<{ value: T; outages: string[]; versions: Set<string>; probes: number }> {
  const outages: string[] = [];
  const versions = new Set<string>();
  let stop = false;
  let probes = 0;
  const poller = (async () => {
    while (!stop) {
      probes++;
      try {
        const h = await getJson(`http://127.0.0.1:${d.port}/api/healthz`);
        if (h.status !== 200) outages.push(`${new Date().toISOString()} HTTP ${h.status}`);
        else versions.add(String(h.body.version));
      } catch (err) {
        outages.push(`${new Date().toISOString()} ${(err as Error).message}`);
      }
      await sleep(50);
    }
  })();
  try {
    const value = await fn();
    return { value, outages, versions, probes };
  } finally {
    stop = true;
    await poller;
  }
}

/** What must not change: per-table rows, the event log (max seq and checksum), the checkout, the runtime's pid. */
async function liveState() {
  const facts = await databaseFacts(d.databaseUrl);
  const rows = await eventLogRows(d.databaseUrl);
  const stateDir = d.profile.stateDir;
  const record = JSON.parse(readFileSync(path.join(stateDir, 'runtime', d.name, 'runtime.json'), 'utf8'));
  const profile = d.profile.deployments[d.name]!;
  const releasesDir = profile.releasesDir ?? path.join(path.dirname(profile.repoPath), `${d.name}-releases`);
  const link = path.join(releasesDir, 'current');
  return {
    versions: facts.versions,
    rowCounts: facts.rowCounts,
    eventLogChecksum: facts.eventLogChecksum,
    maxSeq: rows.at(-1)?.logSeq ?? 0,
    current: existsSync(link) ? readlinkSync(link) : '(no current link)',
    repoHead: execFileSync('git', ['-C', profile.repoPath, 'rev-parse', 'HEAD'], { env: { ...process.env, GIT_CONFIG_GLOBAL: '/dev/null' } }).toString().trim(),
    runtimePid: record.pid as number,
  };
}

async function assertNothingLeft(): Promise<void> {
  assert.deepEqual(await listDatabases(copyPrefix()), [], 'no rehearsal database left');
  assert.deepEqual(processesWithEnv('DG_UPGRADE_RUNTIME', `${d.name}-rehearsal`), [], 'no rehearsal process left');
  const rehearsalsDir = path.join(d.profile.stateDir, 'rehearsals', d.name);
  const left = existsSync(rehearsalsDir) ? execFileSync('ls', ['-A', rehearsalsDir]).toString().trim() : '';
  assert.equal(left, '', 'no rehearsal run dir left');
}

async function rehearse(to: string): Promise<{ r: CliResult; json: any; outages: string[]; versions: Set<string>; probes: number }> {
  const { value: r, outages, versions, probes } = await whileServing(() => d.cli(['rehearse', '--deployment', d.name, '--to', to, '--json']));
  let json: any;
  try {
    json = JSON.parse(r.stdout);
  } catch {
    assert.fail(`rehearse --json printed no JSON: ${r.stdout}\n${r.stderr}`);
  }
  return { r, json, outages, versions, probes };
}

describe('rehearse on a copy while the old version serves', () => {
  test('v0.2.1: the failing migration is caught with its own error; the live install is exactly as before', async () => {
    const before = await liveState();
    const { r, json, outages, versions, probes } = await rehearse('v0.2.1');
    assert.equal(r.exitCode, 1, `${r.stdout}\n${r.stderr}`);
    assert.match(errorLine(r), /rehearsal of v0\.2\.1 failed at migrateCopy/);
    assert.match(errorLine(r), /42703 \(undefined_column\)/);
    assert.equal(json.outcome.failure.step, 'migrateCopy');
    const migrations = json.outcome.migrations as Array<{ version: string; failed?: boolean }>;
    assert.deepEqual(migrations.map((m) => [m.version, m.failed === true]), [
      ['20260314000100', false],
      ['20260321000100', false],
      ['20260321000200', true],
    ]);
    assert.ok(probes > 20, `the prober ran (${probes} probes)`);
    assert.deepEqual(outages, [], 'no failed probe');
    assert.deepEqual([...versions], ['0.1.0']);
    assert.deepEqual(await liveState(), before, 'live database, checkout and runtime exactly as before');
    await assertNothingLeft();
  });

  test('v0.3.0: the failing smoke checks are caught by name; the live install is exactly as before', async () => {
    const before = await liveState();
    const { r, json, outages } = await rehearse('v0.3.0');
    assert.equal(r.exitCode, 1, `${r.stdout}\n${r.stderr}`);
    assert.match(errorLine(r), /failed at smokeCopy: smoke checks failed on v0\.3\.0/);
    assert.match(errorLine(r), /console: console renders an error panel: "Projection health unavailable"/);
    assert.match(errorLine(r), /replay: replay admission answered 500/);
    assert.equal(json.outcome.failure.step, 'smokeCopy');
    assert.deepEqual(outages, [], 'no failed probe');
    assert.deepEqual(await liveState(), before, 'live database, checkout and runtime exactly as before');
    await assertNothingLeft();
  });

  test('v0.2.0 passes and reports each migration, the start and a predicted downtime', async () => {
    const before = await liveState();
    const { r, json, outages } = await rehearse('v0.2.0');
    assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
    const o = json.outcome;
    assert.equal(o.passed, true);
    assert.deepEqual(o.migrations.map((m: any) => m.version), ['20260314000100']);
    assert.ok(o.migrations.every((m: any) => Number.isInteger(m.ms) && m.ms >= 0));
    assert.ok(o.startMs > 0, 'start timed');
    assert.ok(o.stopMs >= 0, 'stop timed');
    assert.equal(o.smoke.passed, true);
    assert.deepEqual(o.smoke.checks.map((c: any) => c.name), ['healthz', 'projections', 'console', 'replay', 'traces-workflows']);
    assert.ok(o.predictedDowntimeMs > 0);
    assert.equal(o.predictedDowntimeMs, o.prediction.parts.stopMs + o.prediction.parts.backupMs + o.prediction.parts.migrateMs + o.prediction.parts.startMs);
    assert.ok(o.fileCopyMs >= 0, 'the frozen copy measured by a raw FILE_COPY');
    assert.deepEqual(outages, [], 'no failed probe');
    assert.deepEqual(await liveState(), before, 'live database, checkout and runtime exactly as before');
    await assertNothingLeft();
  });

  test('under 50 writes/s: no write refused, the copy kept on failure is a prefix of the live event log', async () => {
    const restore = editProfile(d, (x) => (x.rehearsal = { policy: 'advisory', keepCopyOnFailure: true }));
    const traffic = startTraffic(d, { rate: 50 });
    let kept: string | undefined;
    try {
      await sleep(1000);
      const { r, json, outages } = await rehearse('v0.2.1');
      const report = await traffic.stop();
      assert.equal(r.exitCode, 1, `${r.stdout}\n${r.stderr}`);
      kept = json.outcome.keptCopy;
      assert.ok(kept?.startsWith(copyPrefix()), `the copy is kept and named: ${kept}`);
      assert.match(errorLine(r), new RegExp(`the copy is kept as ${kept}`));
      assert.deepEqual(report.failed, [], 'no write refused');
      assert.ok(report.confirmed.length > 50, `writes flowed (${report.confirmed.length})`);
      assert.deepEqual(outages, [], 'no failed probe');
      const live = await eventLogRows(d.databaseUrl);
      const copy = await eventLogRows(databaseUrlFor(kept!));
      assert.ok(copy.length > 0 && copy.length < live.length, `the copy holds ${copy.length} events, the live log ${live.length}`);
      assert.deepEqual(copy, live.slice(0, copy.length), 'the copy is a prefix of the live event log');
      assert.equal(copy.at(-1)!.logSeq, json.outcome.copy.eventLogMaxSeq, 'the copy ends at the snapshot head it recorded');
    } finally {
      await traffic.stop().catch(() => undefined);
      restore();
      if (kept) await dropDatabase(kept);
    }
    assert.deepEqual(processesWithEnv('DG_UPGRADE_RUNTIME', `${d.name}-rehearsal`), [], 'no rehearsal process left');
  });
});
