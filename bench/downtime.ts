/**
 * Benchmark (issue 19): downtime of dg-upgrade next to two baselines done by a shell script,
 * interleaved (the order rotating per pair), on databases of about 8, 1024 and 4096 MiB:
 *   - guide: the seed guide's steps done literally (bench/guide-baseline.sh: stop, pg_dump,
 *     checkout, deps.get, compile, migrate, start);
 *   - online-dump: pg_dump while the old version still serves, then the guide's steps
 *     (bench/guide-baseline.sh with DUMP_ONLINE=1): short downtime, but the writes after the dump are not in
 *     the backup.
 * Plus dg-upgrade's rollback downtime at each size, the upgrade's `backup` step (the frozen copy,
 * CREATE DATABASE ... TEMPLATE ... STRATEGY FILE_COPY, inside the downtime) against the floor on
 * this disk: the same statement by hand on a deployment made the same way, at the same point of
 * the same sequence (a `floor` run right after each dg run; see floorRun), the rollback's steps,
 * and the worker's peak RSS (VmHWM). Raw copies of the template at each database's creation and
 * after the rollback are printed too, for information.
 * Sample target v0.1.0 -> v0.2.0, 1.5 s compile, a 20 Hz prober on /api/healthz. Downtime: last
 * 200 before the first failed probe to the first 200 after the last.
 *   node dist/bench/downtime.js [pairs=3] [sizes=8,1024,4096]
 * The bulk rows are generated once per size into a template database and copied per run
 * (CREATE DATABASE ... TEMPLATE ... STRATEGY FILE_COPY); every database it creates is dropped at the end.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { runDirOf, getDeployment, loadProfileFile } from '../src/config/profile.js';
import { runtimeEnv } from '../src/activities/deployment.js';
import { setProfilePath } from '../src/activities/deployment.js';
import { createE2eDeployment, editProfile, PROJECT_ROOT, waitCaughtUp, type E2eDeployment } from '../test/support/e2e.js';
import { ADMIN_DATABASE_URL, dropDatabasesWithPrefix, withAdmin } from '../test/support/postgres.js';
import { fillEventLog } from './support/bulkEvents.js';
import { startTestTemporal, type TestTemporal } from '../test/support/temporal.js';
import { bundleWorkflowCode, DefaultLogger } from '@temporalio/worker';
import { PAYLOAD_CONVERTER_PATH, WORKFLOWS_PATH } from '../src/worker/bundle.js';
import { WORKFLOW_BUNDLE_ENV } from '../src/worker/workflowCode.js';
import { downtimeOf, median, medianRange, startProber } from './support/healthProber.js';
import { describeDiskWindow, diskWindow, waitForQuietDisk, type DiskWindow } from './support/diskActivity.js';

const pairs = Number(process.argv[2] ?? 3);
const sizes = (process.argv[3] ?? '8,1024,4096').split(',').map(Number);
const COMPILE_MS = '1500';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function sizeMiB(db: string): Promise<number> {
  return withAdmin(async (c) => Number((await c.query('SELECT pg_database_size($1)::bigint AS n', [db])).rows[0].n) / 1024 / 1024);
}

/**
 * A deployment whose database is a copy of `template` (v0.1.0 migrated, bulk rows), serving v0.1.0.
 * The copy is timed (a CHECKPOINT untimed, then CREATE DATABASE ... TEMPLATE <gold> STRATEGY
 * FILE_COPY) and printed for information; the backup step's floor is floorRun's.
 */
async function deploymentFrom(temporal: TestTemporal, label: string, template: string): Promise<{ d: E2eDeployment; rawCopyMs: number; rawDisk?: DiskWindow; createdAt: number }> {
  const d = await createE2eDeployment(temporal, label);
  let rawCopyMs = NaN;
  let rawDisk: DiskWindow | undefined;
  let createdAt = NaN;
  try {
    editProfile(d, (p) => (p.toolchain.env.DG_FIXTURE_COMPILE_MS = COMPILE_MS));
    await withAdmin(async (c) => {
      await c.query(`DROP DATABASE "${d.db.name}" WITH (FORCE)`);
      await c.query('CHECKPOINT');
      const disk = diskWindow();
      const t0 = performance.now();
      await c.query(`CREATE DATABASE "${d.db.name}" TEMPLATE "${template}" STRATEGY FILE_COPY`);
      rawCopyMs = Math.round(performance.now() - t0);
      createdAt = Date.now();
      rawDisk = disk.stop();
    });
    await d.bootstrap();
    await waitCaughtUp(d, 600_000);
  } catch (err) {
    await d.dispose().catch(() => {});
    throw err;
  }
  return { d, rawCopyMs, rawDisk, createdAt };
}

/** Peak RSS (VmHWM) of a live process in bytes, undefined when it is gone. */
function peakRssBytes(pid: number | undefined): number | undefined {
  if (!pid) return undefined;
  try {
    const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Samples (2 Hz) the current RSS of the worker's descendants, max per command name: the worker
 * spawns pg_dump/pg_restore, git, mix and the app itself; they are not the worker's RSS, but the
 * table says what they reached. The app server (started detached by the runtime adapter) is
 * reported by name like the rest.
 */
function startChildSampler(rootPid: number | undefined): { stop(): Map<string, number> } {
  const peak = new Map<string, number>();
  if (!rootPid) return { stop: () => peak };
  const tick = () => {
    const parent = new Map<number, number>();
    const comm = new Map<number, string>();
    for (const e of readdirSync('/proc')) {
      if (!/^\d+$/.test(e)) continue;
      try {
        const st = readFileSync(`/proc/${e}/stat`, 'utf8');
        const close = st.lastIndexOf(')');
        comm.set(Number(e), st.slice(st.indexOf('(') + 1, close));
        parent.set(Number(e), Number(st.slice(close + 2).split(' ')[1]));
      } catch { /* gone */ }
    }
    for (const [pid, name] of comm) {
      let p = parent.get(pid);
      let depth = 0;
      while (p && p !== rootPid && depth++ < 64) p = parent.get(p);
      if (p !== rootPid) continue;
      try {
        const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
        if (m) peak.set(name, Math.max(peak.get(name) ?? 0, Number(m[1]) * 1024));
      } catch { /* gone */ }
    }
  };
  const timer = setInterval(tick, 500);
  return {
    stop() {
      clearInterval(timer);
      return peak;
    },
  };
}

/**
 * Polls pg_stat_activity at 20 Hz for the backup step's CREATE DATABASE ... TEMPLATE "<live>":
 * how long the statement itself ran on the server (to within a poll) and what it waited on, so
 * that the step's duration splits into the copy and the rest (activity dispatch, session check,
 * record files).
 */
function startCopyWatch(live: string): { stop(): Promise<{ statementMs?: number; waits: string; disk?: DiskWindow }> } {
  const c = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
  let running = true;
  let statementMs: number | undefined;
  let window: ReturnType<typeof diskWindow> | undefined;
  let disk: DiskWindow | undefined;
  const waits = new Map<string, number>();
  const loop = (async () => {
    await c.connect();
    try {
      while (running) {
        const t = Date.now();
        const { rows } = await c.query(
          `SELECT extract(epoch FROM clock_timestamp() - query_start) * 1000 AS ms, coalesce(wait_event_type || ':' || wait_event, 'running') AS w
             FROM pg_stat_activity WHERE state = 'active' AND query ILIKE 'CREATE DATABASE %' AND position($1 in query) > 0`,
          [`TEMPLATE "${live}"`],
        );
        if (rows.length && !window && !disk) window = diskWindow();
        if (!rows.length && window) (disk = window.stop()), (window = undefined);
        for (const r of rows) {
          statementMs = Math.max(statementMs ?? 0, Math.round(Number(r.ms)));
          waits.set(r.w, (waits.get(r.w) ?? 0) + 1);
        }
        await sleep(Math.max(0, t + 50 - Date.now()));
      }
    } finally {
      await c.end().catch(() => {});
    }
  })();
  return {
    async stop() {
      running = false;
      await loop.catch((err) => process.stderr.write(`# copy watch failed: ${(err as Error).message}\n`));
      return { statementMs, disk, waits: [...waits].sort((a, b) => b[1] - a[1]).map(([w, n]) => `${w}x${n}`).join(',') };
    },
  };
}

type Kind = 'dg' | 'guide' | 'online';
const KINDS: readonly Kind[] = ['dg', 'guide', 'online'];

interface Run {
  downtime: number;
  failedProbes: number;
  total: number;
  rawCopyMs: number;
  /** dg: a second raw FILE_COPY of the same database after the rollback (app stopped), bracketing the backup step in time. */
  rawAfterMs?: number;
  rollbackDowntime?: number;
  rollbackTotal?: number;
  /** Upgrade steps' durationMs (dg) or the script's phases (baselines). */
  steps: Record<string, number>;
  rollbackSteps?: Record<string, number>;
  /** dg: the backup step's CREATE DATABASE statement on the server (20 Hz polls), and its wait events (samples). */
  copyStatementMs?: number;
  copyWaits?: string;
  /** What the disk did during each copy: the raw one before, the backup's, the raw one after. */
  rawDisk?: DiskWindow;
  copyDisk?: DiskWindow;
  rawAfterDisk?: DiskWindow;
  /** dg: when the backup step started, counted from the end of the database's creation (the floor run copies at the same point). */
  backupAfterCreateMs?: number;
  /** floor: the raw FILE_COPY of the live database, app stopped, at the dg run's backupAfterCreateMs. */
  floorMs?: number;
  floorDisk?: DiskWindow;
  /** How long the run waited for a quiet disk before it started. */
  quietWaitMs?: number;
  workerPeakRss?: number;
  /** VmHWM once the worker serves, before the upgrade: what its start cost. */
  workerStartRss?: number;
  /** Where the worker's workflow code came from (its log line). */
  workerCodeOrigin?: string;
  childPeaks?: Map<string, number>;
}

const stepsOf = (status: any, names?: readonly string[]): Record<string, number> =>
  Object.fromEntries(
    ((status?.steps ?? []) as Array<{ name: string; durationMs?: number }>)
      .filter((st) => typeof st.durationMs === 'number' && (!names || names.includes(st.name)))
      .map((st) => [st.name, st.durationMs!]),
  );

async function dgUpgradeRun(temporal: TestTemporal, label: string, template: string): Promise<Run> {
  const { d, rawCopyMs, rawDisk, createdAt } = await deploymentFrom(temporal, label, template);
  let workerPid: number | undefined;
  let sampler: ReturnType<typeof startChildSampler> | undefined;
  let run: Omit<Run, 'workerPeakRss' | 'childPeaks' | 'workerStartRss' | 'workerCodeOrigin'> | undefined;
  let workerPeakRss: number | undefined;
  let workerStartRss: number | undefined;
  let workerCodeOrigin: string | undefined;
  let childPeaks: Map<string, number> | undefined;
  let workerLog: string | undefined;
  try {
    // The workflow code bundled once by the bench (as setup does), not webpack at each worker start.
    const worker = await d.startWorker({ [WORKFLOW_BUNDLE_ENV]: workflowBundleFile });
    workerPid = worker.child.pid;
    workerLog = worker.logFile;
    workerStartRss = peakRssBytes(workerPid);
    sampler = startChildSampler(workerPid);
    const copyWatch = startCopyWatch(d.db.name);
    let prober = startProber(d.port);
    const started = Date.now();
    const up = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--yes', '--follow', '--json']);
    const total = Date.now() - started;
    await sleep(300);
    const upDown = downtimeOf(await prober.stop());
    const copy = await copyWatch.stop();
    if (up.exitCode !== 0) throw new Error(`upgrade failed: ${up.stdout.slice(-2000)} ${up.stderr}`);
    const upStatus = JSON.parse(up.stdout).status;
    const steps = stepsOf(upStatus, ['build', 'stopOld', 'backup', 'migrate', 'startNew', 'smoke', 'portableBackup']);
    const backupStartedAt = Date.parse(((upStatus?.steps ?? []) as Array<{ name: string; startedAt?: string }>).find((st) => st.name === 'backup')?.startedAt ?? '');
    const backupAfterCreateMs = Number.isFinite(backupStartedAt) ? backupStartedAt - createdAt : undefined;
    prober = startProber(d.port);
    const rbStarted = Date.now();
    const rb = await d.cli(['rollback', '--deployment', d.name, '--follow', '--json']);
    const rollbackTotal = Date.now() - rbStarted;
    await sleep(300);
    const rollbackDowntime = downtimeOf(await prober.stop()).downtime;
    if (rb.exitCode !== 0) throw new Error(`rollback failed: ${rb.stdout.slice(-2000)} ${rb.stderr}`);
    let rollbackSteps: Record<string, number> = {};
    try {
      rollbackSteps = stepsOf(JSON.parse(rb.stdout).status);
    } catch (err) {
      process.stderr.write(`# rollback --json output not parsed: ${(err as Error).message}\n`);
    }
    // The raw floor once more, after: the same database (the swapped-back frozen copy), the app stopped.
    let rawAfterMs: number | undefined;
    let rawAfterDisk: DiskWindow | undefined;
    const rawAfter = `${d.db.name}_rawafter`;
    try {
      await d.stopRuntime();
      rawAfterMs = await withAdmin(async (c) => {
        await c.query('CHECKPOINT');
        const disk = diskWindow();
        const t0 = performance.now();
        await c.query(`CREATE DATABASE "${rawAfter}" TEMPLATE "${d.db.name}" STRATEGY FILE_COPY`);
        const ms = Math.round(performance.now() - t0);
        rawAfterDisk = disk.stop();
        return ms;
      });
    } catch (err) {
      process.stderr.write(`# raw FILE_COPY after the rollback failed: ${(err as Error).message}\n`);
    } finally {
      await withAdmin((c) => c.query(`DROP DATABASE IF EXISTS "${rawAfter}" WITH (FORCE)`)).catch(() => {});
    }
    run = { downtime: upDown.downtime, failedProbes: upDown.failed, total, rawCopyMs, rawAfterMs, backupAfterCreateMs, rollbackDowntime, rollbackTotal, steps, rollbackSteps, copyStatementMs: copy.statementMs, copyWaits: copy.waits, rawDisk, copyDisk: copy.disk, rawAfterDisk };
  } finally {
    // Right before dispose: the worker's peak RSS over its whole life (upgrade and rollback).
    workerPeakRss = peakRssBytes(workerPid);
    childPeaks = sampler?.stop();
    try {
      workerCodeOrigin = /workflow code build \S+ \(from ([^)]+)\)/.exec(readFileSync(workerLog!, 'utf8'))?.[1];
    } catch { /* no log */ }
    await d.dispose();
  }
  return { ...run!, workerPeakRss, workerStartRss, workerCodeOrigin, childPeaks };
}

async function baselineRun(temporal: TestTemporal, label: string, template: string, dumpOnline: '' | '1'): Promise<Run> {
  const { d, rawCopyMs, rawDisk } = await deploymentFrom(temporal, label, template);
  const newPidfile = path.join(d.dir, 'baseline.pid');
  try {
    setProfilePath(d.profilePath);
    Object.assign(process.env, d.env);
    const resolved = getDeployment(loadProfileFile(d.profilePath), d.name);
    const record = JSON.parse(readFileSync(path.join(runDirOf(resolved), 'runtime.json'), 'utf8'));
    const env = {
      ...process.env,
      ...runtimeEnv(resolved),
      REPO: d.target.repoDir,
      TARGET_REF: 'v0.2.0',
      MIX: resolved.profile.toolchain.mix,
      PIDFILE: path.join(d.dir, 'old.pid'),
      NEW_PIDFILE: newPidfile,
      BACKUP_FILE: path.join(d.dir, 'baseline.dump'),
      RUNTIME_LOG: path.join(d.dir, 'baseline-runtime.log'),
      GIT_CONFIG_GLOBAL: '/dev/null',
      DUMP_ONLINE: dumpOnline,
    };
    writeFileSync(env.PIDFILE, String(record.pid));
    const prober = startProber(d.port);
    const started = Date.now();
    let out = '';
    const code = await new Promise<number>((resolve) => {
      const child = spawn('bash', [path.join(PROJECT_ROOT, 'bench', 'guide-baseline.sh')], { env, stdio: ['ignore', 'pipe', 'inherit'] });
      child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
      child.once('exit', (c) => resolve(c ?? 1));
    });
    const total = Date.now() - started;
    await sleep(300);
    const down = downtimeOf(await prober.stop());
    if (code !== 0) throw new Error(`guide-baseline.sh${dumpOnline ? " (DUMP_ONLINE=1)" : ""} exited with ${code}`);
    // The script's phases: "<ms> <phase> ..." lines, each phase until the next line.
    const marks = out
      .split('\n')
      .map((l) => /^(\d{13}) (\S+)/.exec(l))
      .filter((m): m is RegExpExecArray => !!m)
      .map((m) => ({ at: Number(m[1]), phase: m[2]! }));
    const steps: Record<string, number> = {};
    for (let i = 0; i + 1 < marks.length; i++) steps[marks[i]!.phase] = marks[i + 1]!.at - marks[i]!.at;
    return { downtime: down.downtime, failedProbes: down.failed, total, rawCopyMs, rawDisk, steps };
  } finally {
    if (existsSync(newPidfile)) {
      const pid = Number(readFileSync(newPidfile, 'utf8'));
      try { process.kill(-pid, 'SIGTERM'); } catch { try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ } }
      await sleep(500);
    }
    await d.dispose();
  }
}

/**
 * The floor of the backup step, measured where the step runs: a deployment made exactly as the dg
 * run's (its database copied from the template, bootstrapped, serving), left serving until as long
 * after its creation as the dg run's backup step started, then a CHECKPOINT (as
 * checkpointBeforeStop), the app stopped, and the same CREATE DATABASE ... TEMPLATE <live>
 * STRATEGY FILE_COPY, timed, by hand, the copy kept until the end as the frozen copy is. On this
 * VM the same statement takes 1.2 to 3 s at 1 GiB depending on what the disk did in the last
 * seconds (a write soon after a large delete is fast), so the floor is taken in the same sequence,
 * not at another moment (docs/decisions.md, "A copy is compared with a copy made in the same sequence").
 */
async function floorRun(temporal: TestTemporal, label: string, template: string, afterCreateMs: number): Promise<Run> {
  const { d, rawCopyMs, rawDisk, createdAt } = await deploymentFrom(temporal, label, template);
  const scratch = `${d.db.name}_floor`;
  try {
    const waitMs = createdAt + afterCreateMs - Date.now();
    if (waitMs > 0) await sleep(waitMs);
    const started = Date.now();
    await withAdmin((c) => c.query('CHECKPOINT'));
    await d.stopRuntime();
    const { ms, disk } = await withAdmin(async (c) => {
      const window = diskWindow();
      const t0 = performance.now();
      await c.query(`CREATE DATABASE "${scratch}" TEMPLATE "${d.db.name}" STRATEGY FILE_COPY`);
      return { ms: Math.round(performance.now() - t0), disk: window.stop() };
    });
    return { downtime: NaN, failedProbes: 0, total: Date.now() - started, rawCopyMs, rawDisk, steps: {}, floorMs: ms, floorDisk: disk, backupAfterCreateMs: started - createdAt };
  } finally {
    await withAdmin((c) => c.query(`DROP DATABASE IF EXISTS "${scratch}" WITH (FORCE)`)).catch(() => {});
    await d.dispose();
  }
}

const runOf = (which: Kind, temporal: TestTemporal, label: string, gold: string): Promise<Run> =>
  which === 'dg'
    ? dgUpgradeRun(temporal, label, gold)
    : baselineRun(temporal, label, gold, which === 'guide' ? '' : '1');

const fmtSteps = (steps: Record<string, number> | undefined) =>
  Object.entries(steps ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
const MB = (bytes: number) => bytes / 1e6;

interface Row {
  requested: number;
  size: number;
  runs: Record<Kind | 'floor', Run[]>;
}

const benchStarted = Date.now();
const workflowBundleFile = path.join(mkdtempSync(path.join(os.tmpdir(), 'dgu-bench-bundle-')), 'workflow-bundle.js');
writeFileSync(
  workflowBundleFile,
  (await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, payloadConverterPath: PAYLOAD_CONVERTER_PATH, logger: new DefaultLogger('WARN') })).code,
);
const temporal = await startTestTemporal();
const goldPrefix = `dgu_benchgold_${process.pid}`;
const rows: Row[] = [];
try {
  for (const size of sizes) {
    // The template: a bootstrapped v0.1.0 database (migrations, seed, projections caught up) plus bulk rows.
    const gold = `${goldPrefix}_${size}`;
    const g = await createE2eDeployment(temporal, `gold${size}`);
    try {
      await g.bootstrap();
      await waitCaughtUp(g);
      await g.stopRuntime();
      await fillEventLog(g.db.name, size);
      await withAdmin(async (c) => {
        await c.query('CHECKPOINT');
        await c.query(`CREATE DATABASE "${gold}" TEMPLATE "${g.db.name}" STRATEGY FILE_COPY`);
      });
    } finally {
      await g.dispose();
    }
    const actual = await sizeMiB(gold);
    process.stderr.write(`# ${size} MiB: template ${gold} is ${actual.toFixed(0)} MiB\n`);
    const row: Row = { requested: size, size: Math.round(actual), runs: { dg: [], guide: [], online: [], floor: [] } };
    rows.push(row);
    for (let i = 0; i < pairs; i++) {
      // Interleaved, the order rotating per pair (dg/guide/online, guide/online/dg, ...), so a drift of the machine hits all alike.
      const order = KINDS.map((_, k) => KINDS[(k + i) % KINDS.length]!);
      for (const which of order) {
        // Every run starts on a quiet disk: a DROP DATABASE of gigabytes or a dump leaves writeback going for seconds.
        const quietWaitMs = await waitForQuietDisk();
        const r = { ...(await runOf(which, temporal, `b${which.slice(0, 2)}${size}x${i}`, gold)), quietWaitMs };
        row.runs[which].push(r);
        process.stderr.write(
          `# ${size} MiB pair ${i + 1} ${which}: downtime ${r.downtime} ms (${r.failedProbes} failed probes), total ${r.total} ms, raw FILE_COPY ${r.rawCopyMs} ms${r.rawAfterMs !== undefined ? ` (after the rollback ${r.rawAfterMs} ms)` : ''}` +
            (r.rollbackDowntime !== undefined ? `, rollback downtime ${r.rollbackDowntime} ms (total ${r.rollbackTotal} ms)` : '') +
            `  [${fmtSteps(r.steps)}]` +
            (r.rollbackSteps ? `  rollback [${fmtSteps(r.rollbackSteps)}]` : '') +
            (r.copyWaits !== undefined ? `  backup's CREATE DATABASE ${r.copyStatementMs ?? '?'} ms {${r.copyWaits}}` : '') +
            `  disk: waited ${r.quietWaitMs} ms for quiet; raw copy: ${describeDiskWindow(r.rawDisk)}` +
            (r.copyDisk ? `; backup's copy: ${describeDiskWindow(r.copyDisk)}` : '') +
            (r.rawAfterDisk ? `; raw copy after: ${describeDiskWindow(r.rawAfterDisk)}` : '') +
            (r.workerPeakRss !== undefined ? `  worker VmHWM ${MB(r.workerPeakRss).toFixed(1)} MB (${r.workerStartRss !== undefined ? MB(r.workerStartRss).toFixed(1) : '?'} MB once serving; code from ${r.workerCodeOrigin ?? '?'})` : '') +
            (r.childPeaks?.size ? `  children peak RSS MB {${[...r.childPeaks].map(([n, b]) => `${n}=${MB(b).toFixed(1)}`).join(' ')}}` : '') +
            '\n',
        );
        if (which === 'dg' && r.backupAfterCreateMs !== undefined) {
          // Right after its dg run, the same sequence by hand up to the backup's point, then the raw copy.
          const quiet = await waitForQuietDisk();
          const f = { ...(await floorRun(temporal, `bfl${size}x${i}`, gold, r.backupAfterCreateMs)), quietWaitMs: quiet };
          row.runs.floor.push(f);
          process.stderr.write(
            `# ${size} MiB pair ${i + 1} floor: raw FILE_COPY of the live db ${f.floorMs} ms at ${f.backupAfterCreateMs} ms after its creation (dg backup at ${r.backupAfterCreateMs} ms)` +
              `  disk: waited ${quiet} ms for quiet; floor copy: ${describeDiskWindow(f.floorDisk)}\n`,
          );
        }
      }
    }
    await dropDatabasesWithPrefix(gold);
  }
} finally {
  await dropDatabasesWithPrefix(goldPrefix).catch(() => {});
  await temporal.dispose();
  rmSync(path.dirname(workflowBundleFile), { recursive: true, force: true });
}

// ---- report ----
/** Per dg run: backup step / the mean of the raw copies before the upgrade and after the rollback (drift of the machine halved). */
const bracketRatios = (rs: Run[]): number[] =>
  rs.filter((x) => x.steps.backup !== undefined && x.rawAfterMs !== undefined).map((x) => x.steps.backup! / ((x.rawCopyMs + x.rawAfterMs!) / 2));
const vals = (rs: Run[], f: (r: Run) => number | undefined): number[] => rs.map(f).filter((x): x is number => typeof x === 'number' && Number.isFinite(x));
/** Per pair a/b (pairs where both exist). */
const pairRatios = (a: number[], b: number[]): number[] => a.slice(0, Math.min(a.length, b.length)).map((x, i) => x / b[i]!).filter(Number.isFinite);
const line = (name: string, text: string) => console.log(`  ${name.padEnd(48)} ${text}`);
/** Ratio of the medians, and the per-pair (or, given `per`, per-run) ratios' median [min-max]. */
const ratioText = (a: number[], b: number[], per = pairRatios(a, b)) => {
  const r = median(a) / median(b);
  return Number.isFinite(r) ? `${r.toFixed(2)} (ratio of medians; per pair/run ${medianRange(per, 2)})` : '-';
};

console.log(
  `downtime (issue 19): dg-upgrade (backups.method frozen-copy) vs the guide's steps by hand (bench/guide-baseline.sh) vs pg_dump online before the stop (bench/guide-baseline.sh with DUMP_ONLINE=1; ` +
    `writes after the dump are NOT in its backup), v0.1.0 -> v0.2.0, compile ${COMPILE_MS} ms, ${pairs} interleaved triples (order rotating per pair), 20 Hz prober on /api/healthz; ` +
    `every figure: median [min-max]; MB = 10^6 bytes; ${((Date.now() - benchStarted) / 60000).toFixed(1)} min wall clock`,
);
const ref = rows.find((r) => r.requested === 8) ?? rows[0];
for (const r of rows) {
  const { dg, guide, online } = r.runs;
  console.log(`\n== ${r.size} MiB (requested ${r.requested}), n = ${dg.length}/${guide.length}/${online.length} (dg/guide/online) ==`);
  line('upgrade downtime ms: dg-upgrade', medianRange(vals(dg, (x) => x.downtime)));
  line('upgrade downtime ms: guide by hand', medianRange(vals(guide, (x) => x.downtime)));
  line('upgrade downtime ms: online-dump', medianRange(vals(online, (x) => x.downtime)));
  line('upgrade total ms: dg-upgrade', medianRange(vals(dg, (x) => x.total)));
  line('upgrade total ms: guide by hand', medianRange(vals(guide, (x) => x.total)));
  line('upgrade total ms: online-dump', medianRange(vals(online, (x) => x.total)));
  line('guide pg_dump ms (inside its downtime)', medianRange(vals(guide, (x) => x.steps.pg_dump)));
  line('online-dump pg_dump ms (before its stop)', medianRange(vals(online, (x) => x.steps.pg_dump)));
  for (const st of ['build', 'stopOld', 'backup', 'migrate', 'startNew', 'smoke', 'portableBackup']) line(`dg upgrade step ${st} ms`, medianRange(vals(dg, (x) => x.steps[st])));
  line("backup's CREATE DATABASE statement ms (server)", medianRange(vals(dg, (x) => x.copyStatementMs)));
  line('raw FILE_COPY of the same db ms (dg runs)', medianRange(vals(dg, (x) => x.rawCopyMs)));
  line('raw FILE_COPY after the rollback ms (dg runs)', medianRange(vals(dg, (x) => x.rawAfterMs)));
  line('raw FILE_COPY of the same db ms (all runs)', medianRange(vals([...dg, ...guide, ...online], (x) => x.rawCopyMs)));
  line("raw FILE_COPY at the backup's point (floor runs)", medianRange(vals(r.runs.floor, (x) => x.floorMs)));
  line('rollback downtime ms: dg-upgrade', medianRange(vals(dg, (x) => x.rollbackDowntime)));
  line('rollback total ms: dg-upgrade', medianRange(vals(dg, (x) => x.rollbackTotal)));
  const rbNames = [...new Set(dg.flatMap((x) => Object.keys(x.rollbackSteps ?? {})))];
  for (const st of rbNames) line(`dg rollback step ${st} ms`, medianRange(vals(dg, (x) => x.rollbackSteps?.[st])));
  const rss = vals(dg, (x) => (x.workerPeakRss === undefined ? undefined : MB(x.workerPeakRss)));
  line('worker peak RSS MB (VmHWM before dispose)', `${medianRange(rss, 1)}; max ${rss.length ? Math.max(...rss).toFixed(1) : '-'}`);
  line('worker VmHWM MB once serving (before upgrade)', medianRange(vals(dg, (x) => (x.workerStartRss === undefined ? undefined : MB(x.workerStartRss))), 1));
  const childNames = [...new Set(dg.flatMap((x) => [...(x.childPeaks?.keys() ?? [])]))].sort();
  if (childNames.length)
    line(
      "worker's children peak RSS MB (2 Hz samples)",
      childNames.map((n) => `${n} ${Math.max(...dg.map((x) => MB(x.childPeaks?.get(n) ?? 0))).toFixed(1)}`).join(', '),
    );
  console.log('  ratios:');
  line('dg/guide upgrade downtime', ratioText(vals(dg, (x) => x.downtime), vals(guide, (x) => x.downtime)));
  line('dg/online-dump upgrade downtime', ratioText(vals(dg, (x) => x.downtime), vals(online, (x) => x.downtime)));
  const perRun = (f: (x: Run) => number | undefined) => vals(dg, (x) => { const v = f(x); return v === undefined ? undefined : v / x.rawCopyMs; });
  line('backup step / raw FILE_COPY', ratioText(vals(dg, (x) => x.steps.backup), vals(dg, (x) => x.rawCopyMs), perRun((x) => x.steps.backup)));
  line("backup's CREATE DATABASE / raw FILE_COPY", ratioText(vals(dg, (x) => x.copyStatementMs), vals(dg, (x) => x.rawCopyMs), perRun((x) => x.copyStatementMs)));
  line('backup step / mean of raw before and after', medianRange(bracketRatios(dg), 2) + ' (per run)');
  line("backup step / raw FILE_COPY at the backup's point", ratioText(vals(dg, (x) => x.steps.backup), vals(r.runs.floor, (x) => x.floorMs)));
  if (ref) {
    const here = vals(dg, (x) => x.rollbackDowntime);
    const there = vals(ref.runs.dg, (x) => x.rollbackDowntime);
    const diff = median(here) - median(there);
    const lo = Math.min(...here) - Math.max(...there);
    const hi = Math.max(...here) - Math.min(...there);
    line(`rollback downtime vs ${ref.size} MiB, ms`, Number.isFinite(diff) ? `${diff >= 0 ? '+' : ''}${diff.toFixed(0)} (difference of medians; worst-case spread [${lo.toFixed(0)}..${hi.toFixed(0)}])` : '-');
  }
}

// The acceptance's three checks, on the medians.
console.log('\nacceptance (issue 19), on medians:');
const big = rows.filter((r) => r.requested >= 1024);
const ref8 = rows.find((r) => r.requested === 8);
for (const r of rows.filter((x) => x !== ref8 && ref8)) {
  const diff = median(vals(r.runs.dg, (x) => x.rollbackDowntime)) - median(vals(ref8!.runs.dg, (x) => x.rollbackDowntime));
  console.log(`  rollback downtime at ${r.size} MiB within 2 s of the one at ${ref8!.size} MiB: ${diff.toFixed(0)} ms -> ${Math.abs(diff) <= 2000 ? 'yes' : 'NO'}`);
}
for (const r of big) {
  const dg = r.runs.dg;
  const ratio = median(vals(dg, (x) => x.steps.backup)) / median(vals(dg, (x) => x.rawCopyMs));
  const perRun = median(vals(dg, (x) => (x.steps.backup === undefined ? undefined : x.steps.backup / x.rawCopyMs)));
  const bracket = median(bracketRatios(dg));
  const atPoint = median(vals(dg, (x) => x.steps.backup)) / median(vals(r.runs.floor, (x) => x.floorMs));
  const atPointPairs = pairRatios(vals(dg, (x) => x.steps.backup), vals(r.runs.floor, (x) => x.floorMs));
  console.log(
    `  backup step within 1.5x the raw FILE_COPY at ${r.size} MiB, the floor taken at the backup's point of the same sequence (floor runs): ` +
      `${atPoint.toFixed(2)} (ratio of medians; per pair ${medianRange(atPointPairs, 2)}) -> ${atPoint <= 1.5 ? 'yes' : 'NO'}\n` +
      `    for information, other floors: the raw copy of the template at the database's creation ${ratio.toFixed(2)} (ratio of medians), per run ${perRun.toFixed(2)}; ` +
      `the mean of that and the raw copy after the rollback, per run ${bracket.toFixed(2)}`,
  );
}
for (const r of rows) {
  const rss = vals(r.runs.dg, (x) => (x.workerPeakRss === undefined ? undefined : MB(x.workerPeakRss)));
  const max = rss.length ? Math.max(...rss) : NaN;
  console.log(`  worker peak RSS under 300 MB at ${r.size} MiB: max ${max.toFixed(1)} MB -> ${max < 300 ? 'yes' : 'NO'}`);
}
