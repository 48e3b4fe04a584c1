import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { assertNoSecrets, createE2eDeployment, databaseFacts, getJson, historyText, type E2eDeployment } from './support/e2e.js';
import { factsOfBackupFile, startWarmTraffic } from './support/liveRun.js';
import { startTestTemporal, type TestTemporal } from './support/temporal.js';
import { assertConfirmedWritesAccountedFor, describeTraffic, type Traffic } from './support/traffic.js';

let temporal: TestTemporal;
before(async () => {
  temporal = await startTestTemporal();
});
after(async () => {
  await temporal?.dispose();
});

/** DATABASE_URL in the environment the deployment's runtime process was started with. */
function runtimeDatabaseUrl(d: E2eDeployment): string | undefined {
  const { pid } = JSON.parse(readFileSync(path.join(d.profile.stateDir, 'runtime', d.name, 'runtime.json'), 'utf8'));
  const entry = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').find((e) => e.startsWith('DATABASE_URL='));
  return entry?.slice('DATABASE_URL='.length);
}

describe('upgrade v0.1.0 -> v0.2.0 with approval, under 50 writes/s, database.url in the guide\'s ecto:// form', () => {
  let d: E2eDeployment;
  let traffic: Traffic | undefined;
  before(async () => {
    // As the DecisionGraph guide writes DATABASE_URL: the runtime takes it as is, the backup and every other database step as postgresql://.
    d = await createE2eDeployment(temporal, 'good', { databaseUrlScheme: 'ecto' });
    await d.bootstrap();
    await d.startWorker();
  });
  after(async () => {
    await traffic?.stop();
    await d?.dispose();
  });

  test('upgrades, migrates, backs up every write confirmed before the stop, passes smoke checks, loses no write, and keeps secrets out of the history', async (t) => {
    traffic = await startWarmTraffic(d);
    const before = await databaseFacts(d.databaseUrl);
    const started = await d.cli(['upgrade', '--deployment', d.name, '--to', 'v0.2.0', '--json']);
    assert.equal(started.exitCode, 0, started.stderr);
    const startedJson = JSON.parse(started.stdout);
    assert.equal(startedJson.status.phase, 'awaiting-approval');
    assert.equal(startedJson.status.plan.pendingMigrations.length, 1, 'plan lists the one pending migration');

    // Still serving v0.1.0 while it waits.
    assert.equal((await getJson(`http://127.0.0.1:${d.port}/api/healthz`)).body.version, '0.1.0');
    // `plan` of the same target is the plan the run waits on: one hash, the frozen copy's steps.
    const planned = await d.cli(['plan', '-d', d.name, '--to', 'v0.2.0', '--json']);
    assert.equal(planned.exitCode, 0, planned.stderr);
    // The same plan but for the size estimate, which grows with the writes meanwhile (not hashed).
    const { estimatedBackupBytes: _a, ...fromPlan } = JSON.parse(planned.stdout).plan;
    const { estimatedBackupBytes: _b, ...fromRun } = startedJson.status.plan;
    assert.deepEqual(fromPlan, fromRun, 'plan and upgrade agree on the plan');
    assert.equal(JSON.parse(planned.stdout).planHash, startedJson.status.planHash, 'plan and upgrade agree on the plan hash');
    assert.ok(JSON.parse(planned.stdout).plan.steps.some((s: string) => s.startsWith('copy the database on its server')), 'plan shows the frozen copy, not pg_dump');

    // The workflow inbox changes while the upgrade waits, as on a busy install (issue 18): the
    // baseline listed wf-default-0003 and wf-default-0005; one is approved (closed), and 12 new
    // urgent items push the other (normal priority) out of the top 12. Neither is lost data.
    const baselineWorkflows = startedJson.status.baselineSmoke?.observations?.workflowIds ?? [];
    assert.deepEqual(baselineWorkflows, ['wf-default-0003', 'wf-default-0005'], 'the baseline saw the open inbox');
    const baselineCheck = startedJson.status.baselineSmoke.checks.find((c: any) => c.name === 'traces-workflows');
    assert.match(baselineCheck.reason, /routes that write/, 'the baseline says its workflow read is not read-only');
    const db = new pg.Client({ connectionString: d.databaseUrl });
    await db.connect();
    try {
      await db.query(`UPDATE dg_workflow_runtime SET status = 'approved', current_decision = 'approve', updated_at = now() WHERE workflow_id = 'wf-default-0003'`);
      for (let i = 0; i < 12; i++) {
        await db.query(
          `INSERT INTO dg_workflow_runtime (workflow_id, tenant_id, trace_id, title, status, priority, requested_at, sla_due_at)
           VALUES ($1, 'default', 'trace-default-0002', 'urgent review during the upgrade', 'requested', 'urgent', now(), now() + interval '1 hour')`,
          [`wf-urgent-${i}`],
        );
      }
    } finally {
      await db.end();
    }

    const approved = await d.cli(['approve', d.name, '--plan-hash', startedJson.status.planHash, '--comment', 'e2e']);
    assert.equal(approved.exitCode, 0, approved.stderr);

    const followed = await d.cli(['status', d.name, '--follow', '--json']);
    assert.equal(followed.exitCode, 0, followed.stdout + followed.stderr);
    const status = JSON.parse(followed.stdout).status;
    for (const step of status.steps) assert.equal(step.state, 'succeeded', `step ${step.name} is ${step.state}`);
    assert.equal(status.outcome, 'succeeded');
    assert.ok(status.smoke.passed);
    assert.equal(status.smoke.checks.length, 5);
    for (const c of status.smoke.checks) assert.ok(c.passed, `${c.name}: ${c.reason}`);
    const wfCheck = status.smoke.checks.find((c: any) => c.name === 'traces-workflows');
    assert.match(wfCheck.reason, /2 of the 2 workflows listed before left the inbox and still exist: 1 changed state \(1 approved\), 1 still open outside the top 12/);
    t.diagnostic(`traces-workflows: ${wfCheck.reason}`);

    const health = await getJson(`http://127.0.0.1:${d.port}/api/healthz`);
    assert.equal(health.status, 200);
    assert.equal(health.body.version, '0.2.0');
    const profileUrl = Object.values(d.env).find((v) => v.includes(d.secrets.databasePassword));
    assert.match(profileUrl ?? '', /^ecto:\/\//, "the profile's database.url is the ecto:// form");
    assert.equal(runtimeDatabaseUrl(d), profileUrl, 'the new runtime got DATABASE_URL exactly as database.url holds it');

    const after = await databaseFacts(d.databaseUrl);
    assert.equal(after.versions.length, before.versions.length + 1, 'one new migration applied');
    assert.deepEqual(after.versions.slice(0, before.versions.length), before.versions);

    assert.ok(existsSync(status.backup.file), 'backup file exists');
    const manifest = JSON.parse(readFileSync(status.backup.file.replace(/\.dump$/, '.manifest.json'), 'utf8'));
    assert.equal(manifest.kind, 'pre-upgrade');
    assert.deepEqual(manifest.migrationVersions, before.versions);
    assert.ok(manifest.verified.tocEntries > 0);
    // With writes flowing, the manifest must describe the dump itself: its figures against the file restored independently.
    const held = await factsOfBackupFile(status.backup.file);
    assert.equal(manifest.eventLog.rowCount, held.facts.rowCounts.dg_event_log, 'manifest row count = rows in the dump');
    assert.equal(manifest.eventLog.maxLogSeq, held.rows.at(-1)?.logSeq ?? 0, 'manifest high-water mark = the dump\'s last log_seq');
    assert.ok(held.facts.rowCounts.dg_event_log! > before.rowCounts.dg_event_log!, 'writes confirmed after the test started are in the backup');
    // Every API write confirmed before the old runtime was stopped is in the backup.
    const stopAt = Date.parse(status.steps.find((st: any) => st.name === 'stopOld').startedAt);
    const inBackup = new Set(held.rows.map((r) => r.eventId));
    const beforeStop = traffic.snapshot().confirmed.filter((w) => w.at < stopAt);
    assert.ok(beforeStop.length > 0);
    assert.deepEqual(beforeStop.filter((w) => !inBackup.has(w.eventId)).map((w) => w.eventId), [], 'confirmed before the stop, missing from the backup');

    // No rollback: every confirmed write is in the live database.
    const written = await traffic.stop();
    traffic = undefined;
    const accounted = await assertConfirmedWritesAccountedFor(written, d.databaseUrl);
    assert.equal(accounted.setAside, 0);
    const refused = written.failed.filter((f) => f.at >= stopAt);
    t.diagnostic(`traffic ${describeTraffic(written)}; ${refused.length} refused from the stop on`);

    const jsonStatus = await d.cli(['status', d.name, '--json']);
    assert.equal(jsonStatus.exitCode, 0);
    assert.ok(JSON.parse(jsonStatus.stdout).steps.every((s: any) => s.state === 'succeeded'));

    assertNoSecrets(d, await historyText(temporal, `dg-upgrade-${d.name}`));
  });
});
