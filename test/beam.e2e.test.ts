import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  assertRestoredToPreUpgrade,
  createRunningDeployment,
  databaseFacts,
  getJson,
  listenersOnPort,
  processesWithEnv,
  waitCaughtUp,
  type E2eDeployment,
} from './support/e2e.js';
import { followAcceptingDataLoss, startWarmTraffic, waitProjected } from './support/liveRun.js';
import { startTestTemporal, type TestTemporal } from './support/temporal.js';
import { assertConfirmedWritesAccountedFor, describeTraffic, type Traffic } from './support/traffic.js';

// End to end against the real BEAM target (test/fixtures/beam-target): real `mix compile`,
// `mix ecto.migrate`, `mix phx.server`, `mix release`, and the release's own bin script.
let temporal: TestTemporal;
before(async () => {
  temporal = await startTestTemporal();
});
after(async () => {
  await temporal?.dispose();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function comm(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** The app's BEAM processes (beam.smp, not its erl_child_setup helper) started for this deployment. */
function beamRuntimes(d: E2eDeployment): number[] {
  return processesWithEnv('DG_UPGRADE_RUNTIME', d.name).filter((pid) => comm(pid) === 'beam.smp');
}

function beamCmdline(d: E2eDeployment): string {
  const pids = beamRuntimes(d);
  assert.equal(pids.length, 1, `one BEAM runtime, found ${pids.length}`);
  return readFileSync(`/proc/${pids[0]}/cmdline`, 'utf8').replace(/\0/g, ' ');
}

/**
 * Ends every BEAM this deployment started, whatever the test left behind (they are ours, by pid).
 * Not epmd: the first distributed node on a host starts it (inheriting that node's environment)
 * and every other node on the host registers with it.
 */
async function disposeBeam(d: E2eDeployment | undefined): Promise<void> {
  if (!d) return;
  await d.dispose();
  for (const pid of processesWithEnv('DG_UPGRADE_RUNTIME', d.name)) {
    if (comm(pid) === 'epmd') continue;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

async function upgrade(d: E2eDeployment, to: string): Promise<{ exitCode: number; status: any; output: string }> {
  const r = await d.cli(['upgrade', '-d', d.name, '--to', to, '--yes', '--follow', '--json']);
  let status: any;
  try {
    status = JSON.parse(r.stdout).status;
  } catch {
    status = undefined;
  }
  return { exitCode: r.exitCode, status, output: r.stdout + r.stderr };
}

/**
 * The upgrade to v0.2.0 while the app takes 50 writes/s: every confirmed write is in the database
 * afterwards, none set aside. The rollbacks that follow run without writes, because they compare
 * the whole database with the state before the failed upgrade (assertRestoredToPreUpgrade); the
 * rollback under writes, with its data-loss gate, is covered on the stand-in (rollback.e2e, soak).
 */
async function upgradeTo020UnderWrites(d: E2eDeployment, t: { diagnostic(msg: string): void }): Promise<Awaited<ReturnType<typeof upgrade>>> {
  const traffic = await startWarmTraffic(d);
  const r = await upgrade(d, 'v0.2.0').catch(async (err) => {
    await traffic.stop();
    throw err;
  });
  const written = await traffic.stop();
  const accounted = await assertConfirmedWritesAccountedFor(written, d.databaseUrl);
  assert.equal(accounted.setAside, 0, 'no confirmed write set aside');
  t.diagnostic(`traffic ${describeTraffic(written)}`);
  return r;
}

async function version(d: E2eDeployment): Promise<string> {
  return (await getJson(`http://127.0.0.1:${d.port}/api/healthz`)).body.version;
}

async function assertUpgradedTo020(d: E2eDeployment, before: Awaited<ReturnType<typeof databaseFacts>>, r: Awaited<ReturnType<typeof upgrade>>) {
  assert.equal(r.exitCode, 0, r.output);
  assert.equal(r.status.outcome, 'succeeded');
  for (const c of r.status.smoke.checks) assert.ok(c.passed, `${c.name}: ${c.reason}`);
  assert.equal(await version(d), '0.2.0');
  const after = await databaseFacts(d.databaseUrl);
  assert.deepEqual(after.versions, [...before.versions, '20260314000100'], 'the v0.2.0 migration applied');
  const trace = await getJson(`http://127.0.0.1:${d.port}/api/v1/traces/trace-default-0001`, { authorization: `Bearer ${d.secrets.readerToken}`, 'x-tenant-id': 'default' });
  assert.deepEqual(trace.body.data.summary.tags, ['workflow:refund_review'], 'v0.2.0 code reads its new table');
}

/**
 * Back from v0.2.0 to v0.1.0 (`dg-upgrade rollback`, accepting the discard of the writes v0.2.0
 * took), then v0.3.0, which fails its smoke checks and is rolled back to exactly the database
 * before it.
 */
async function rollBackThenFailV030(d: E2eDeployment): Promise<Awaited<ReturnType<typeof upgrade>>> {
  const started = await d.cli(['rollback', '--deployment', d.name, '--json']);
  assert.equal(started.exitCode, 0, started.stdout + started.stderr);
  const back = await followAcceptingDataLoss(d, { workflowId: JSON.parse(started.stdout).workflowId });
  assert.equal(back.exitCode, 0, JSON.stringify(back.status).slice(0, 800));
  await waitCaughtUp(d);
  const before = await databaseFacts(d.databaseUrl);
  const r = await upgrade(d, 'v0.3.0');
  assert.equal(r.exitCode, 1, r.output);
  assert.equal(r.status.outcome, 'rolled-back', r.status.summary);
  await assertRestoredToPreUpgrade(d, before);
  return r;
}

describe('source model on the BEAM target (mix phx.server)', () => {
  let d: E2eDeployment;
  before(async () => {
    d = await createRunningDeployment(temporal, 'beamsrc', { target: 'beam' });
  });
  after(() => disposeBeam(d));

  test('v0.1.0 -> v0.2.0: mix compile in a worktree while v0.1.0 serves, mix ecto.migrate, mix phx.server, smoke checks pass', async (t) => {
    assert.match(beamCmdline(d), /beam\.smp .*phx\.server/, 'v0.1.0 runs under mix phx.server');
    const before = await databaseFacts(d.databaseUrl);
    const r = await upgradeTo020UnderWrites(d, t);
    await assertUpgradedTo020(d, before, r);
    assert.match(beamCmdline(d), /phx\.server/);
    assert.match(readFileSync(path.join(d.profile.stateDir, 'logs', d.name, 'migrate.log'), 'utf8'), /Migrated 20260314000100/);
    assert.equal(listenersOnPort(d.port), 1);
  });

  test('v0.3.0 fails its smoke checks (console error panel, replay admission 500): restore-based rollback to v0.1.0', async () => {
    const r = await rollBackThenFailV030(d);
    const failed = r.status.smoke.checks.filter((c: any) => !c.passed).map((c: any) => c.name).sort();
    assert.deepEqual(failed, ['console', 'replay'], JSON.stringify(r.status.smoke.checks));
    assert.equal(beamRuntimes(d).length, 1, 'one BEAM runtime after the rollback');
  });
});

describe('release model on the BEAM target, bin/decisiongraph_beam start under the process adapter', () => {
  let d: E2eDeployment;
  before(async () => {
    d = await createRunningDeployment(temporal, 'beamrel', { target: 'beam', model: 'release' });
  });
  after(() => disposeBeam(d));

  test('v0.1.0 -> v0.2.0: mix release per version, migrate through eval, start the new release', async (t) => {
    assert.match(beamCmdline(d), new RegExp(`${d.target.repoDir}/beam/_build/prod/rel/decisiongraph_beam/`), 'v0.1.0 runs from its release');
    const before = await databaseFacts(d.databaseUrl);
    const r = await upgradeTo020UnderWrites(d, t);
    await assertUpgradedTo020(d, before, r);
    assert.match(beamCmdline(d), /releases\/[0-9a-f]{40}\/beam\/_build\/prod\/rel\/decisiongraph_beam\//, 'v0.2.0 runs from its own release');
    assert.match(readFileSync(path.join(d.profile.stateDir, 'logs', d.name, 'migrate.log'), 'utf8'), /eval DecisionGraph\.Store\.Release\.migrate\(\)[\s\S]*Migrated 20260314000100/);
  });

  test('v0.3.0 rolls back to the kept v0.1.0 release', async () => {
    const r = await rollBackThenFailV030(d);
    assert.equal(r.status.rollback.restoredTo.reused, true, 'the kept v0.1.0 release was reused');
    assert.match(beamCmdline(d), new RegExp(`${d.target.repoDir}/beam/_build/prod/rel/decisiongraph_beam/`));
  });
});

describe('release model on the BEAM target, daemon/stop/pid under the command adapter', () => {
  let d: E2eDeployment;
  before(async () => {
    d = await createRunningDeployment(temporal, 'beamcmd', { target: 'beam', model: 'release', runtimeAdapter: 'command' });
  });
  after(() => disposeBeam(d));

  test('v0.1.0 -> v0.2.0 with the release daemon under run_erl, stopped through distribution, then v0.3.0 rolls back', async (t) => {
    const releaseLog = (dir: string) => path.join(dir, 'beam/_build/prod/rel/decisiongraph_beam/tmp/log/erlang.log.1');
    assert.ok(existsSync(releaseLog(d.target.repoDir)), 'v0.1.0 runs as a daemon (run_erl log)');
    const before = await databaseFacts(d.databaseUrl);
    const r = await upgradeTo020UnderWrites(d, t);
    await assertUpgradedTo020(d, before, r);
    const releases = path.join(path.dirname(d.target.repoDir), `${d.name}-releases`);
    const v020 = readdirSync(releases).find((f) => /^[0-9a-f]{40}$/.test(f))!;
    assert.match(readFileSync(releaseLog(path.join(releases, v020)), 'utf8'), /Running DecisionGraphWeb\.Endpoint/);
    assert.equal(beamRuntimes(d).length, 1, 'the old node stopped, the new one runs');

    await rollBackThenFailV030(d);
    assert.equal(beamRuntimes(d).length, 1);
  });
});

describe('projection-only failure on the BEAM target under 50 writes/s', () => {
  let d: E2eDeployment;
  let traffic: Traffic | undefined;
  before(async () => {
    d = await createRunningDeployment(temporal, 'beamnarrow', { target: 'beam' });
  });
  after(async () => {
    await traffic?.stop();
    await disposeBeam(d);
  });

  test('v0.2.2 (projector bug) takes the narrow path: back on v0.1.0, trace_summary rebuilt by its real projector, no restore, no write lost', async (t) => {
    traffic = await startWarmTraffic(d);
    const r = await upgrade(d, 'v0.2.2');
    assert.equal(r.exitCode, 1, r.output);
    assert.equal(r.status.classification.kind, 'projection-only', JSON.stringify(r.status.classification));
    assert.equal(r.status.rollbackWorkflowId, undefined, 'no restore-based rollback ran');
    assert.equal(r.status.rebuild.outcome, 'rebuilt');
    assert.equal(await version(d), '0.1.0');
    const written = await traffic.stop();
    traffic = undefined;
    await waitProjected(d, Math.max(...written.confirmed.map((w) => w.logSeq)));
    const health = await getJson(`http://127.0.0.1:${d.port}/api/v1/projections/health`, { authorization: `Bearer ${d.secrets.readerToken}`, 'x-tenant-id': 'default' });
    for (const p of health.body.data.projections) assert.equal(p.open_failures, 0, `${p.projection_name} has no open failures`);
    const accounted = await assertConfirmedWritesAccountedFor(written, d.databaseUrl);
    assert.equal(accounted.setAside, 0, 'nothing discarded');
    t.diagnostic(`traffic ${describeTraffic(written)}`);
  });
});

/**
 * SIGKILLs the worker at a failpoint of a good upgrade and checks that a new worker finishes it:
 * upgraded, one backup, one BEAM runtime on the port.
 */
async function crashCase(label: string, opts: { model: 'source' | 'release'; failpoint: string; killAfterMs?: number }) {
  const d = await createRunningDeployment(temporal, label, { target: 'beam', model: opts.model });
  try {
    const before = await databaseFacts(d.databaseUrl);
    await d.worker!.kill('SIGTERM');
    const failDir = mkdtempSync(path.join(d.dir, 'failpoints-'));
    const first = await d.startWorker({ DG_UPGRADE_FAILPOINTS: opts.failpoint, DG_UPGRADE_FAILPOINT_DIR: failDir });
    const started = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--yes']);
    assert.equal(started.exitCode, 0, started.stderr);
    const marker = path.join(failDir, opts.failpoint.replace(/[#:].*$/, ''));
    const deadline = Date.now() + 180_000;
    while (!existsSync(marker)) {
      if (Date.now() > deadline) throw new Error(`failpoint ${opts.failpoint} not reached`);
      await sleep(50);
    }
    if (opts.killAfterMs) await sleep(opts.killAfterMs);
    await first.kill('SIGKILL');
    const killedAt = Date.now();
    await d.startWorker();
    const followed = await d.cli(['status', d.name, '--follow', '--json']);
    const status = JSON.parse(followed.stdout).status;
    assert.equal(followed.exitCode, 0, followed.stdout + followed.stderr);
    assert.equal(status.outcome, 'succeeded');
    assert.equal(await version(d), '0.2.0');
    assert.equal((await databaseFacts(d.databaseUrl)).versions.length, before.versions.length + 1, 'the migration applied once');
    const backups = readdirSync(d.profile.deployments[d.name]!.backups.dir);
    assert.equal(backups.filter((f) => f.endsWith('.dump')).length, 1, `one backup: ${backups.join(', ')}`);
    assert.equal(beamRuntimes(d).length, 1, 'one BEAM runtime: no orphan');
    assert.equal(listenersOnPort(d.port), 1, 'one listener on the port');
    process.stderr.write(`# beam crash ${opts.failpoint}: upgrade finished ${Date.now() - killedAt} ms after the SIGKILL\n`);
  } finally {
    await disposeBeam(d);
  }
}

test('worker killed during the real mix compile (source model): the retry compiles again and the upgrade completes', async () => {
  // A fresh worktree compiles for a few seconds: 1 s after the marker the compile is mid-way.
  await crashCase('beamcrashbuild', { model: 'source', failpoint: 'build.compile:mark', killAfterMs: 1000 });
});

test("worker killed right after spawning the release's start (release model): the booting BEAM is kept and the upgrade completes", async () => {
  await crashCase('beamcrashstart', { model: 'release', failpoint: 'startRuntime.afterSpawn' });
});

describe('in-place layout, release model on the BEAM target (one checkout, one _build shared by the versions)', () => {
  let d: E2eDeployment;
  before(async () => {
    d = await createRunningDeployment(temporal, 'beaminplace', { target: 'beam', model: 'release', layout: 'in-place' });
  });
  after(() => disposeBeam(d));

  test('v0.1.0 -> v0.3.0 fails its smoke checks and rolls back: the release that serves afterwards is v0.1.0', async () => {
    const before = await databaseFacts(d.databaseUrl);
    const r = await upgrade(d, 'v0.3.0');
    assert.equal(r.exitCode, 1, r.output);
    assert.equal(r.status.outcome, 'rolled-back', r.status.summary);
    await assertRestoredToPreUpgrade(d, before);
  });
});
