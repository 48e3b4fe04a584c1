/**
 * Benchmark: downtime of dg-upgrade next to the seed guide's steps done literally by a shell
 * script (bench/guide-baseline.sh: stop, pg_dump, checkout, deps.get, compile, migrate, start),
 * interleaved, on databases of about 8, 128 and 1024 MiB; plus the downtime of dg-upgrade's
 * rollback at each size. Sample target v0.1.0 -> v0.2.0, 1.5 s compile, a 20 Hz prober on
 * /api/healthz. Downtime: last 200 before the first failed probe to the first 200 after the last.
 *   node dist/bench/downtime.js [pairs=3] [sizes=8,128,1024]
 * The bulk rows are generated once per size into a template database and copied per run
 * (CREATE DATABASE ... TEMPLATE); every database it creates is dropped at the end.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { runDirOf, getDeployment, loadProfileFile } from '../src/config/profile.js';
import { runtimeEnv } from '../src/activities/deployment.js';
import { setProfilePath } from '../src/activities/deployment.js';
import { createE2eDeployment, editProfile, PROJECT_ROOT, waitCaughtUp, type E2eDeployment } from '../test/support/e2e.js';
import { ADMIN_DATABASE_URL, dropDatabasesWithPrefix } from '../test/support/postgres.js';
import { startTestTemporal, type TestTemporal } from '../test/support/temporal.js';
import { downtimeOf, median, startProber, type Probe } from './support/healthProber.js';

const pairs = Number(process.argv[2] ?? 3);
const sizes = (process.argv[3] ?? '8,128,1024').split(',').map(Number);
const COMPILE_MS = '1500';
const BYTES_PER_ROW = 820; // measured: realistic envelopes with their indexes
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const downtimeMs = (probes: Probe[]): number => downtimeOf(probes).downtime;

async function admin<T>(fn: (c: pg.Client) => Promise<T>, url = ADMIN_DATABASE_URL): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

function urlOf(db: string): string {
  const u = new URL(ADMIN_DATABASE_URL);
  u.pathname = `/${db}`;
  return u.toString();
}

/** Bulk events in a tenant of their own, envelopes as the write API stores them; the projection cursors moved past them. */
async function fillEventLog(db: string, targetMiB: number): Promise<void> {
  await admin(async (c) => {
    const size = Number((await c.query('SELECT pg_database_size(current_database())::bigint AS n')).rows[0].n);
    const rows = Math.max(0, Math.floor((targetMiB * 1024 * 1024 - size) / BYTES_PER_ROW));
    for (let done = 0; done < rows; done += 100_000) {
      const n = Math.min(100_000, rows - done);
      await c.query(
        `INSERT INTO dg_event_log (tenant_id, trace_id, event_type, payload, event_id, idempotency_key, envelope)
         SELECT 'bench-bulk', 'trace-bulk-' || lpad((i % 5000)::text, 5, '0'), CASE WHEN i % 2 = 0 THEN 'policy.evaluated' ELSE 'trace.annotated' END,
                CASE WHEN i % 2 = 0 THEN jsonb_build_object('policy_id', 'bulk_policy_' || (i % 4), 'outcome', CASE WHEN i % 3 = 0 THEN 'fail' ELSE 'pass' END)
                     ELSE jsonb_build_object('note', 'bulk note ' || i, 'actor', 'dgu-bulk') END,
                'bulk-' || i, 'bulk-' || i,
                jsonb_build_object('event_id', 'bulk-' || i, 'idempotency_key', 'bulk-' || i,
                  'event_type', CASE WHEN i % 2 = 0 THEN 'policy.evaluated' ELSE 'trace.annotated' END,
                  'trace_id', 'trace-bulk-' || lpad((i % 5000)::text, 5, '0'), 'trace_seq', i, 'occurred_at', now(),
                  'actor', jsonb_build_object('actor_type', 'service', 'actor_id', 'dgu-bulk'),
                  'source', jsonb_build_object('producer_id', 'dgu-bulk', 'system', 'dg-upgrade-bench', 'subsystem', 'generator'),
                  'payload', jsonb_build_object('policy_id', 'bulk_policy_' || (i % 4), 'outcome', 'pass'))
           FROM generate_series($1::bigint, $2::bigint) i`,
        [done + 1, done + n],
      );
      process.stderr.write(`  ${db}: ${done + n}/${rows} bulk rows\n`);
    }
    await c.query(`UPDATE dg_projection_cursors SET last_log_seq = (SELECT max(log_seq) FROM dg_event_log), updated_at = now()`);
    await c.query('VACUUM ANALYZE dg_event_log');
  }, urlOf(db));
}

async function sizeMiB(db: string): Promise<number> {
  return admin(async (c) => Number((await c.query('SELECT pg_database_size($1)::bigint AS n', [db])).rows[0].n) / 1024 / 1024);
}

/** A deployment whose database is a copy of `template` (v0.1.0 migrated, bulk rows), serving v0.1.0. */
async function deploymentFrom(temporal: TestTemporal, label: string, template: string): Promise<E2eDeployment> {
  const d = await createE2eDeployment(temporal, label);
  editProfile(d, (p) => (p.toolchain.env.DG_FIXTURE_COMPILE_MS = COMPILE_MS));
  await admin(async (c) => {
    await c.query(`DROP DATABASE "${d.db.name}" WITH (FORCE)`);
    await c.query(`CREATE DATABASE "${d.db.name}" TEMPLATE "${template}"`);
  });
  await d.bootstrap();
  await waitCaughtUp(d, 120_000);
  return d;
}

interface Run {
  downtime: number;
  total: number;
  rollbackDowntime?: number;
  rollbackTotal?: number;
  steps?: string;
}

async function dgUpgradeRun(temporal: TestTemporal, label: string, template: string): Promise<Run> {
  const d = await deploymentFrom(temporal, label, template);
  try {
    await d.startWorker();
    let prober = startProber(d.port);
    const started = Date.now();
    const up = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--yes', '--follow', '--json']);
    const total = Date.now() - started;
    await sleep(300);
    const downtime = downtimeMs(await prober.stop());
    if (up.exitCode !== 0) throw new Error(`upgrade failed: ${up.stdout.slice(-2000)} ${up.stderr}`);
    const steps = (JSON.parse(up.stdout).status.steps as Array<{ name: string; durationMs?: number }>)
      .filter((s) => ['stopOld', 'backup', 'migrate', 'startNew', 'smoke', 'portableBackup'].includes(s.name))
      .map((s) => `${s.name}=${s.durationMs}`)
      .join(' ');
    prober = startProber(d.port);
    const rbStarted = Date.now();
    const rb = await d.cli(['rollback', '--deployment', d.name, '--follow', '--json']);
    const rollbackTotal = Date.now() - rbStarted;
    await sleep(300);
    const rollbackDowntime = downtimeMs(await prober.stop());
    if (rb.exitCode !== 0) throw new Error(`rollback failed: ${rb.stdout.slice(-2000)} ${rb.stderr}`);
    return { downtime, total, rollbackDowntime, rollbackTotal, steps };
  } finally {
    await d.dispose();
  }
}

async function baselineRun(temporal: TestTemporal, label: string, template: string): Promise<Run> {
  const d = await deploymentFrom(temporal, label, template);
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
    };
    (await import('node:fs')).writeFileSync(env.PIDFILE, String(record.pid));
    const prober = startProber(d.port);
    const started = Date.now();
    const code = await new Promise<number>((resolve) => {
      const child = spawn('bash', [path.join(PROJECT_ROOT, 'bench', 'guide-baseline.sh')], { env, stdio: ['ignore', 'ignore', 'inherit'] });
      child.once('exit', (c) => resolve(c ?? 1));
    });
    const total = Date.now() - started;
    await sleep(300);
    const downtime = downtimeMs(await prober.stop());
    if (code !== 0) throw new Error(`guide-baseline.sh exited with ${code}`);
    return { downtime, total };
  } finally {
    if (existsSync(newPidfile)) {
      const pid = Number(readFileSync(newPidfile, 'utf8'));
      try { process.kill(-pid, 'SIGTERM'); } catch { try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ } }
      await sleep(500);
    }
    await d.dispose();
  }
}

const temporal = await startTestTemporal();
const goldPrefix = `dgu_benchgold_${process.pid}`;
const rows: Array<{ size: number; dg: Run[]; guide: Run[] }> = [];
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
      await admin((c) => c.query(`CREATE DATABASE "${gold}" TEMPLATE "${g.db.name}"`));
    } finally {
      await g.dispose();
    }
    const actual = await sizeMiB(gold);
    process.stderr.write(`# ${size} MiB: template ${gold} is ${actual.toFixed(0)} MiB\n`);
    const row = { size: Math.round(actual), dg: [] as Run[], guide: [] as Run[] };
    rows.push(row);
    for (let i = 0; i < pairs; i++) {
      // Interleaved, the order alternating, so a drift of the machine hits both alike.
      const order = i % 2 === 0 ? (['dg', 'guide'] as const) : (['guide', 'dg'] as const);
      for (const which of order) {
        const r = which === 'dg' ? await dgUpgradeRun(temporal, `bdg${size}x${i}`, gold) : await baselineRun(temporal, `bgd${size}x${i}`, gold);
        row[which].push(r);
        process.stderr.write(`# ${size} MiB pair ${i + 1} ${which}: downtime ${r.downtime} ms, total ${r.total} ms${r.rollbackDowntime !== undefined ? `, rollback downtime ${r.rollbackDowntime} ms (total ${r.rollbackTotal} ms)` : ''}${r.steps ? `  [${r.steps}]` : ''}\n`);
      }
    }
    await dropDatabasesWithPrefix(gold);
  }
} finally {
  await dropDatabasesWithPrefix(goldPrefix).catch(() => {});
  await temporal.dispose();
}

console.log(`downtime: dg-upgrade (backups.method frozen-copy) vs the guide's steps by hand (bench/guide-baseline.sh), v0.1.0 -> v0.2.0, compile ${COMPILE_MS} ms, median of ${pairs} interleaved pairs, 20 Hz prober on /api/healthz`);
console.log('db_MiB  dg_down_ms  guide_down_ms  ratio  dg_total_ms  guide_total_ms  rollback_down_ms  rollback_total_ms');
for (const r of rows) {
  const dg = median(r.dg.map((x) => x.downtime));
  const gd = median(r.guide.map((x) => x.downtime));
  console.log(
    `${String(r.size).padStart(6)}  ${String(dg).padStart(10)}  ${String(gd).padStart(13)}  ${(dg / gd).toFixed(2).padStart(5)}  ${String(median(r.dg.map((x) => x.total))).padStart(11)}  ${String(median(r.guide.map((x) => x.total))).padStart(14)}  ${String(median(r.dg.map((x) => x.rollbackDowntime!))).padStart(16)}  ${String(median(r.dg.map((x) => x.rollbackTotal!))).padStart(17)}`,
  );
}
