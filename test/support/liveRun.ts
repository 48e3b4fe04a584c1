import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { execa } from 'execa';
import pg from 'pg';
import { eventLogDigest } from '../../src/database/eventLogDigest.js';
import { assertSameRowsButSmokeWrites, databaseFacts, getJson, type E2eDeployment } from './e2e.js';
import { createTestDatabase } from './postgres.js';
import { eventLogRows, startTraffic, type Traffic, type TrafficOptions, type TrafficReport } from './traffic.js';

/**
 * Running operations on a deployment that keeps receiving writes: traffic that has warmed up,
 * following a run through its data-loss gate, and checking a rollback against the backup it
 * restored (not against facts taken before the test, which the writes have moved on from).
 */

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Projector cursors of the running app (every projection at or past `logSeq`?). */
export async function waitProjected(d: E2eDeployment, logSeq: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    const r = await getJson(`http://127.0.0.1:${d.port}/api/v1/projections/health`, { authorization: `Bearer ${d.secrets.readerToken}`, 'x-tenant-id': 'default' });
    last = r.body;
    const ps: any[] = r.body?.data?.projections ?? [];
    if (r.status === 200 && ps.length && ps.every((p) => Number(p.last_log_seq) >= logSeq)) return;
    if (Date.now() > deadline) throw new Error(`projector did not reach log_seq ${logSeq}: ${JSON.stringify(last)}`);
    await sleep(250);
  }
}

/**
 * Starts the traffic (default 50 API writes/s) and returns once it is flowing: `warmup` writes
 * confirmed and projected, so every row the traffic's bounded traces create in the projections
 * exists before the test's operation starts.
 */
export async function startWarmTraffic(d: E2eDeployment, opts: TrafficOptions = {}, warmup = 40): Promise<Traffic> {
  const traffic = startTraffic(d, { rate: 50, ...opts });
  const deadline = Date.now() + 30_000;
  for (;;) {
    const api = traffic.snapshot().confirmed.filter((w) => w.via === 'api');
    if (api.length >= warmup) {
      await waitProjected(d, Math.max(...api.map((w) => w.logSeq)));
      return traffic;
    }
    if (Date.now() > deadline) {
      const t = await traffic.stop();
      throw new Error(`traffic did not start: ${api.length} writes confirmed in 30 s; failures: ${JSON.stringify(t.failed.slice(-3))}`);
    }
    await sleep(100);
  }
}

export interface FollowedRun {
  /** `status --follow --json` of the run once it ended. */
  exitCode: number;
  status: any;
  /** Every count the data-loss gate asked for (and that was accepted), in order. */
  asked: number[];
  /** accept-data-loss calls refused because the count had changed. */
  refusedAccepts: number;
}

/**
 * Follows the deployment's current run (or `workflowId`) to its end. Each time a rollback stops
 * at the data-loss gate, accepts exactly the count it shows (as an operator would after reading
 * it); a refusal because the count moved on is retried with the new count.
 */
export async function followAcceptingDataLoss(
  d: E2eDeployment,
  opts: {
    workflowId?: string;
    timeoutMs?: number;
    by?: string;
    /** Return early (exitCode -1, the last status) once this holds. */
    until?: (status: any) => boolean;
    /** Called with the count each time the gate asks, before accepting it. */
    onGate?: (events: number) => void;
  } = {},
): Promise<FollowedRun> {
  const target = opts.workflowId ? ['--workflow-id', opts.workflowId] : [d.name];
  const deadline = Date.now() + (opts.timeoutMs ?? 300_000);
  const asked: number[] = [];
  let refusedAccepts = 0;
  let last = '';
  for (;;) {
    const r = await d.statusJson(target);
    last = r.stdout + r.stderr;
    // The worker may be down (a crash test kills it once `until` holds): no status to read then.
    if (r.exitCode !== 0 && opts.until?.(undefined)) return { exitCode: -1, status: undefined, asked, refusedAccepts };
    if (r.exitCode === 0) {
      const s = JSON.parse(r.stdout);
      if (opts.until?.(s)) return { exitCode: -1, status: s, asked, refusedAccepts };
      if (s.outcome) break;
      const gate = s.rollbackWorkflowId ? JSON.parse((await d.statusJson(['--workflow-id', s.rollbackWorkflowId])).stdout || '{}') : s;
      if (gate.phase === 'rollback-blocked') throw new Error(`the rollback is blocked, waiting for retry/abandon: ${gate.summary}`);
      if (gate.phase === 'awaiting-data-loss-approval' && gate.dataLoss) {
        const n = Number(gate.dataLoss.eventsAfterBackup);
        opts.onGate?.(n);
        const a = await d.cli(['accept-data-loss', ...(s.rollbackWorkflowId ? ['--workflow-id', s.rollbackWorkflowId] : target), '--events', String(n), '--by', opts.by ?? 'e2e-operator']);
        if (a.exitCode === 0) {
          asked.push(n);
          // Wait for the gate to take it before looking again.
          for (let i = 0; i < 100; i++) {
            const again = await d.statusJson(['--workflow-id', gate.workflowId]);
            const g = again.exitCode === 0 ? JSON.parse(again.stdout) : undefined;
            if (!g || g.phase !== 'awaiting-data-loss-approval' || Number(g.dataLoss?.eventsAfterBackup) !== n) break;
            await sleep(100);
          }
        } else refusedAccepts++;
        continue;
      }
    }
    if (Date.now() > deadline) throw new Error(`run did not end: ${last}`);
    await sleep(500);
  }
  const followed = await d.cli(['status', ...target, '--follow', '--json']);
  const parsed = JSON.parse(followed.stdout);
  return { exitCode: followed.exitCode, status: parsed.status ?? parsed, asked, refusedAccepts };
}

/** The backup a run restored: its id from the status, its manifest from `dg-upgrade backups`. */
export async function backupOf(d: E2eDeployment, status: any): Promise<{ id: string; file: string; eventLog: { maxLogSeq: number } }> {
  const id = status.rollback?.backupId ?? status.backupId ?? status.backup?.id;
  assert.ok(id, `the status names the restored backup: ${JSON.stringify(status).slice(0, 300)}`);
  const r = await d.cli(['backups', d.name, '--json']);
  assert.equal(r.exitCode, 0, r.stderr);
  const backup = (JSON.parse(r.stdout) as any[]).find((b) => b.id === id);
  assert.ok(backup, `backup ${id} is listed`);
  return backup;
}

/** Database facts of a backup file, restored with pg_restore into a scratch database. */
export async function factsOfBackupFile(file: string) {
  const scratch = await createTestDatabase('bkcheck');
  try {
    const r = await execa('pg_restore', ['--no-owner', '--no-privileges', `--dbname=${scratch.url}`, file], { reject: false });
    assert.equal(r.exitCode, 0, `pg_restore of ${file}: ${r.stderr}`);
    return { facts: await databaseFacts(scratch.url), rows: await eventLogRows(scratch.url) };
  } finally {
    await scratch.drop();
  }
}

/**
 * After a rollback on a deployment that kept receiving writes: the live database is exactly the
 * backup (restored independently from its file here) plus what was written after the restore.
 * Same migrations and tables; every event-log row of the backup is in the live database unchanged;
 * nothing of the upgraded database's own writes came back (no live row past the backup's end is
 * in the set-aside database); per-table row counts equal except the event log and the one smoke
 * replay run (the traffic's bounded traces create no new projection rows once warmed up).
 */
export async function assertRestoredToBackup(d: E2eDeployment, status: any, asideUrl?: string, expectVersion = '0.1.0'): Promise<void> {
  const backup = await backupOf(d, status);
  if (!existsSync(backup.file)) return assertRestoredToFrozenCopy(d, backup, asideUrl, expectVersion);
  const { facts: held, rows: heldRows } = await factsOfBackupFile(backup.file);
  const now = await databaseFacts(d.databaseUrl);
  assert.deepEqual(now.versions, held.versions, 'same schema_migrations as the backup');
  assert.deepEqual(now.tables, held.tables, 'same tables as the backup');
  const liveRows = await eventLogRows(d.databaseUrl);
  const liveSet = new Set(liveRows.map((r) => r.row));
  const missing = heldRows.filter((r) => !liveSet.has(r.row));
  assert.equal(missing.length, 0, `${missing.length} event-log rows of the backup are not in the live database (first: ${missing[0]?.row})`);
  const heldMax = heldRows.at(-1)?.logSeq ?? 0;
  const heldSet = new Set(heldRows.map((r) => r.row));
  const extra = liveRows.filter((r) => r.logSeq <= heldMax && !heldSet.has(r.row));
  assert.equal(extra.length, 0, `live rows at or below the backup's last log_seq ${heldMax} that the backup does not hold: ${extra.slice(0, 3).map((r) => r.row).join(' | ')}`);
  if (asideUrl) {
    const asideSet = new Set((await eventLogRows(asideUrl)).map((r) => r.row));
    const resurrected = liveRows.filter((r) => r.logSeq > heldMax && asideSet.has(r.row));
    assert.equal(resurrected.length, 0, `rows the restore should have discarded are live: ${resurrected.slice(0, 3).map((r) => r.row).join(' | ')}`);
  }
  assertSameRowsButSmokeWrites(now.rowCounts, held.rowCounts, 'same per-table row counts as the backup (the event log aside)', ['dg_event_log']);
  const health = await getJson(`http://127.0.0.1:${d.port}/api/healthz`);
  assert.equal(health.status, 200);
  assert.equal(health.body.version, expectVersion, `${expectVersion} serves`);
}

/**
 * A backup taken as a frozen copy (`backups.method: frozen-copy`) that the rollback swapped in
 * before its pg_dump file was written (a failed migrate, say): no independent copy is left to
 * restore, so the live database is checked against the figures the manifest counted in the copy:
 * it is the copy (same oid), same migrations and tables, the event log up to the backup's end has
 * the backup's row count and checksum, the other tables the backup's row counts.
 */
async function assertRestoredToFrozenCopy(d: E2eDeployment, backup: any, asideUrl: string | undefined, expectVersion: string): Promise<void> {
  assert.ok(backup.frozenDatabase, `backup ${backup.id} has neither its pg_dump file ${backup.file} nor a frozen copy`);
  const client = new pg.Client({ connectionString: d.databaseUrl, application_name: 'dgu-test-inspect' });
  await client.connect();
  try {
    const oid = (await client.query('SELECT oid::bigint AS oid FROM pg_database WHERE datname = current_database()')).rows[0].oid;
    assert.equal(Number(oid), backup.frozenOid, `the live database is the frozen copy ${backup.frozenDatabase} (oid ${backup.frozenOid})`);
    const mark = await eventLogDigest(client, { upTo: backup.eventLog.maxLogSeq, like: backup.eventLog.checksum });
    assert.equal(mark.rowCount, backup.eventLog.rowCount, `event-log rows up to log_seq ${backup.eventLog.maxLogSeq}: as the backup counted`);
    assert.equal(mark.checksum, backup.eventLog.checksum, 'those rows are the backup\'s, unchanged');
  } finally {
    await client.end();
  }
  const now = await databaseFacts(d.databaseUrl);
  assert.deepEqual(now.versions, backup.migrationVersions, 'same schema_migrations as the backup');
  assert.deepEqual(now.tables, Object.keys(backup.rowCounts).sort(), 'same tables as the backup');
  assertSameRowsButSmokeWrites(now.rowCounts, backup.rowCounts as Record<string, number>, 'same per-table row counts as the backup (the event log aside)', ['dg_event_log']);
  if (asideUrl) {
    const asideSet = new Set((await eventLogRows(asideUrl)).map((r) => r.row));
    const resurrected = (await eventLogRows(d.databaseUrl)).filter((r) => r.logSeq > backup.eventLog.maxLogSeq && asideSet.has(r.row));
    assert.equal(resurrected.length, 0, `rows the restore should have discarded are live: ${resurrected.slice(0, 3).map((r) => r.row).join(' | ')}`);
  }
  const health = await getJson(`http://127.0.0.1:${d.port}/api/healthz`);
  assert.equal(health.status, 200);
  assert.equal(health.body.version, expectVersion, `${expectVersion} serves`);
}

/** What the deployment really runs: healthz version and the schema_migrations versions. */
export async function actualState(d: E2eDeployment): Promise<{ version: string | null; migrations: string[] }> {
  const health = await getJson(`http://127.0.0.1:${d.port}/api/healthz`).catch(() => ({ status: 0, body: null }));
  const client = new pg.Client({ connectionString: d.databaseUrl, application_name: 'dgu-test-inspect' });
  await client.connect();
  try {
    const { rows } = await client.query('SELECT version::text AS v FROM schema_migrations ORDER BY version');
    return { version: health.status === 200 ? health.body.version : null, migrations: rows.map((r) => r.v as string) };
  } finally {
    await client.end();
  }
}

export type { TrafficReport };
