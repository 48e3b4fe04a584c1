import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import pg from 'pg';
import { BEAM_ALLOW_REBUILD_CONFIG, BEAM_TAGS, createBeamTarget, type BeamTarget } from './fixtures/beam-target/generate.js';
import { BASE_MIGRATIONS } from './fixtures/sample-target/generate.js';
import { getJson } from './support/e2e.js';
import { freePort } from './support/ports.js';
import { createTestDatabase, type TestDatabase } from './support/postgres.js';

// The real BEAM target itself, without dg-upgrade: every tag builds (or fails to) with the real
// mix, migrates, serves the contract's routes and behaves as the Node stand-in's same tag.

const ACCOUNTS = JSON.stringify({
  operator_console_account_id: 'admin-main',
  service_accounts: [
    { account_id: 'reader-main', roles: ['reader'], tenant_ids: ['default'], tokens: ['reader-t'] },
    { account_id: 'writer-main', roles: ['writer'], tenant_ids: ['default'], tokens: ['writer-t'] },
    { account_id: 'admin-main', roles: ['admin'], permissions: ['projection_replay', 'projection_rebuild', 'workflow_export'], tenant_ids: ['*'], token: 'admin-t' },
    { account_id: 'admin-replayer', roles: ['admin'], permissions: ['projection_replay'], tenant_ids: ['*'], token: 'replayer-t' },
    { account_id: 'admin-bare', roles: ['admin'], tenant_ids: ['*'], token: 'bare-t' },
  ],
});

let dir: string;
let target: BeamTarget;
const timings: string[] = [];

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'dgu-beam-target-'));
  const t0 = Date.now();
  // Rebuilds are compile-time config, off in prod: the target carries the operator's prod.exs line
  // that allows them (as the test deployments do); no environment variable turns them on.
  target = await createBeamTarget({ dir, prodConfig: BEAM_ALLOW_REBUILD_CONFIG });
  timings.push(`generate ${Date.now() - t0} ms`);
});
after(() => {
  process.stderr.write(`# beam target: ${timings.join(', ')}\n`);
  if (!process.env.DGU_KEEP_TEST_DIRS) rmSync(dir, { recursive: true, force: true });
});

interface Checkout {
  beamDir: string;
  db: TestDatabase;
  port: number;
  env: Record<string, string>;
}

/** A worktree of `tag` with its own database and port. */
async function checkout(tag: string, label = tag): Promise<Checkout> {
  const wt = path.join(dir, `wt-${label}`);
  await execa('git', ['-C', target.repoDir, 'worktree', 'add', '--detach', wt, tag]);
  const db = await createTestDatabase(`beamtgt_${label.replace(/\W/g, '')}`);
  const port = await freePort();
  const env = {
    MIX_ENV: 'prod',
    DATABASE_URL: db.url,
    SECRET_KEY_BASE: 'test-secret-key-base',
    DECISION_GRAPH_SERVICE_ACCOUNTS_JSON: ACCOUNTS,
    DG_FIXTURE_PROJECTOR_INTERVAL_MS: '100',
    PORT: String(port),
    RELEASE_NODE: `dg_target_${port}@127.0.0.1`,
  };
  return { beamDir: path.join(wt, 'beam'), db, port, env };
}

function mix(c: Checkout, args: string[], extraEnv: Record<string, string> = {}) {
  return execa(target.mixPath, args, { cwd: c.beamDir, env: { ...c.env, ...extraEnv }, reject: false, all: true });
}

async function timed<T>(label: string, fn: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  const r = await fn();
  timings.push(`${label} ${Date.now() - t0} ms`);
  return r;
}

async function versions(c: Checkout): Promise<string[]> {
  const client = new pg.Client({ connectionString: c.db.url });
  await client.connect();
  try {
    return (await client.query('SELECT version::text AS v FROM schema_migrations ORDER BY version')).rows.map((r) => r.v);
  } finally {
    await client.end();
  }
}

/** Starts `mix phx.server` (or a release command) and waits for healthz 200 with the repo started. */
async function serve(c: Checkout, command: string, args: string[]): Promise<ChildProcess> {
  const child = spawn(command, args, { cwd: c.beamDir, env: { ...process.env, ...c.env }, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (b) => (output += b));
  child.stderr!.on('data', (b) => (output += b));
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${command} ${args.join(' ')} exited ${child.exitCode}: ${output}`);
    const r = await getJson(`http://127.0.0.1:${c.port}/api/healthz`).catch(() => undefined);
    if (r?.status === 200 && r.body.store['repo_started?'] && r.body.projector.status === 'running') return child;
    if (Date.now() > deadline) throw new Error(`no healthz within 60 s: ${output}`);
    await new Promise((res) => setTimeout(res, 200));
  }
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  process.kill(-child.pid!, 'SIGTERM');
  await exited;
}

const api = (c: Checkout, route: string, token = 'reader-t', init: RequestInit = {}) =>
  fetch(`http://127.0.0.1:${c.port}${route}`, { ...init, headers: { authorization: `Bearer ${token}`, 'x-tenant-id': 'default', 'content-type': 'application/json' } }).then(async (r) => ({
    status: r.status,
    text: await r.text(),
  }));

async function admitReplay(c: Checkout, mode: 'catch_up' | 'rebuild' = 'catch_up', token = 'admin-t'): Promise<{ status: number; body: any }> {
  const r = await api(c, '/api/v1/admin/replays', token, { method: 'POST', body: JSON.stringify({ mode, projection: 'all', reason: 'test' }) });
  return { status: r.status, body: JSON.parse(r.text) };
}

async function awaitReplay(c: Checkout, jobId: string): Promise<void> {
  for (let i = 0; ; i++) {
    const run = JSON.parse((await api(c, `/api/v1/admin/replays/${jobId}`, 'admin-t')).text).data.run;
    if (run.status === 'completed') return;
    assert.ok(i < 100, `replay still ${run.status}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('v0.1.0 from source', () => {
  let c: Checkout;
  let server: ChildProcess | undefined;
  before(async () => {
    c = await checkout('v0.1.0');
  });
  after(async () => {
    if (server) await stop(server);
    await c.db.drop();
  });

  test('mix deps.get and mix compile build the umbrella without Hex; ecto.migrate applies and records the migrations, then is a no-op', async () => {
    const deps = await timed('deps.get', () => mix(c, ['deps.get']));
    assert.equal(deps.exitCode, 0, deps.all);
    const compiled = await timed('compile (prod, cold)', () => mix(c, ['compile']));
    assert.equal(compiled.exitCode, 0, compiled.all);
    assert.match(compiled.all!, /Generated dg_web app/);
    const migrated = await timed('ecto.migrate', () => mix(c, ['ecto.migrate']));
    assert.equal(migrated.exitCode, 0, migrated.all);
    assert.match(migrated.all!, /== Migrated 20260307000700/);
    assert.deepEqual(await versions(c), BASE_MIGRATIONS);
    const again = await mix(c, ['ecto.migrate']);
    assert.match(again.all!, /Migrations already up/);
    const status = await execa('git', ['-C', c.beamDir, 'status', '--porcelain']);
    assert.equal(status.stdout, '', 'building leaves the work tree clean');
  });

  test('mix phx.server serves the contract routes', async () => {
    server = await timed('phx.server boot', () => serve(c, target.mixPath, ['phx.server']));
    const health = await getJson(`http://127.0.0.1:${c.port}/api/healthz`);
    assert.equal(health.body.version, '0.1.0');
    assert.equal(health.body.store['repo_started?'], true);

    const projections = JSON.parse((await api(c, '/api/v1/projections/health')).text).data;
    assert.deepEqual(projections.projections.map((p: any) => [p.projection_name, p.pending_events, p.open_failures]), [
      ['context_graph', 0, 0],
      ['trace_summary', 0, 0],
      ['precedent_index', 0, 0],
    ]);
    assert.match(projections.full_digest, /^sha256:[0-9a-f]{64}$/);

    const console = await fetch(`http://127.0.0.1:${c.port}/?tenant=default`).then((r) => r.text());
    assert.match(console, /<title>DecisionGraph Operator Console<\/title>[\s\S]*Operator Console[\s\S]*Projection Health Dashboard/);
    assert.doesNotMatch(console, /unavailable/);

    const replay = await admitReplay(c);
    assert.equal(replay.status, 202, JSON.stringify(replay.body));
    await awaitReplay(c, replay.body.data.run.job_id);

    // Rebuilds: allowed by the operator's prod.exs line (compile-time admin_controls), and only
    // for an account holding projection_rebuild; permissions default to [] (the real ServiceAccount).
    assert.deepEqual(health.body.auth.admin_controls, { allow_rebuild: true, require_reason: true });
    const rebuild = await admitReplay(c, 'rebuild');
    assert.equal(rebuild.status, 202, JSON.stringify(rebuild.body));
    await awaitReplay(c, rebuild.body.data.run.job_id);
    const replayOnly = await admitReplay(c, 'rebuild', 'replayer-t');
    assert.equal(replayOnly.status, 403);
    assert.match(JSON.stringify(replayOnly.body), /lacks projection_rebuild permission/);
    assert.equal((await admitReplay(c, 'catch_up', 'replayer-t')).status, 202);
    const bare = await admitReplay(c, 'catch_up', 'bare-t');
    assert.equal(bare.status, 403, 'an admin account without permissions may not replay');
    assert.match(JSON.stringify(bare.body), /lacks projection_replay permission/);

    const trace = JSON.parse((await api(c, '/api/v1/traces/trace-default-0001')).text).data;
    assert.equal(trace.summary.event_count, 6);
    assert.equal(trace.summary.tags, undefined, 'v0.1.0 has no trace tags');
    assert.equal((await api(c, '/api/v1/traces/nope')).status, 404);

    // Workflows: the real list_inbox (open items only by default, overdue first, then priority,
    // then requested_at, 12 by default), and reads write (an SLA sweep, refreshed_at).
    const inbox = async (query = '') => {
      const r = await api(c, `/api/v1/workflows${query}`);
      assert.equal(r.status, 200, r.text);
      return JSON.parse(r.text).data as { items: any[]; summary: any; filters: any };
    };
    const idsOf = (d: { items: any[] }) => d.items.map((w) => w.workflow_id);
    const workflows = await inbox();
    assert.deepEqual(workflows.filters, { assigned_account_id: null, assigned_role: null, limit: 12, only_open: true, only_overdue: false, priority: null, status: null, trace_id: null });
    assert.deepEqual(idsOf(workflows), ['wf-default-0003', 'wf-default-0005'], 'only open items by default (wf-default-0001 is approved); the overdue one first');
    assert.equal(workflows.summary.total_count, 3);
    assert.equal(workflows.items[0].status, 'escalated', 'the read escalated the overdue item');
    assert.equal(workflows.items[0].overdue, true);
    assert.deepEqual(idsOf(await inbox('?only_open=false')), ['wf-default-0003', 'wf-default-0001', 'wf-default-0005'], 'closed ones with only_open=false; priority after overdue');
    assert.deepEqual(idsOf(await inbox('?only_open=0&trace_id=trace-default-0001')), ['wf-default-0001']);
    assert.equal((await api(c, '/api/v1/workflows?priority=critical')).status, 400);
    const db = new pg.Client({ connectionString: c.db.url });
    await db.connect();
    try {
      const escalations = await db.query(`SELECT COUNT(*)::int AS n FROM dg_workflow_actions WHERE workflow_id = 'wf-default-0003' AND action = 'escalate'`);
      assert.equal(escalations.rows[0].n, 1, 'escalated once, however often it is read');
      // 14 new open items, 7 urgent then 7 high, each requested later than the last.
      const added = Array.from({ length: 14 }, (_, i) => `wf-inbox-${String(i).padStart(2, '0')}`);
      for (const [i, id] of added.entries()) {
        await db.query(
          `INSERT INTO dg_workflow_runtime (workflow_id, tenant_id, trace_id, title, status, priority, requested_at, sla_due_at)
           VALUES ($1, 'default', 'trace-default-0002', $1, 'requested', $2, now() - make_interval(mins => $3), now() + interval '4 hours')`,
          [id, i < 7 ? 'urgent' : 'high', 100 - i],
        );
      }
      const full = await inbox();
      assert.deepEqual(idsOf(full), ['wf-default-0003', ...added.slice(0, 11)], 'limit 12: overdue, then urgent, then high; wf-default-0005 (normal) is pushed out');
      assert.equal((await inbox('?limit=abc')).items.length, 12, 'a bad limit is the default, not 400');
      assert.equal((await inbox('?limit=500')).items.length, 16);
      await db.query(`UPDATE dg_workflow_runtime SET status = 'approved' WHERE workflow_id = $1`, [added[0]]);
      assert.ok(!idsOf(await inbox('?limit=50')).includes(added[0]), 'approved: gone from the default list');
      assert.ok(idsOf(await inbox('?limit=50&only_open=false')).includes(added[0]), 'approved: listed with only_open=false');
      const byId = await api(c, `/api/v1/workflows/${added[0]}`);
      assert.equal(byId.status, 200);
      assert.equal(JSON.parse(byId.text).data.workflow.status, 'approved');
      assert.equal((await api(c, '/api/v1/workflows/wf-nope')).status, 404);
      await db.query(`DELETE FROM dg_workflow_runtime WHERE workflow_id LIKE 'wf-inbox-%'`);
    } finally {
      await db.end();
    }

    assert.equal((await api(c, '/api/v1/events', 'reader-t', { method: 'POST', body: '{}' })).status, 403, 'readers cannot write');
    const written = await api(c, '/api/v1/events', 'writer-t', { method: 'POST', body: JSON.stringify({ trace_id: 'trace-new', event_type: 'trace.started', payload: { title: 'new' } }) });
    assert.equal(written.status, 201, written.text);
    assert.equal(JSON.parse(written.text).data.event.log_seq, 29);
    const envelope = JSON.stringify({ event_id: 'e-1', idempotency_key: 'k-1', trace_id: 'trace-new', event_type: 'trace.annotated', payload: { note: 'x' }, source: { producer_id: 'p', system: 's' } });
    const first = JSON.parse((await api(c, '/api/v1/events', 'writer-t', { method: 'POST', body: envelope })).text).data.event;
    const again = JSON.parse((await api(c, '/api/v1/events', 'writer-t', { method: 'POST', body: envelope })).text).data.event;
    assert.equal(again.log_seq, first.log_seq, 'a repeated idempotency key answers the stored event');
    assert.equal(first.event_id, 'e-1');
    assert.equal((await api(c, '/api/v1/projections/health', 'nope')).status, 401);
  });
});

describe('the release of v0.1.0', () => {
  let c: Checkout;
  const bin = () => path.join(c.beamDir, '_build/prod/rel/decisiongraph_beam/bin/decisiongraph_beam');
  before(async () => {
    c = await checkout('v0.1.0', 'v0.1.0-release');
    // The release runs on the guide's form, ecto://USER:PASS@HOST/DATABASE (trust auth ignores the password).
    const url = new URL(c.db.url);
    url.password = 'p@ss:w/rd';
    c.env.DATABASE_URL = url.toString().replace(/^postgres:/, 'ecto:');
  });
  after(async () => {
    await execa(bin(), ['stop'], { env: c.env, reject: false });
    await c.db.drop();
  });

  test('mix release builds it offline; it refuses to boot without its runtime env; eval migrates; daemon, pid and stop work', async () => {
    const released = await timed('mix release', () => mix(c, ['release', 'decisiongraph_beam', '--overwrite']));
    assert.equal(released.exitCode, 0, released.all);
    assert.match(released.all!, /Release created at _build\/prod\/rel\/decisiongraph_beam/);

    for (const missing of ['DATABASE_URL', 'SECRET_KEY_BASE', 'DECISION_GRAPH_SERVICE_ACCOUNTS_JSON']) {
      const env = { ...process.env, ...c.env };
      delete env[missing];
      const r = await execa(bin(), ['start'], { env, extendEnv: false, reject: false, all: true, timeout: 60_000 });
      assert.notEqual(r.exitCode, 0, `refuses to start without ${missing}`);
      assert.match(r.all!, missing.startsWith('DECISION') ? /requires service accounts/ : new RegExp(`${missing} is missing`));
    }

    const migrated = await timed('release eval migrate', () => execa(bin(), ['eval', 'DecisionGraph.Store.Release.migrate()'], { env: c.env, reject: false, all: true }));
    assert.equal(migrated.exitCode, 0, migrated.all);
    assert.deepEqual(await versions(c), BASE_MIGRATIONS);

    const daemon = await execa(bin(), ['daemon'], { env: c.env, reject: false, all: true });
    assert.equal(daemon.exitCode, 0, daemon.all);
    const t0 = Date.now();
    // healthz answers as soon as the endpoint listens; the repo may still be connecting on a busy machine.
    let health: Awaited<ReturnType<typeof getJson>> | undefined;
    for (;;) {
      health = await getJson(`http://127.0.0.1:${c.port}/api/healthz`).catch(() => undefined);
      if (health?.status === 200 && health.body.store?.['repo_started?'] === true) break;
      assert.ok(Date.now() - t0 < 60_000, `the daemon answers healthz with its repo started (last: ${JSON.stringify(health?.body)})`);
      await new Promise((res) => setTimeout(res, 100));
    }
    timings.push(`release daemon boot ${Date.now() - t0} ms`);
    assert.match(c.env.DATABASE_URL!, /^ecto:\/\/postgres:p%40ss%3Aw%2Frd@127\.0\.0\.1:5432\//);
    assert.deepEqual([health.body.store['repo_started?'], health.body.store.database], [true, c.db.name], 'booted on the ecto:// DATABASE_URL');
    assert.equal(health.body.runtime.release, 'decisiongraph_beam');
    assert.equal(health.body.runtime.node, c.env.RELEASE_NODE, 'the node runs distributed under its name');
    const pid = await execa(bin(), ['pid'], { env: c.env, reject: false });
    assert.equal(pid.exitCode, 0);
    assert.match(pid.stdout, /^\d+$/);
    assert.equal((await execa(bin(), ['pid'], { env: { ...c.env, RELEASE_NODE: 'someone_else@127.0.0.1' }, reject: false })).exitCode, 1, 'another node name does not reach it');

    const stopped = await execa(bin(), ['stop'], { env: c.env, reject: false, all: true });
    assert.equal(stopped.exitCode, 0, stopped.all);
    for (let i = 0; (await getJson(`http://127.0.0.1:${c.port}/api/healthz`).catch(() => undefined)) !== undefined; i++) {
      assert.ok(i < 100, 'stopped through distribution');
      await new Promise((res) => setTimeout(res, 100));
    }
  });
});

describe('the other tags', () => {
  test('every tag exists', async () => {
    const tags = (await execa('git', ['-C', target.repoDir, 'tag'])).stdout.split('\n').sort();
    assert.deepEqual(tags, [...BEAM_TAGS].sort());
  });

  test('v0.2.3: mix compile fails with a real CompileError in trace_rules.ex', async () => {
    const c = await checkout('v0.2.3');
    try {
      const r = await mix(c, ['compile']);
      assert.equal(r.exitCode, 1, r.all);
      assert.match(r.all!, /trace_rules\.ex:12.*undefined function normalize_trace_ref\/2/s);
    } finally {
      await c.db.drop();
    }
  });

  test('v0.2.1: the second migration fails after the first applied (one transaction per migration)', async () => {
    const c = await checkout('v0.2.1');
    try {
      const r = await mix(c, ['ecto.migrate']);
      assert.equal(r.exitCode, 1, r.all);
      assert.match(r.all!, /ERROR 42703 \(undefined_column\) column "summary_note" does not exist/);
      assert.deepEqual(await versions(c), [...BASE_MIGRATIONS, '20260314000100', '20260321000100']);
    } finally {
      await c.db.drop();
    }
  });

  test('v0.2.0 reads trace tags; v0.3.0 (run_priority vs priority) renders an error panel and answers replay admission with 500', async () => {
    const c = await checkout('v0.3.0');
    let server: ChildProcess | undefined;
    try {
      assert.equal((await mix(c, ['ecto.migrate'])).exitCode, 0);
      server = await serve(c, target.mixPath, ['phx.server']);
      assert.equal((await getJson(`http://127.0.0.1:${c.port}/api/healthz`)).body.version, '0.3.0');
      assert.deepEqual(JSON.parse((await api(c, '/api/v1/traces/trace-default-0001')).text).data.summary.tags, ['workflow:refund_review']);
      assert.equal((await api(c, '/api/v1/projections/health')).status, 200);
      assert.match(await fetch(`http://127.0.0.1:${c.port}/`).then((r) => r.text()), /Projection health unavailable/);
      assert.equal((await admitReplay(c)).status, 500);
    } finally {
      if (server) await stop(server);
      await c.db.drop();
    }
  });

  test('v0.2.2: its projector rebuilds trace_summary at start and every decision.recorded event becomes an open failure', async () => {
    const c = await checkout('v0.2.2');
    let server: ChildProcess | undefined;
    try {
      // This checkout runs the stock prod.exs (the operator's line taken out): rebuilds refused.
      const prodExs = path.join(c.beamDir, 'config/prod.exs');
      writeFileSync(prodExs, readFileSync(prodExs, 'utf8').replace(BEAM_ALLOW_REBUILD_CONFIG, ''));
      assert.equal((await mix(c, ['ecto.migrate'])).exitCode, 0);
      server = await serve(c, target.mixPath, ['phx.server']);
      assert.deepEqual((await getJson(`http://127.0.0.1:${c.port}/api/healthz`)).body.auth.admin_controls, { allow_rebuild: false, require_reason: true });
      const refused = await admitReplay(c, 'rebuild');
      assert.equal(refused.status, 403);
      assert.match(JSON.stringify(refused.body), /Projection rebuilds are disabled in this deployment/);
      const health = JSON.parse((await api(c, '/api/v1/projections/health')).text).data;
      const summary = health.projections.find((p: any) => p.projection_name === 'trace_summary');
      assert.equal(summary.open_failures, 4, 'the four decisions of tenant default failed');
      assert.equal(health.projections.find((p: any) => p.projection_name === 'context_graph').open_failures, 0);
    } finally {
      if (server) await stop(server);
      await c.db.drop();
    }
  });
});
