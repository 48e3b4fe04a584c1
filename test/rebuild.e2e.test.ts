import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import pg from 'pg';
import { createRunningDeployment, createE2eDeployment, databaseFacts, editProfile, getJson, listDatabases, type E2eDeployment } from './support/e2e.js';
import { startWarmTraffic, waitProjected } from './support/liveRun.js';
import { startTestTemporal, type TestTemporal } from './support/temporal.js';
import { assertConfirmedWritesAccountedFor, describeTraffic, eventLogRows, startTraffic, type Traffic } from './support/traffic.js';

let temporal: TestTemporal;
before(async () => {
  temporal = await startTestTemporal();
});
after(async () => {
  await temporal?.dispose();
});

async function digests(d: E2eDeployment): Promise<Record<string, string>> {
  const r = await getJson(`http://127.0.0.1:${d.port}/api/v1/projections/health`, { authorization: `Bearer ${d.secrets.readerToken}`, 'x-tenant-id': 'default' });
  assert.equal(r.status, 200);
  return Object.fromEntries(r.body.data.projections.map((p: any) => [p.projection_name, p.digest]));
}

/** Digests of v0.1.0's own full rebuild (admin replay, mode rebuild, all projections) of the current log. */
async function rebuiltDigests(d: E2eDeployment): Promise<Record<string, string>> {
  const headers = { authorization: `Bearer ${d.secrets.adminToken}`, 'x-tenant-id': 'default', 'content-type': 'application/json' };
  const res = await fetch(`http://127.0.0.1:${d.port}/api/v1/admin/replays`, { method: 'POST', headers, body: JSON.stringify({ mode: 'rebuild', projection: 'all', reason: 'e2e: reference digests' }) });
  const text = await res.text();
  assert.equal(res.status, 202, text);
  const jobId = JSON.parse(text).data.run.job_id;
  // Generous: on a loaded machine (other suites sharing the cores) a full rebuild takes far longer than its usual second.
  for (const deadline = Date.now() + 120_000; Date.now() < deadline; ) {
    const run = (await getJson(`http://127.0.0.1:${d.port}/api/v1/admin/replays/${jobId}`, headers)).body?.data?.run;
    if (run?.status === 'completed') return digests(d);
    assert.ok(!['failed', 'cancelled'].includes(run?.status), JSON.stringify(run));
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`rebuild ${jobId} did not complete`);
}

describe('v0.1.0 -> v0.2.2: a projection bug, no migration, under 50 writes/s', () => {
  let d: E2eDeployment;
  let traffic: Traffic | undefined;
  before(async () => {
    d = await createRunningDeployment(temporal, 'projbug');
  });
  after(async () => {
    await traffic?.stop();
    await d?.dispose();
  });

  test('the failed smoke is classified projection-only and the narrow path brings back v0.1.0 and its digests, with no restore', async (t) => {
    traffic = await startWarmTraffic(d);
    const beforeFacts = await databaseFacts(d.databaseUrl);
    const beforeRows = await eventLogRows(d.databaseUrl);
    const r = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.2', '--yes', '--follow', '--json']);
    assert.equal(r.exitCode, 1, `the upgrade itself failed: ${r.stdout} ${r.stderr}`);
    const status = JSON.parse(r.stdout).status;
    assert.equal(status.classification.kind, 'projection-only', JSON.stringify(status.classification));
    assert.equal(status.classification.path, 'rebuild-projections');
    assert.match(status.summary, /\[failure class: projection-only, recovery: rebuild-projections\]; recovered by the narrow path: back on v0\.1\.0/);
    assert.equal(status.rollbackWorkflowId, undefined, 'no restore-based rollback ran');
    assert.equal(status.rebuild.outcome, 'rebuilt');

    assert.equal((await getJson(`http://127.0.0.1:${d.port}/api/healthz`)).body.version, '0.1.0');
    // The backup may be a frozen copy of the database (backups.method frozen-copy): it is the backup, not a restore.
    const others = (await listDatabases(d.db.name)).filter((n) => n !== d.db.name && n !== status.backup?.frozenDatabase);
    assert.deepEqual(others, [], 'no restored or set-aside database: no restore was performed');
    // The writes moved the digests on since the start, so "its digests" means: what v0.1.0's own
    // full rebuild computes from the same log, once the writes stopped.
    const written = await traffic.stop();
    traffic = undefined;
    await waitProjected(d, Math.max(...written.confirmed.map((w) => w.logSeq)));
    const recovered = await digests(d);
    assert.deepEqual(await rebuiltDigests(d), recovered, 'digests equal those of a v0.1.0 rebuild of the same log');
    const after = await databaseFacts(d.databaseUrl);
    assert.deepEqual(after.versions, beforeFacts.versions);
    const afterRows = new Set((await eventLogRows(d.databaseUrl)).map((row) => row.row));
    assert.deepEqual(beforeRows.filter((row) => !afterRows.has(row.row)), [], 'the event log is untouched: every row from before is still there, unchanged');
    const accounted = await assertConfirmedWritesAccountedFor(written, d.databaseUrl);
    assert.equal(accounted.setAside, 0, 'nothing discarded');
    t.diagnostic(`traffic ${describeTraffic(written)}`);
  });

  // Without writes (stopped above): this compares the digests before and after the rebuild exactly, which writes would move on.
  test('dg-upgrade rebuild-projections runs on its own too', async () => {
    await traffic?.stop(); // already stopped unless the test above failed early
    traffic = undefined;
    const before = await digests(d);
    const r = await d.cli(['rebuild-projections', '--deployment', d.name, '--projections', 'trace_summary', '--follow', '--json']);
    assert.equal(r.exitCode, 0, r.stdout + r.stderr);
    const status = JSON.parse(r.stdout).status;
    assert.equal(status.outcome, 'rebuilt');
    assert.deepEqual(status.rebuild.jobs.map((j: any) => j.projection), ['trace_summary']);
    assert.deepEqual(await digests(d), before);
  });
});

describe('after v0.1.0 -> v0.2.0 applied a migration, under 50 writes/s', () => {
  let d: E2eDeployment;
  let traffic: Traffic | undefined;
  before(async () => {
    d = await createRunningDeployment(temporal, 'rebuildno');
  });
  after(async () => {
    await traffic?.stop();
    await d?.dispose();
  });

  test('rebuild-projections is refused with a message naming the applied migration, and changes nothing', async () => {
    traffic = await startWarmTraffic(d);
    const up = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--yes', '--follow']);
    assert.equal(up.exitCode, 0, up.stdout + up.stderr);
    const before = await databaseFacts(d.databaseUrl);
    const applied = before.versions.at(-1)!;
    const r = await d.cli(['rebuild-projections', '--deployment', d.name, '--follow']);
    assert.equal(r.exitCode, 15, r.stdout + r.stderr);
    assert.match(r.stderr, new RegExp(`projection rebuild refused: the upgrade applied migration ${applied}.*dg-upgrade rollback --deployment ${d.name}`));
    assert.equal((await getJson(`http://127.0.0.1:${d.port}/api/healthz`)).body.version, '0.2.0', 'still serving v0.2.0');
    const after = await databaseFacts(d.databaseUrl);
    assert.deepEqual(after.versions, before.versions);
    const accounted = await assertConfirmedWritesAccountedFor(await traffic.stop(), d.databaseUrl);
    traffic = undefined;
    assert.equal(accounted.setAside, 0);
  });
});

/** One tenant's projection health, read with the admin token (the smoke reader sees the smoke tenant only). */
async function tenantHealth(d: E2eDeployment, tenant: string): Promise<any> {
  const r = await getJson(`http://127.0.0.1:${d.port}/api/v1/projections/health`, { authorization: `Bearer ${d.secrets.adminToken}`, 'x-tenant-id': tenant });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.data;
}

async function query<T extends pg.QueryResultRow = any>(url: string, text: string): Promise<T[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<T>(text)).rows;
  } finally {
    await c.end();
  }
}

describe('a three-tenant install: v0.1.0 -> v0.2.2 (projection bug)', () => {
  const TENANTS = ['default', 'release-demo', 'tenant-three'];
  let d: E2eDeployment;
  before(async () => {
    d = await createRunningDeployment(temporal, 'threeten');
  });
  after(async () => d?.dispose());

  test('the narrow path rebuilds every projection of all three tenants, verifies each, and each is caught up with its pre-upgrade digests', async () => {
    // The seed has default and release-demo; a third tenant's events are written through the API
    // (the admin token may write to any tenant), then left to be projected.
    const seeding = startTraffic(d, { rate: 20, tenant: 'tenant-three' });
    const deadline = Date.now() + 30_000;
    while (seeding.snapshot().confirmed.length < 30) {
      assert.ok(Date.now() < deadline, 'the third tenant is seeded');
      await new Promise((r) => setTimeout(r, 100));
    }
    const seeded = await seeding.stop();
    await waitProjected(d, Math.max(...seeded.confirmed.map((w) => w.logSeq)));
    const withProjections = (await query(d.databaseUrl, 'SELECT DISTINCT tenant_id FROM dg_projection_digests ORDER BY 1')).map((r) => r.tenant_id);
    assert.deepEqual(withProjections, TENANTS);
    const before: Record<string, Record<string, string>> = {};
    for (const tenant of TENANTS) {
      const h = await tenantHealth(d, tenant);
      assert.ok(h.event_log_last_seq > 0, `tenant ${tenant} has events`);
      before[tenant] = Object.fromEntries(h.projections.map((p: any) => [p.projection_name, p.digest]));
    }

    const r = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.2', '--yes', '--follow', '--json']);
    assert.equal(r.exitCode, 1, r.stdout + r.stderr);
    const status = JSON.parse(r.stdout).status;
    assert.equal(status.classification.path, 'rebuild-projections', JSON.stringify(status.classification));
    assert.equal(status.rollbackWorkflowId, undefined, 'no restore-based rollback ran');
    assert.equal(status.rebuild.outcome, 'rebuilt');
    assert.equal((await getJson(`http://127.0.0.1:${d.port}/api/healthz`)).body.version, '0.1.0');

    // The report: one rebuild job per projection and tenant, and every tenant's verified digests.
    assert.deepEqual(status.rebuild.jobs.map((j: any) => j.projection), ['context_graph', 'trace_summary', 'precedent_index']);
    const runs = await query(d.databaseUrl, `SELECT job_id, tenant_id, projection_name, status FROM dg_projection_runs WHERE mode = 'rebuild' AND requested_by <> 'system:projector'`);
    for (const job of status.rebuild.jobs) {
      assert.deepEqual(Object.keys(job.tenants).sort(), TENANTS, `${job.projection}: a job for every tenant`);
      for (const [tenant, jobId] of Object.entries(job.tenants)) {
        const run = runs.find((x) => x.job_id === jobId);
        assert.deepEqual(run && [run.tenant_id, run.projection_name, run.status], [tenant, job.projection, 'completed'], `${job.projection} for ${tenant}: ${jobId}`);
      }
    }
    assert.deepEqual(Object.keys(status.rebuild.tenantDigests).sort(), TENANTS, 'every tenant verified');
    assert.deepEqual(status.rebuild.tenantDigests.default, status.rebuild.digests);

    // Afterwards: each tenant caught up, no open failures, and (no writes since) its pre-upgrade digests.
    for (const tenant of TENANTS) {
      const h = await tenantHealth(d, tenant);
      for (const p of h.projections) {
        assert.equal(p.pending_events, 0, `${tenant} ${p.projection_name} caught up`);
        assert.ok(Number(p.last_log_seq) >= h.event_log_last_seq, `${tenant} ${p.projection_name} at the head`);
        assert.equal(p.open_failures, 0, `${tenant} ${p.projection_name} has no open failures`);
      }
      const now = Object.fromEntries(h.projections.map((p: any) => [p.projection_name, p.digest]));
      assert.deepEqual(now, before[tenant], `${tenant}: the digests from before the upgrade`);
      assert.deepEqual(now, status.rebuild.tenantDigests[tenant], `${tenant}: the digests the rebuild verified`);
    }
  });
});

describe('rebuild-projections where the app refuses rebuilds (stock prod config)', () => {
  let d: E2eDeployment;
  before(async () => {
    d = await createRunningDeployment(temporal, 'rebuildoff', { allowRebuild: false });
  });
  after(async () => d?.dispose());

  test('refused before anything is stopped, naming the fix; the app keeps serving the version it served', async () => {
    // The upgrade itself does not need rebuilds when the profile restores instead.
    const restoreProfile = editProfile(d, (x) => (x.recovery = { onProjectionOnlyFailure: 'restore' }));
    try {
      const up = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--yes', '--follow']);
      assert.equal(up.exitCode, 0, up.stdout + up.stderr);
    } finally {
      restoreProfile();
    }
    const before = await databaseFacts(d.databaseUrl);
    const runsBefore = (await query(d.databaseUrl, 'SELECT COUNT(*)::int AS n FROM dg_projection_runs'))[0].n;
    const r = await d.cli(['rebuild-projections', '--deployment', d.name, '--migrations-not-suspect', '--follow', '--json']);
    assert.equal(r.exitCode, 15, r.stdout + r.stderr);
    const out = r.stdout + r.stderr;
    assert.match(out, /projection rebuild refused before anything was stopped/);
    assert.match(out, /Projection rebuilds are disabled in this deployment/);
    assert.match(out, /allow_rebuild: true/);
    assert.match(out, new RegExp(`dg-upgrade rollback --deployment ${d.name}`));
    const health = await getJson(`http://127.0.0.1:${d.port}/api/healthz`);
    assert.equal(health.status, 200);
    assert.equal(health.body.version, '0.2.0', 'still serving v0.2.0: nothing was stopped or reverted');
    assert.deepEqual((await databaseFacts(d.databaseUrl)).versions, before.versions);
    assert.equal((await query(d.databaseUrl, 'SELECT COUNT(*)::int AS n FROM dg_projection_runs'))[0].n, runsBefore, 'the probes admitted no run');
  });
});

// No traffic here: these deployments never start the app (nothing to write to); they test refusals of the CLI and workflows only.
describe('guard rails', () => {
  let d: E2eDeployment;
  before(async () => {
    d = await createE2eDeployment(temporal, 'guards');
    await d.startWorker();
  });
  after(async () => d?.dispose());

  test('mix dg.release.validate is refused on an install not marked as a disposable demo, from the CLI and from the UI path', async () => {
    const r = await d.cli(['release-validate', '--deployment', d.name]);
    assert.equal(r.exitCode, 15);
    assert.match(r.stderr, /reseeds a dedicated demo dataset/);
    const connection = await Connection.connect({ address: temporal.address });
    try {
      const handle = await new Client({ connection }).workflow.start('releaseValidate', { taskQueue: 'dg-upgrade-local', workflowId: `dg-upgrade-${d.name}`, args: [{ deployment: d.name }] });
      await assert.rejects(handle.result(), (err: any) => {
        assert.match(err.cause.cause?.message ?? err.cause.message, /refused for deployment .*disposable or dedicated demo install/);
        return true;
      });
    } finally {
      await connection.close();
    }
  });

  test('there is no command for table surgery, down-migrations or restoring projection tables alone', async () => {
    const help = await d.cli(['--help']);
    assert.doesNotMatch(help.stdout, /down-migrat|surgery|restore-projection/i);
    for (const cmd of ['migrate-down', 'restore-projections', 'rollback-migration']) {
      const r = await d.cli([cmd]);
      assert.equal(r.exitCode, 2, `${cmd} is not a command`);
    }
  });
});
