import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { RELEASE_MODEL_CRASHES, runCrashCase } from './support/crash.js';
import { createRunningDeployment, databaseFacts, editProfile, getJson, processesWithEnv, type E2eDeployment } from './support/e2e.js';
import { assertRestoredToBackup, followAcceptingDataLoss, startWarmTraffic } from './support/liveRun.js';
import { databaseUrlFor } from './support/postgres.js';
import { startTestTemporal, type TestTemporal } from './support/temporal.js';
import { assertConfirmedWritesAccountedFor, assertGateCountMatchesDiscarded, describeTraffic, type Traffic } from './support/traffic.js';

// Installs that run the packaged OTP release (bin/decisiongraph_beam) instead of mix phx.server.
let temporal: TestTemporal;
before(async () => {
  temporal = await startTestTemporal();
});
after(async () => {
  await temporal?.dispose();
});

function releaseBuilds(d: E2eDeployment, dir: string): string[] {
  const log = path.join(dir, 'beam', '_build', 'prod', 'rel', 'decisiongraph_beam.builds.log');
  return existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean) : [];
}

function runtimeCmdline(d: E2eDeployment): string {
  const [pid] = processesWithEnv('DG_UPGRADE_RUNTIME', d.name);
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
}

describe('release model, under 50 writes/s', () => {
  let d: E2eDeployment;
  let traffic: Traffic | undefined;
  const asides: Record<string, string> = {};
  before(async () => {
    d = await createRunningDeployment(temporal, 'relmodel', { model: 'release' });
    traffic = await startWarmTraffic(d);
  });
  after(async () => {
    await traffic?.stop();
    await d?.dispose();
  });

  /** Follows a run that ends in a rollback through its data-loss gate; checks the restore against its backup. */
  async function rolledBack(startArgs: string[], expectExit: number) {
    const started = await d.cli([...startArgs, '--json']);
    assert.equal(started.exitCode, 0, started.stdout + started.stderr);
    const run = await followAcceptingDataLoss(d, { workflowId: JSON.parse(started.stdout).workflowId });
    assert.equal(run.exitCode, expectExit, JSON.stringify(run.status).slice(0, 1500));
    const status = run.status;
    assert.equal(status.outcome, 'rolled-back', status.summary);
    const aside = status.rollback.asideDatabase as string;
    asides[aside] = databaseUrlFor(aside);
    await assertRestoredToBackup(d, status, asides[aside]);
    await assertGateCountMatchesDiscarded(status, d.databaseUrl, asides[aside]!, traffic!.snapshot());
    return status;
  }

  test('v0.1.0 -> v0.2.0 runs on the release: built with mix release, migrated through it, started from it', async () => {
    assert.match(runtimeCmdline(d), /_build\/prod\/rel\/decisiongraph_beam\/bin\/decisiongraph_beam start/, 'v0.1.0 runs as a release');
    const before = await databaseFacts(d.databaseUrl);
    const r = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--yes', '--follow', '--json']);
    assert.equal(r.exitCode, 0, r.stdout + r.stderr);
    const status = JSON.parse(r.stdout).status;
    assert.equal(status.plan.model, 'release', 'the plan shows the model');
    assert.ok(status.plan.steps.some((s: string) => /mix release/.test(s)));
    assert.equal((await getJson(`http://127.0.0.1:${d.port}/api/healthz`)).body.version, '0.2.0');
    assert.match(runtimeCmdline(d), /releases\/[0-9a-f]{40}\/beam\/_build\/prod\/rel\/decisiongraph_beam\/bin\/decisiongraph_beam start/, 'v0.2.0 runs from its own release');
    const after = await databaseFacts(d.databaseUrl);
    assert.equal(after.versions.length, before.versions.length + 1);
    const migrateLog = readFileSync(path.join(d.profile.stateDir, 'logs', d.name, 'migrate.log'), 'utf8');
    assert.match(migrateLog, /decisiongraph_beam eval DecisionGraph\.Store\.Release\.migrate\(\)/);
  });

  test('v0.3.0 rolls back to the kept v0.1.0 release without running mix release again', async () => {
    // Back to v0.1.0 first (restore-based rollback of the good upgrade), then the bad upgrade.
    await rolledBack(['rollback', '--deployment', d.name], 0);
    const v010Builds = releaseBuilds(d, d.target.repoDir).length;
    assert.equal(v010Builds, 1, 'the v0.1.0 release was built once, at install');

    const status = await rolledBack(['upgrade', '-d', d.name, '--to', 'v0.3.0', '--yes'], 1);
    assert.equal(status.rollback.restoredTo.reused, true, 'the kept v0.1.0 release was reused');
    assert.equal(releaseBuilds(d, d.target.repoDir).length, v010Builds, 'mix release did not run again for v0.1.0');
    assert.match(runtimeCmdline(d), new RegExp(`${d.target.repoDir}/beam/_build/prod/rel/decisiongraph_beam/bin/decisiongraph_beam start`));
  });

  test('a release-model profile without service accounts is refused in preflight, naming the setting, and nothing changes', async () => {
    const before = await databaseFacts(d.databaseUrl);
    const restore = editProfile(d, (p) => delete p.toolchain.secretEnv.DECISION_GRAPH_SERVICE_ACCOUNTS_JSON);
    try {
      const cli = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--yes', '--follow']);
      assert.equal(cli.exitCode, 9, cli.stderr);
      assert.match(cli.stderr, /refuses to boot without service accounts: set toolchain\.secretEnv\.DECISION_GRAPH_SERVICE_ACCOUNTS_JSON/);
      // Started from the UI, the workflow's preflight refuses it the same way.
      const connection = await Connection.connect({ address: temporal.address });
      try {
        const handle = await new Client({ connection }).workflow.start('upgrade', { taskQueue: 'dg-upgrade-local', workflowId: `dg-upgrade-${d.name}`, args: [{ deployment: d.name, targetRef: 'v0.2.0', autoApprove: true }] });
        await assert.rejects(handle.result(), (err: any) => {
          assert.match(err.cause.message, /failed at preflight: .*DECISION_GRAPH_SERVICE_ACCOUNTS_JSON/);
          return true;
        });
      } finally {
        await connection.close();
      }
    } finally {
      restore();
    }
    assert.equal((await getJson(`http://127.0.0.1:${d.port}/api/healthz`)).body.version, '0.1.0');
    assert.deepEqual((await databaseFacts(d.databaseUrl)).versions, before.versions);
  });

  test('every write confirmed during these runs is in the live database or in one set-aside database', async (t) => {
    const written = await traffic!.stop();
    traffic = undefined;
    const accounted = await assertConfirmedWritesAccountedFor(written, d.databaseUrl, asides);
    t.diagnostic(`traffic ${describeTraffic(written)}; ${accounted.live} live, ${accounted.setAside} set aside`);
  });
});

RELEASE_MODEL_CRASHES.forEach((c, i) => {
  test(`release model: worker killed ${c.name}: the upgrade still completes`, async () => {
    const outcome = await runCrashCase(temporal, `crashrel${i}`, c);
    process.stderr.write(`# crash ${c.name}: step resumed ${outcome.resumeMs} ms after SIGKILL\n`);
  });
});
