import { untilWorkerServes } from '../../src/client/workerStart.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import assert from 'node:assert/strict';
import { createWriteStream, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import pg from 'pg';
import { Client, Connection } from '@temporalio/client';
import { createSampleDeployment, type SampleDeployment } from '../../src/demo/sampleDeployment.js';
import { createTestDatabase, type TestDatabase } from './postgres.js';
import { freePort } from './ports.js';
import type { TestTemporal } from './temporal.js';
import { filesUnder, findSecrets } from './secrets.js';
import { connect, statusReport, type Session } from '../../src/client/operations.js';
import { CliError, cliErrorText, EXIT } from '../../src/client/exitCodes.js';

export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const CLI = path.join(PROJECT_ROOT, 'bin', 'dg-upgrade.js');

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface WorkerProcess {
  child: ChildProcess;
  logFile: string;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export interface E2eDeployment extends SampleDeployment {
  db: TestDatabase;
  temporal: TestTemporal;
  temporalEnv: Record<string, string>;
  worker?: WorkerProcess;
  startWorker(extraEnv?: Record<string, string>): Promise<WorkerProcess>;
  cli(args: string[], opts?: { env?: Record<string, string> }): Promise<CliResult>;
  /**
   * `dg-upgrade status <target> --json` run in this process over one kept connection: the same
   * code as the CLI's (statusReport), its JSON on stdout, its exit code and error line. For the
   * polling loops of the tests: a CLI process per poll costs about half a CPU-second.
   */
  statusJson(target?: string[]): Promise<CliResult>;
  /** stdout and stderr of every `cli` call, for the secret search. */
  cliOutputs: string[];
  /** The worker log files (in the deployment's dir). */
  workerLogs: string[];
  /** Stops everything this deployment started and removes its database and files. */
  dispose(): Promise<void>;
}

export async function createE2eDeployment(
  temporal: TestTemporal,
  label: string,
  opts: { layout?: 'releases' | 'in-place'; approvalTimeout?: string; model?: 'source' | 'release'; withoutServiceAccounts?: boolean; target?: 'stand-in' | 'beam'; runtimeAdapter?: 'process' | 'command'; databaseUrlScheme?: 'postgres' | 'ecto'; allowRebuild?: boolean; adminPermissions?: string[] } = {},
): Promise<E2eDeployment> {
  const db = await createTestDatabase(label);
  const dir = mkdtempSync(path.join(os.tmpdir(), `dgu-${label}-`));
  // Unique per process and call, so leftovers of an earlier killed run (processes, runs) never share a name.
  const name = `${label.replace(/[^a-z0-9-]/g, '-').slice(0, 40)}-${process.pid.toString(36)}${randomBytes(2).toString('hex')}`;
  const sample = await createSampleDeployment({ dir, databaseUrl: db.url, port: await freePort(), name, ...opts });
  const temporalEnv = { TEMPORAL_ADDRESS: temporal.address, TEMPORAL_NAMESPACE: temporal.namespace, TEMPORAL_UI_URL: temporal.uiUrl };
  const baseEnv = { ...temporalEnv, DG_UPGRADE_PROFILE: sample.profilePath, ...sample.env };
  const workers: WorkerProcess[] = [];
  const cliOutputs: string[] = [];
  let session: Promise<Session> | undefined;
  const deployment: E2eDeployment = {
    ...sample,
    db,
    temporal,
    temporalEnv,
    cliOutputs,
    get workerLogs() {
      return workers.map((w) => w.logFile);
    },
    async startWorker(extraEnv = {}) {
      const logFile = path.join(dir, `worker-${workers.length + 1}.log`);
      const log = createWriteStream(logFile);
      const child = spawn(process.execPath, [CLI, 'worker'], { env: { ...process.env, ...baseEnv, ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout!.pipe(log);
      await untilWorkerServes(child, 60_000, (chunk) => log.write(chunk));
      const worker: WorkerProcess = {
        child,
        logFile,
        kill: async (signal = 'SIGTERM') => {
          if (child.exitCode !== null || child.signalCode !== null) return;
          const exited = new Promise((r) => child.once('exit', r));
          child.kill(signal);
          await exited;
        },
      };
      workers.push(worker);
      deployment.worker = worker;
      return worker;
    },
    async cli(args, cliOpts = {}) {
      const r = await execa(process.execPath, [CLI, ...args], { env: { ...baseEnv, ...cliOpts.env }, reject: false, timeout: 600_000 });
      cliOutputs.push(`${String(r.stdout)}\n${String(r.stderr)}`);
      return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
    },
    async statusJson(target = [name]) {
      session ??= connect(baseEnv).catch((err) => {
        session = undefined;
        throw err;
      });
      const i = target.indexOf('--workflow-id');
      const which = i >= 0 ? { workflowId: target[i + 1] } : { deployment: target[0] };
      let r: CliResult;
      try {
        r = { exitCode: 0, stdout: JSON.stringify(await statusReport(await session, which), null, 2), stderr: '' };
      } catch (err) {
        const e = err instanceof CliError ? err : new CliError((err as Error).message, EXIT.failed);
        r = { exitCode: e.exitCode, stdout: '', stderr: cliErrorText(e) };
      }
      cliOutputs.push(`${r.stdout}\n${r.stderr}`);
      return r;
    },
    async dispose() {
      await session?.then((s) => s.close()).catch(() => {});
      for (const w of workers) await w.kill('SIGKILL').catch(() => {});
      await sample.stopRuntime().catch(() => {});
      if (process.env.DGU_KEEP_TEST_DIRS) {
        process.stderr.write(`# kept ${dir} and database ${db.name} (DGU_KEEP_TEST_DIRS)\n`);
        return;
      }
      await db.drop().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return deployment;
}

/** What the tests compare before and after: migration versions, per-table row counts, event-log checksum. */
export async function databaseFacts(url: string) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const versions = (await client.query('SELECT version::text AS v FROM schema_migrations ORDER BY version')).rows.map((r) => r.v as string);
    const tables = (await client.query(`SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`)).rows.map((r) => r.tablename as string);
    const rowCounts: Record<string, number> = {};
    for (const t of tables) rowCounts[t] = Number((await client.query(`SELECT count(*) AS n FROM "${t}"`)).rows[0].n);
    const eventLog = (await client.query(`SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY log_seq), '')) AS c FROM dg_event_log t`)).rows[0].c as string;
    return { versions, tables, rowCounts, eventLogChecksum: eventLog };
  } finally {
    await client.end();
  }
}

export async function getJson(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const res = await fetch(url, { headers });
  const text = await res.text();
  try {
    return { status: res.status, body: JSON.parse(text) };
  } catch {
    return { status: res.status, body: text };
  }
}

/** Polls the app's /api/healthz every 50 ms while `fn` runs; returns what fn returned, every failed probe and the versions seen. */
export async function whileServing<T>(port: number, fn: () => Promise<T>): Promise<{ value: T; outages: string[]; versions: Set<string>; probes: number }> {
  const outages: string[] = [];
  const versions = new Set<string>();
  let stop = false;
  let probes = 0;
  const poller = (async () => {
    while (!stop) {
      probes++;
      try {
        const h = await getJson(`http://127.0.0.1:${port}/api/healthz`);
        if (h.status !== 200) outages.push(`${new Date().toISOString()} HTTP ${h.status}`);
        else versions.add(String(h.body.version));
      } catch (err) {
        outages.push(`${new Date().toISOString()} ${(err as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, 50));
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

/** Waits until the running app's projector has caught up, so database facts are stable. */
export async function waitCaughtUp(d: SampleDeployment, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await getJson(`http://127.0.0.1:${d.port}/api/v1/projections/health`, { authorization: `Bearer ${d.secrets.readerToken}`, 'x-tenant-id': 'default' });
    const projections: any[] = r.body?.data?.projections ?? [];
    if (r.status === 200 && projections.length && projections.every((p) => Number(p.pending_events) === 0)) return;
    if (Date.now() > deadline) throw new Error(`projector not caught up: ${JSON.stringify(r.body)}`);
    await new Promise((res) => setTimeout(res, 200));
  }
}

export async function listDatabases(prefix: string): Promise<string[]> {
  const { ADMIN_DATABASE_URL } = await import('./postgres.js');
  const client = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
  await client.connect();
  try {
    const { rows } = await client.query(`SELECT datname FROM pg_database WHERE datname LIKE $1 ORDER BY datname`, [`${prefix}%`]);
    return rows.map((r) => r.datname as string);
  } finally {
    await client.end();
  }
}

/** Polls `dg-upgrade status --json` until `predicate` holds. */
export async function waitForStatus(d: E2eDeployment, predicate: (status: any) => boolean, what: string, timeoutMs = 120_000, args: string[] = [d.name]): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    const r = await d.statusJson(args);
    last = r.stdout + r.stderr;
    if (r.exitCode === 0) {
      const s = JSON.parse(r.stdout);
      if (predicate(s)) return s;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${last}`);
    await new Promise((res) => setTimeout(res, 500));
  }
}

export function editProfile(d: SampleDeployment, edit: (deployment: any) => void): () => void {
  const original = readFileSync(d.profilePath, 'utf8');
  const profile = JSON.parse(original);
  edit(profile.deployments[d.name]);
  writeFileSync(d.profilePath, JSON.stringify(profile, null, 2));
  return () => writeFileSync(d.profilePath, original);
}

type Facts = Awaited<ReturnType<typeof databaseFacts>>;

/**
 * The rows the post-rollback smoke checks write through the app, as DecisionGraph does: one
 * catch_up replay run (check 4), and the escalation of workflow items that became overdue, which
 * every workflow read makes (`refresh_runtime!`: an action and a notification per item, once).
 */
const SMOKE_WRITTEN_TABLES = ['dg_workflow_actions', 'dg_workflow_notifications'];

/** Per-table row counts equal, but for the smoke checks' own writes (and the event log where `skip` says so). */
export function assertSameRowsButSmokeWrites(now: Record<string, number>, held: Record<string, number>, message: string, skip: string[] = []): void {
  const { dg_projection_runs: runsNow, ...restNow } = now;
  const { dg_projection_runs: runsHeld, ...restHeld } = held;
  for (const table of [...SMOKE_WRITTEN_TABLES, ...skip]) {
    if (!SMOKE_WRITTEN_TABLES.includes(table)) {
      delete restNow[table];
      delete restHeld[table];
      continue;
    }
    if (restNow[table] === undefined || restHeld[table] === undefined) continue;
    assert.ok(restNow[table]! >= restHeld[table]!, `${table}: ${restNow[table]} rows, fewer than the ${restHeld[table]} held`);
    assert.ok(restNow[table]! - restHeld[table]! <= (restHeld.dg_workflow_items ?? 0), `${table}: at most one escalation per workflow item was added`);
    delete restNow[table];
    delete restHeld[table];
  }
  assert.deepEqual(restNow, restHeld, message);
  assert.equal(runsNow, (runsHeld ?? 0) + 1, 'only the smoke check replay run was added');
}

/**
 * For an idle install only: with writes flowing, facts taken before the upgrade are stale by the
 * time of the backup; use assertRestoredToBackup (liveRun.ts), which compares with the backup.
 * The database after a rollback equals the pre-upgrade one. The single allowed difference: the
 * post-rollback smoke check admits one catch_up replay (the guide's check 4), which the app
 * records as one more row in dg_projection_runs.
 */
export async function assertRestoredToPreUpgrade(d: SampleDeployment, before: Facts): Promise<void> {
  const now = await databaseFacts(d.databaseUrl);
  assert.deepEqual(now.versions, before.versions, 'same schema_migrations');
  assert.deepEqual(now.tables, before.tables, 'no table created by the new migrations survives');
  assertSameRowsButSmokeWrites(now.rowCounts, before.rowCounts, 'same per-table row counts');
  assert.equal(now.eventLogChecksum, before.eventLogChecksum, 'same dg_event_log rows');
  const health = await getJson(`http://127.0.0.1:${d.port}/api/healthz`);
  assert.equal(health.status, 200);
  assert.equal(health.body.version, '0.1.0', 'the old version serves');
}

/** Pids of processes whose environment holds `NAME=value`. */
export function processesWithEnv(name: string, value: string): number[] {
  const pids: number[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (/\) Z /.test(stat)) continue;
      if (readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(`${name}=${value}`)) pids.push(Number(pid));
    } catch {
      /* gone */
    }
  }
  return pids;
}

/** How many sockets listen on a TCP port (from /proc/net/tcp). */
export function listenersOnPort(port: number): number {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  let n = 0;
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    try {
      for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
        const cols = line.trim().split(/\s+/);
        if (cols[1]?.endsWith(`:${hex}`) && cols[3] === '0A') n++;
      }
    } catch {
      /* no ipv6 */
    }
  }
  return n;
}

/** A deployment serving v0.1.0 with its projector caught up and a worker running: the usual start of an e2e test. */
export async function createRunningDeployment(temporal: TestTemporal, label: string, opts: Parameters<typeof createE2eDeployment>[2] = {}): Promise<E2eDeployment> {
  const d = await createE2eDeployment(temporal, label, opts);
  await d.bootstrap();
  await waitCaughtUp(d);
  await d.startWorker();
  return d;
}

/** Every run's history (all runs of workflow IDs starting with `prefix`) as one text. */
export async function historyText(temporal: TestTemporal, prefix: string): Promise<string> {
  const connection = await Connection.connect({ address: temporal.address });
  try {
    const client = new Client({ connection });
    const texts: string[] = [];
    for await (const wf of client.workflow.list({ query: `WorkflowId STARTS_WITH "${prefix}"` })) {
      texts.push(JSON.stringify(await client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory()));
    }
    return texts.join('\n');
  } finally {
    await connection.close();
  }
}

/**
 * No secret value of the deployment appears, raw, base64 (any alignment, also inside decoded
 * payloads) or hex, in the given workflow histories, nor in the worker logs, the CLI outputs of
 * the deployment, or any file in its dir (except secrets/, which holds them by design).
 */
export function assertNoSecrets(d: SampleDeployment & Partial<Pick<E2eDeployment, 'cliOutputs' | 'workerLogs'>>, historyText: string): void {
  assert.ok(historyText.length > 1000, 'there is history to search');
  const decoded = historyText.replace(/"data":"([A-Za-z0-9+/=]+)"/g, (_, b64: string) => Buffer.from(b64, 'base64').toString('utf8'));
  const sources: Array<{ source: string; text: string | Buffer }> = [
    { source: 'workflow histories', text: historyText },
    { source: 'workflow histories (payloads decoded)', text: decoded },
    ...(d.cliOutputs ?? []).map((text, i) => ({ source: `CLI output #${i + 1}`, text })),
    ...filesUnder(d.dir, (f) => f === path.join(d.dir, 'secrets')),
  ];
  const hits = findSecrets(d.secrets, sources);
  assert.deepEqual(hits, [], `secret values found: ${hits.map((h) => `${h.secret} (${h.form}) in ${h.source}`).join('; ')}`);
}
