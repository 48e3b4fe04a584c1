import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { createRunningDeployment, databaseFacts, editProfile, getJson, listDatabases, processesWithEnv, waitForStatus, type CliResult, type E2eDeployment, whileServing } from './support/e2e.js';
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
  const { value: r, outages, versions, probes } = await whileServing(d.port, () => d.cli(['rehearse', '--deployment', d.name, '--to', to, '--json']));
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
    const st = await d.cli(['status', '--workflow-id', json.workflowId, '--json']);
    assert.equal(st.exitCode, 0, st.stderr);
    const status = JSON.parse(st.stdout);
    assert.equal(status.operation, 'rehearse');
    assert.equal(status.outcome, 'passed');
    assert.equal(status.rehearsal.predictedDowntimeMs, o.predictedDowntimeMs, 'status --json shows the result');
    const text = await d.cli(['status', '--workflow-id', json.workflowId]);
    assert.equal(text.exitCode, 0, text.stderr);
    assert.match(text.stdout, /rehearsal passed: migrations 20260314000100 [\d.]+ s; start [\d.]+ s; smoke 5\/5; predicted downtime [\d.]+ s/);
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

/**
 * The upgrade's preflight runs the baseline smoke checks on the live app, whose workflow read
 * writes once (list_inbox's SLA sweep escalates an overdue item: upgrade-refusals.e2e): one read
 * first, so that the live database compared is the one the rehearsal must not touch.
 */
async function settleInbox(): Promise<void> {
  const inbox = await getJson(`http://127.0.0.1:${d.port}/api/v1/workflows`, { authorization: `Bearer ${d.secrets.readerToken}`, 'x-tenant-id': 'default' });
  assert.equal(inbox.status, 200);
}

describe('the upgrade rehearses before its approval (rehearsal.policy)', () => {
  test('required: v0.2.1 is refused before the approval with the migration\'s error, nothing stopped', async () => {
    const restore = editProfile(d, (x) => (x.rehearsal = { policy: 'required' }));
    try {
      await settleInbox();
      const before = await liveState();
      const { value: r, outages } = await whileServing(d.port, () => d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.1', '--yes', '--follow', '--json']));
      assert.equal(r.exitCode, 15, `${r.stdout}\n${r.stderr}`);
      assert.match(errorLine(r), /rehearsal of v0\.2\.1 failed at migrateCopy: .*42703 \(undefined_column\).*refused before the approval \(rehearsal\.policy "required"\), nothing was stopped/);
      const status = JSON.parse(r.stdout).status;
      assert.equal(status.decision, undefined, 'never reached the approval');
      assert.equal(status.plan?.rehearsal, undefined, 'no plan was offered');
      assert.equal(status.steps.find((s: any) => s.name === 'stopOld').state, 'skipped');
      assert.deepEqual(outages, [], 'no failed probe');
      assert.deepEqual(await liveState(), before, 'live database, checkout and runtime exactly as before');
      await assertNothingLeft();
    } finally {
      restore();
    }
  });

  test('required: v0.3.0 is refused the same way, naming the failing smoke checks', async () => {
    const restore = editProfile(d, (x) => (x.rehearsal = { policy: 'required' }));
    try {
      await settleInbox();
      const before = await liveState();
      const { value: r, outages } = await whileServing(d.port, () => d.cli(['upgrade', '-d', d.name, '--to', 'v0.3.0', '--yes', '--follow']));
      assert.equal(r.exitCode, 15, `${r.stdout}\n${r.stderr}`);
      assert.match(errorLine(r), /failed at smokeCopy: smoke checks failed on v0\.3\.0: .*console renders an error panel/);
      assert.deepEqual(outages, [], 'no failed probe');
      assert.deepEqual(await liveState(), before, 'live database, checkout and runtime exactly as before');
      await assertNothingLeft();
    } finally {
      restore();
    }
  });

  test('advisory: v0.2.0 rehearses, the plan carries its timings and predicted downtime under the hash, then upgrades', async () => {
    const restore = editProfile(d, (x) => (x.rehearsal = { policy: 'advisory' }));
    try {
      const started = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--json']);
      assert.equal(started.exitCode, 0, `${started.stdout}\n${started.stderr}`);
      const planned = JSON.parse(started.stdout).status;
      const rehearsal = planned.plan.rehearsal;
      assert.equal(rehearsal.passed, true, JSON.stringify(rehearsal));
      assert.deepEqual(rehearsal.migrations.map((m: any) => m.version), ['20260314000100']);
      assert.ok(rehearsal.predictedDowntimeMs > 0);
      assert.equal(planned.steps.find((s: any) => s.name === 'build').state, 'succeeded', 'built before the approval');
      assert.ok(planned.plan.checks.some((c: string) => /^rehearsal passed: migrations 20260314000100 /.test(c)), 'the plan lists the rehearsal among its checks');
      await assertNothingLeft();
      const r = await d.cli(['approve', d.name, '--plan-hash', planned.planHash, '--json']);
      assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
      const done = await waitForStatus(d, (s) => s.outcome === 'succeeded' || s.outcome === 'failed', 'the upgrade to end', 300_000);
      assert.equal(done.outcome, 'succeeded', done.summary);
      assert.equal(done.plan.rehearsal.predictedDowntimeMs, rehearsal.predictedDowntimeMs, 'status.plan.rehearsal.predictedDowntimeMs');
      const builds = done.steps.filter((s: any) => s.name === 'build');
      assert.equal(builds.length, 1, 'built once');
    } finally {
      restore();
    }
  });
});
