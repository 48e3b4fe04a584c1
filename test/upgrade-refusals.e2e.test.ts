import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import pg from 'pg';
import { assertNoSecrets, createE2eDeployment, databaseFacts, editProfile, getJson, historyText, type E2eDeployment } from './support/e2e.js';
import { startTestTemporal, type TestTemporal } from './support/temporal.js';

// Every case here must end with the old version serving and the database as it was.
// Without writes: "as it was" compares row counts and the event log exactly, which writes would move.
let temporal: TestTemporal;
let d: E2eDeployment;
let baseline: Awaited<ReturnType<typeof databaseFacts>>;

before(async () => {
  temporal = await startTestTemporal();
  d = await createE2eDeployment(temporal, 'refusals');
  await d.bootstrap();
  await d.startWorker();
  // Reading the workflow inbox writes once (list_inbox's SLA sweep escalates the overdue item);
  // the preflight's baseline smoke reads it: sweep first, so the baseline is what a refusal must keep.
  const inbox = await getJson(`http://127.0.0.1:${d.port}/api/v1/workflows`, { authorization: `Bearer ${d.secrets.readerToken}`, 'x-tenant-id': 'default' });
  assert.equal(inbox.status, 200);
  baseline = await databaseFacts(d.databaseUrl);
});
after(async () => {
  await d?.dispose();
  await temporal?.dispose();
});

async function assertUnchanged(): Promise<void> {
  const health = await getJson(`http://127.0.0.1:${d.port}/api/healthz`);
  assert.equal(health.status, 200, 'the old version still serves');
  assert.equal(health.body.version, '0.1.0');
  const now = await databaseFacts(d.databaseUrl);
  assert.deepEqual(now.versions, baseline.versions, 'same migration versions');
  assert.deepEqual(now.rowCounts, baseline.rowCounts, 'same row counts');
  assert.equal(now.eventLogChecksum, baseline.eventLogChecksum);
}

async function waitForPhase(phase: string, timeoutMs = 60_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await d.statusJson();
    if (r.exitCode === 0) {
      const s = JSON.parse(r.stdout);
      if (s.phase === phase || s.steps?.some((st: any) => st.name === phase && st.state === 'running')) return s;
    }
    if (Date.now() > deadline) throw new Error(`phase ${phase} not reached: ${r.stdout} ${r.stderr}`);
    await new Promise((res) => setTimeout(res, 250));
  }
}

describe('refused or aborted upgrades change nothing', { concurrency: 1 }, () => {
  test('reject', async () => {
    const started = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0']);
    assert.equal(started.exitCode, 0, started.stderr);
    assert.match(started.stdout, /Waiting for approval/);
    const rejected = await d.cli(['reject', d.name, '--comment', 'not today']);
    assert.equal(rejected.exitCode, 0, rejected.stderr);
    const followed = await d.cli(['status', d.name, '--follow']);
    assert.equal(followed.exitCode, 3, 'rejected exit code');
    assert.match(followed.stdout, /not approved \(rejected by .*not today\); nothing changed/);
    await assertUnchanged();
  });

  test('approval timeout', async () => {
    const restore = editProfile(d, (p) => (p.approval.timeout = '2s'));
    try {
      const r = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--follow']);
      assert.equal(r.exitCode, 3, r.stdout + r.stderr);
      assert.match(r.stdout, /no approval within 2 s/);
    } finally {
      restore();
    }
    await assertUnchanged();
  });

  test('cancel during the build, before cutover', async () => {
    const restore = editProfile(d, (p) => (p.toolchain.env.DG_FIXTURE_COMPILE_MS = '8000'));
    try {
      const started = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--yes']);
      assert.equal(started.exitCode, 0, started.stderr);
      await waitForPhase('building');
      const cancelled = await d.cli(['cancel', d.name]);
      assert.equal(cancelled.exitCode, 0, cancelled.stderr);
      const followed = await d.cli(['status', d.name, '--follow']);
      assert.equal(followed.exitCode, 3, followed.stdout + followed.stderr);
      assert.match(followed.stdout, /cancelled at build; nothing changed/);
    } finally {
      restore();
    }
    await assertUnchanged();
  });

  test('unknown ref', async () => {
    const r = await d.cli(['upgrade', '-d', d.name, '--to', 'v9.9.9', '--yes', '--follow']);
    assert.equal(r.exitCode, 11, r.stdout + r.stderr);
    assert.match(r.stderr, /unknown ref "v9\.9\.9".*recent tags: /);
    await assertUnchanged();
  });

  test('option-like ref', async () => {
    const r = await d.cli(['upgrade', '-d', d.name, '--to=--upload-pack=x', '--yes', '--follow']);
    assert.equal(r.exitCode, 11, r.stdout + r.stderr);
    assert.match(r.stderr, /looks like a command-line option/);
    await assertUnchanged();
  });

  test('v0.2.3 fails to compile', async () => {
    const r = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.3', '--yes', '--follow']);
    assert.equal(r.exitCode, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /failed at build: .*mix compile/);
    assert.match(r.stderr, /the old version still serves, nothing changed/);
    await assertUnchanged();
  });

  test('invalid profile', async () => {
    const bad = path.join(d.dir, 'bad-profile.json');
    const profile = JSON.parse(readFileSync(d.profilePath, 'utf8'));
    profile.deployments[d.name].port = 'eighty';
    delete profile.deployments[d.name].backups;
    writeFileSync(bad, JSON.stringify(profile));
    const r = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--profile', bad]);
    assert.equal(r.exitCode, 9);
    assert.match(r.stderr, new RegExp(`deployments\\.${d.name}\\.port: .*expected number`));
    assert.match(r.stderr, new RegExp(`deployments\\.${d.name}\\.backups: `));
    const unknown = await d.cli(['upgrade', '-d', 'nope', '--to', 'v0.2.0']);
    assert.equal(unknown.exitCode, 10);
    assert.match(unknown.stderr, /unknown deployment "nope"/);
    await assertUnchanged();
  });

  test('a second upgrade of the same deployment is refused, also under another workflow ID', async () => {
    const first = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0']);
    assert.equal(first.exitCode, 0, first.stderr);
    const second = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0']);
    assert.equal(second.exitCode, 4, second.stderr);
    assert.match(second.stderr, /already has an operation running/);

    const connection = await Connection.connect({ address: temporal.address });
    try {
      const client = new Client({ connection });
      const rogue = await client.workflow.start('upgrade', { taskQueue: 'dg-upgrade-local', workflowId: 'my-own-id', args: [{ deployment: d.name, targetRef: 'v0.2.0' }] });
      await assert.rejects(rogue.result(), (err: any) => {
        assert.match(err.cause.message, new RegExp(`must run under workflow ID "dg-upgrade-${d.name}"`));
        return true;
      });
    } finally {
      await connection.close();
    }
    const rejected = await d.cli(['reject', d.name]);
    assert.equal(rejected.exitCode, 0);
    assert.equal((await d.cli(['status', d.name, '--follow'])).exitCode, 3);
    await assertUnchanged();
  });
});

test('no secret value appears in the histories of all these runs', async () => {
  assertNoSecrets(d, await historyText(temporal, `dg-upgrade-${d.name}`));
});

const Client0 = pg.Client;

// Issue 18: what a run needs after cutover is checked at plan time, while the old version serves.
describe('refused at plan time, nothing stopped (issue 18)', { concurrency: 1 }, () => {
  test('smoke admin token without projection_replay, narrow path where rebuilds are off: plan and upgrade refused, naming the fixes', async () => {
    // Stock production config (rebuilds off) and an admin token with projection_rebuild but not projection_replay.
    // Its own Temporal server: the suite's worker serves the suite's deployment only.
    const t2 = await startTestTemporal();
    const p = await createE2eDeployment(t2, 'perms', { allowRebuild: false, adminPermissions: ['projection_rebuild', 'workflow_export'] });
    try {
      await p.bootstrap();
      await p.startWorker();
      const before = await databaseFacts(p.databaseUrl);
      const plan = await p.cli(['plan', '-d', p.name, '--to', 'v0.2.0']);
      assert.equal(plan.exitCode, 15, plan.stdout + plan.stderr);
      const out = plan.stdout + plan.stderr;
      assert.match(out, /refused at plan time, nothing was stopped/);
      assert.match(out, /lacks projection_replay permission/);
      assert.match(out, /"projection_replay" is missing/);
      assert.match(out, /Projection rebuilds are disabled in this deployment/);
      assert.match(out, /allow_rebuild: true/);
      assert.match(out, /onProjectionOnlyFailure to "restore"/);

      // Without the narrow path, only the token's missing permission remains.
      const restore = editProfile(p, (x) => (x.recovery = { onProjectionOnlyFailure: 'restore' }));
      try {
        const again = await p.cli(['plan', '-d', p.name, '--to', 'v0.2.0']);
        assert.equal(again.exitCode, 15, again.stdout + again.stderr);
        assert.match(again.stdout + again.stderr, /lacks projection_replay permission/);
        assert.doesNotMatch(again.stdout + again.stderr, /rebuild/i);
        const up = await p.cli(['upgrade', '-d', p.name, '--to', 'v0.2.0', '--yes', '--follow']);
        assert.equal(up.exitCode, 15, up.stdout + up.stderr);
        assert.match(up.stdout + up.stderr, /lacks projection_replay permission/);
      } finally {
        restore();
      }
      const health = await getJson(`http://127.0.0.1:${p.port}/api/healthz`);
      assert.equal(health.status, 200, 'the old version still serves');
      assert.equal(health.body.version, '0.1.0');
      const now = await databaseFacts(p.databaseUrl);
      assert.deepEqual(now.rowCounts, before.rowCounts, 'the probes wrote nothing (no replay run admitted)');
      assert.equal(now.eventLogChecksum, before.eventLogChecksum);
    } finally {
      await p.dispose();
      await t2.dispose();
    }
  });

  test('a database role with CREATEDB that does not own the live database: refused, naming ALTER DATABASE ... OWNER TO', async () => {
    const role = `dgu_notowner_${process.pid}`;
    const admin = new Client0({ connectionString: process.env.DG_TEST_ADMIN_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres' });
    await admin.connect();
    const live = new URL(d.databaseUrl).pathname.slice(1);
    try {
      await admin.query(`DROP ROLE IF EXISTS ${role}`);
      await admin.query(`CREATE ROLE ${role} LOGIN CREATEDB IN ROLE pg_read_all_data`);
      const url = new URL(d.databaseUrl);
      url.username = role;
      url.password = '';
      const urlFile = path.join(d.dir, 'notowner-url');
      writeFileSync(urlFile, url.toString(), { mode: 0o600 });
      const restore = editProfile(d, (x) => (x.database.url = { fromFile: urlFile }));
      try {
        const plan = await d.cli(['plan', '-d', d.name, '--to', 'v0.2.0']);
        assert.equal(plan.exitCode, 15, plan.stdout + plan.stderr);
        const out = plan.stdout + plan.stderr;
        assert.match(out, new RegExp(`database role ${role} does not own the live database ${live}`));
        assert.match(out, new RegExp(`ALTER DATABASE "${live}" OWNER TO "${role}"`));
      } finally {
        restore();
      }
    } finally {
      await admin.query(`DROP ROLE IF EXISTS ${role}`).catch(() => undefined);
      await admin.end();
    }
    await assertUnchanged();
  });
});
