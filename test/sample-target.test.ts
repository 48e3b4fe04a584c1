// Tests of the sample DecisionGraph target (a TEST FIXTURE: test/fixtures/sample-target/).
// They run the real `mix` stand-in, real git, real PostgreSQL and the real HTTP server, and check
// that each tag behaves as documented in test/fixtures/sample-target/README.md.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import pg from 'pg';
import {
  BASE_MIGRATIONS,
  SAMPLE_ALLOW_REBUILD_CONFIG,
  SAMPLE_TAGS,
  SAMPLE_TOKENS,
  SAMPLE_TRACE_ID,
  SAMPLE_WORKFLOW_ID,
  createSampleTarget,
  sampleServiceAccountsJson,
  type SampleTarget,
} from './fixtures/sample-target/generate.js';
import { createTestDatabase, type TestDatabase } from './support/postgres.js';
import { freePort } from './support/ports.js';
import { trafficEnvelope } from './support/traffic.js';

const SECRET = 'fixture-secret-key-base-0123456789abcdef0123456789abcdef0123456789abcdef';

let tmpDir = '';
let target: SampleTarget;
let generationMs = 0;
const databases: TestDatabase[] = [];
const servers = new Set<RunningServer>();
/** Release processes started detached (`daemon`), killed in after() if a test left one running. */
const releasePids = new Set<number>();
const worktrees: string[] = [];

interface RunningServer {
  proc: ChildProcess;
  url: string;
  logs: string[];
  exited: Promise<number | null>;
}

/** Environment for the stand-in: nothing inherited that could change its behaviour. */
function mixEnv(extra: Record<string, string | undefined>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined) continue;
    if (/^(MIX_ENV|DATABASE_URL|SECRET_KEY_BASE|PORT|POOL_SIZE|PHX_|DECISION_GRAPH_|DG_FIXTURE_)/.test(k)) continue;
    env[k] = v;
  }
  env.PATH = `${target.binDir}${path.delimiter}${process.env.PATH ?? ''}`;
  env.DG_FIXTURE_COMPILE_MS = '30';
  env.DG_FIXTURE_RELEASE_MS = '30';
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return env;
}

function prodEnv(db: TestDatabase, extra: Record<string, string | undefined> = {}): Record<string, string> {
  return mixEnv({
    MIX_ENV: 'prod',
    DATABASE_URL: db.url,
    SECRET_KEY_BASE: SECRET,
    PHX_HOST: 'localhost',
    PHX_SERVER: 'true',
    POOL_SIZE: '4',
    DECISION_GRAPH_SERVICE_ACCOUNTS_JSON: sampleServiceAccountsJson(),
    ...extra,
  });
}

async function mix(args: string[], env: Record<string, string>) {
  return execa('mix', args, { cwd: target.beamDir, env, extendEnv: false, reject: false, timeout: 20_000 });
}

async function mixOk(args: string[], env: Record<string, string>) {
  const r = await mix(args, env);
  assert.equal(r.exitCode, 0, `mix ${args.join(' ')} failed:\n${r.stdout}\n${r.stderr}`);
  return r;
}

async function checkout(ref: string): Promise<void> {
  await execa('git', ['checkout', '-q', '--detach', ref], { cwd: target.repoDir });
}

/**
 * Runs `fn` with the operator's production config allowing projection rebuilds (compile-time
 * config in beam/config/prod.exs, as in the real app: no environment variable turns them on),
 * then puts the checked-out prod.exs back.
 */
async function withRebuildConfig<T>(fn: () => Promise<T>): Promise<T> {
  const file = path.join(target.beamDir, 'config', 'prod.exs');
  const stock = readFileSync(file, 'utf8');
  writeFileSync(file, `${stock}\n${SAMPLE_ALLOW_REBUILD_CONFIG}\n`);
  try {
    return await fn();
  } finally {
    writeFileSync(file, stock);
  }
}

async function build(db: TestDatabase, migrate = true): Promise<void> {
  const env = prodEnv(db);
  await mixOk(['deps.get'], env);
  await mixOk(['compile'], env);
  if (migrate) await mixOk(['ecto.migrate'], env);
}

async function sql<T extends pg.QueryResultRow = Record<string, unknown>>(db: TestDatabase, text: string, values: unknown[] = []) {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    return (await client.query<T>(text, values)).rows;
  } finally {
    await client.end();
  }
}

async function migrationVersions(db: TestDatabase): Promise<string[]> {
  const rows = await sql<{ version: string }>(db, 'SELECT version::text AS version FROM schema_migrations ORDER BY version');
  return rows.map((r) => r.version);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** A timer that does not keep the test process alive (for races against child exits). */
const idle = (ms: number) => new Promise((r) => setTimeout(r, ms).unref());

async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(100);
  }
}

/** Starts `mix phx.server` (or `cmd`, e.g. a release's `bin/decisiongraph_beam start`) on a free port and waits for healthz. */
async function startServer(
  env: Record<string, string>,
  cmd: { file: string; args: string[]; cwd: string } = { file: 'mix', args: ['phx.server'], cwd: target.beamDir },
): Promise<RunningServer> {
  const port = await freePort();
  const proc = spawn(cmd.file, cmd.args, { cwd: cmd.cwd, env: { ...env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: string[] = [];
  proc.stdout?.on('data', (d: Buffer) => logs.push(d.toString()));
  proc.stderr?.on('data', (d: Buffer) => logs.push(d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const server: RunningServer = { proc, url: `http://127.0.0.1:${port}`, logs, exited };
  servers.add(server);
  let dead = false;
  void exited.then(() => {
    dead = true;
  });
  await waitFor('healthz', async () => {
    if (dead) throw new Error(`server exited early:\n${logs.join('')}`);
    const r = await fetch(`${server.url}/api/healthz`);
    // healthz answers 200 before the repo is up (as the real app does): wait for both.
    return r.status === 200 && ((await r.json()) as any).store?.['repo_started?'] === true;
  });
  return server;
}

async function stopServer(server: RunningServer): Promise<number | null> {
  server.proc.kill('SIGTERM');
  const code = await Promise.race([server.exited, idle(8000).then(() => 'timeout' as const)]);
  if (code === 'timeout') {
    server.proc.kill('SIGKILL');
    await server.exited;
    servers.delete(server);
    throw new Error('server did not stop on SIGTERM');
  }
  servers.delete(server);
  return code;
}

interface ApiResult {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  text: string;
}

async function api(
  server: RunningServer,
  urlPath: string,
  opts: { token?: string | null; tenant?: string | null; method?: string; body?: unknown } = {},
): Promise<ApiResult> {
  const headers: Record<string, string> = {};
  const token = opts.token === undefined ? SAMPLE_TOKENS.admin : opts.token;
  const tenant = opts.tenant === undefined ? 'default' : opts.tenant;
  if (token) headers.authorization = `Bearer ${token}`;
  if (tenant) headers['x-tenant-id'] = tenant;
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  const r = await fetch(`${server.url}${urlPath}`, {
    method: opts.method ?? 'GET',
    headers,
    body: opts.body === undefined ? undefined : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body),
  });
  const text = await r.text();
  let body: unknown = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  return { status: r.status, body, text };
}

interface Projection {
  projection_name: string;
  pending_events: number;
  digest: string | null;
  open_failures: number;
}

async function caughtUpHealth(server: RunningServer, tenant = 'default') {
  return waitFor('projections caught up', async () => {
    const r = await api(server, '/api/v1/projections/health', { tenant });
    if (r.status !== 200) return undefined;
    const ps = r.body.data.projections as Projection[];
    return ps.every((p) => p.pending_events === 0 && p.digest) ? r.body.data : undefined;
  });
}

function digests(health: { projections: Projection[]; full_digest: string }) {
  const d: Record<string, string | null> = { full: health.full_digest };
  for (const p of health.projections) d[p.projection_name] = p.digest;
  return d;
}

async function replay(server: RunningServer, { tenant = 'default', ...body }: Record<string, unknown> & { tenant?: string }) {
  const r = await api(server, '/api/v1/admin/replays', { method: 'POST', body, tenant });
  assert.equal(r.status, 202, r.text);
  const jobId = r.body.data.run.job_id as string;
  assert.match(jobId, /^replay-\d+$/);
  assert.equal(r.body.data.run.status, 'queued');
  const done = await waitFor('replay to finish', async () => {
    const s = await api(server, `/api/v1/admin/replays/${jobId}`, { tenant });
    return ['completed', 'failed', 'cancelled'].includes(s.body?.data?.run?.status) ? s.body.data.run : undefined;
  });
  assert.equal(done.status, 'completed', JSON.stringify(done));
  return done;
}

// -------------------------------------------------------------------------------------------------

let mainDb: TestDatabase;
let baselineDigests: Record<string, string | null> = {};

before(async () => {
  tmpDir = await fs.mkdtemp(path.join(os.tmpdir(), 'dgu-sample-target-'));
  const t0 = Date.now();
  target = await createSampleTarget({ dir: tmpDir });
  generationMs = Date.now() - t0;
  mainDb = await createTestDatabase('sample_main');
  databases.push(mainDb);
});

after(async () => {
  for (const s of servers) {
    s.proc.kill('SIGKILL');
    await Promise.race([s.exited, idle(2000)]);
  }
  for (const pid of releasePids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  for (const wt of worktrees) {
    await execa('git', ['worktree', 'remove', '--force', wt], { cwd: target.repoDir, reject: false });
  }
  for (const db of databases) await db.drop().catch(() => {});
  if (tmpDir) await fs.rm(tmpDir, { recursive: true, force: true });
});

test('generates a tagged git history with an origin and a detached v0.1.0 checkout', async () => {
  assert.ok(generationMs < 10_000, `generation took ${generationMs}ms`); // ~0.2 s idle; generous for loaded CI
  const tags = (await execa('git', ['tag', '--list'], { cwd: target.upstreamDir })).stdout.split('\n').sort();
  assert.deepEqual(tags, [...SAMPLE_TAGS].sort());
  const head = (await execa('git', ['describe', '--tags', '--exact-match', 'HEAD'], { cwd: target.repoDir })).stdout;
  assert.equal(head, 'v0.1.0');
  const branch = await execa('git', ['symbolic-ref', '-q', 'HEAD'], { cwd: target.repoDir, reject: false });
  assert.notEqual(branch.exitCode, 0, 'HEAD should be detached');
  const origin = (await execa('git', ['remote', 'get-url', 'origin'], { cwd: target.repoDir })).stdout;
  assert.equal(origin, target.upstreamDir);
  // ancestry as documented
  const isAncestor = async (a: string, b: string) =>
    (await execa('git', ['merge-base', '--is-ancestor', a, b], { cwd: target.repoDir, reject: false })).exitCode === 0;
  assert.ok(await isAncestor('v0.2.0', 'v0.3.0'));
  assert.ok(await isAncestor('v0.2.0', 'v0.2.1'));
  assert.ok(await isAncestor('v0.1.0', 'v0.2.2'));
  assert.ok(!(await isAncestor('v0.2.0', 'v0.2.2')));
  const notes = await fs.readFile(path.join(target.repoDir, 'docs/release.md'), 'utf8');
  assert.match(notes, /^## Migration Notes: v0\.1\.0$/m);
  assert.match(notes, /```markdown\n## Migration Notes: <version>/);
  const v020 = (await execa('git', ['show', 'v0.2.0:docs/release.md'], { cwd: target.repoDir })).stdout;
  assert.match(v020, /## Migration Notes: v0\.2\.0[\s\S]*### Required Actions\n1\. /);
  await fs.access(path.join(target.beamDir, 'apps/dg_web/priv/fixture/server.mjs'));
});

test('v0.1.0: deps.get, compile and ecto.migrate work like mix (idempotent, tree stays clean)', async () => {
  const env = prodEnv(mainDb);
  const noDeps = await mix(['compile'], env);
  assert.notEqual(noDeps.exitCode, 0);
  assert.match(noDeps.stderr, /run "mix deps\.get"/);
  const deps = await mixOk(['deps.get'], env);
  assert.match(deps.stdout, /Resolving Hex dependencies/);
  const compile = await mixOk(['compile'], env);
  assert.match(compile.stdout, /Compiling \d+ files \(\.ex\)/);
  const manifest = JSON.parse(await fs.readFile(path.join(target.beamDir, '_build/prod/fixture_manifest.json'), 'utf8'));
  assert.equal(manifest.version, '0.1.0');
  const migrate = await mixOk(['ecto.migrate'], env);
  assert.match(migrate.stdout, /\[info\] == Running 20260307000100 DecisionGraph\.Store\.Repo\.Migrations\.CreateDgEventLog\.change\/0 forward/);
  assert.deepEqual(await migrationVersions(mainDb), [...BASE_MIGRATIONS]);
  const again = await mixOk(['ecto.migrate'], env);
  assert.match(again.stdout, /Migrations already up/);
  const events = await sql<{ n: number }>(mainDb, 'SELECT COUNT(*)::int AS n FROM dg_event_log');
  assert.ok((events[0]?.n ?? 0) >= 20);
  const status = await execa('git', ['status', '--porcelain'], { cwd: target.repoDir });
  assert.equal(status.stdout, '');
  const unknown = await mix(['dg.nope'], env);
  assert.equal(unknown.exitCode, 1);
  assert.match(unknown.stderr, /\*\* \(Mix\) The task "dg\.nope" could not be found/);
});

test('prod refuses to boot without SECRET_KEY_BASE or service accounts', async () => {
  const noSecret = await mix(['phx.server'], prodEnv(mainDb, { SECRET_KEY_BASE: '' }));
  assert.notEqual(noSecret.exitCode, 0);
  assert.match(noSecret.stderr, /SECRET_KEY_BASE is missing/);
  const env = prodEnv(mainDb);
  delete env.DECISION_GRAPH_SERVICE_ACCOUNTS_JSON;
  const noAccounts = await mix(['phx.server'], env);
  assert.notEqual(noAccounts.exitCode, 0);
  assert.match(noAccounts.stderr, /requires service accounts/);
});

test("prod takes the guide's ecto:// DATABASE_URL, as Ecto does: ecto.migrate connects and phx.server boots on it", async () => {
  const url = new URL(mainDb.url);
  url.password = 'p@ss:w/rd'; // trust auth ignores it; its percent-encoding must not break the parse
  const ecto = url.toString().replace(/^postgres:/, 'ecto:');
  assert.match(ecto, /^ecto:\/\/postgres:p%40ss%3Aw%2Frd@/);
  const env = prodEnv(mainDb, { DATABASE_URL: ecto, DG_FIXTURE_PROJECTOR_INTERVAL_MS: '600000' });
  assert.match((await mixOk(['ecto.migrate'], env)).stdout, /Migrations already up/);
  const server = await startServer(env);
  try {
    const hz = await api(server, '/api/healthz', { token: null, tenant: null });
    assert.equal(hz.body.store['repo_started?'], true);
    assert.equal(hz.body.store.database, mainDb.name);
    assert.equal((await api(server, '/api/v1/projections/health')).status, 200);
  } finally {
    await stopServer(server);
  }
});

test('v0.1.0 serves the contract routes from the database', async () => {
  const server = await startServer(
    prodEnv(mainDb, { DG_FIXTURE_PROJECTOR_INTERVAL_MS: '600000', DG_FIXTURE_REPLAY_DELAY_MS: '300' }),
  );
  try {
    const hz = await api(server, '/api/healthz', { token: null, tenant: null });
    assert.equal(hz.status, 200);
    assert.equal(hz.body.store['repo_started?'], true);
    assert.equal(hz.body.version, '0.1.0');
    assert.equal(hz.body.deployment_env, 'prod');
    assert.equal(hz.body.data, undefined, 'healthz has no envelope');
    assert.equal(typeof hz.body.projector, 'object');
    assert.equal(typeof hz.body.auth, 'object');
    assert.equal(hz.body.store.database, mainDb.name);

    const health = await caughtUpHealth(server);
    assert.equal(health.tenant_id, 'default');
    assert.deepEqual(
      health.projections.map((p: Projection) => p.projection_name),
      ['context_graph', 'trace_summary', 'precedent_index'],
    );
    for (const p of health.projections as Projection[]) {
      assert.match(p.digest ?? '', /^sha256:[0-9a-f]{64}$/);
      assert.equal(p.open_failures, 0);
    }
    assert.match(health.full_digest, /^sha256:[0-9a-f]{64}$/);
    assert.ok(health.event_log_last_seq > 0);
    baselineDigests = digests(health);

    const page = await api(server, '/?tenant=default', { token: null, tenant: null });
    assert.equal(page.status, 200);
    assert.match(page.text, /<title>DecisionGraph Operator Console<\/title>/);
    assert.match(page.text, /Operator Console/);
    assert.doesNotMatch(page.text, /Projection health unavailable/);

    // auth
    assert.equal((await api(server, '/api/v1/projections/health', { token: 'nope' })).status, 401);
    assert.equal((await api(server, '/api/v1/projections/health', { token: null })).status, 401);
    const noTenant = await api(server, '/api/v1/projections/health', { tenant: null });
    assert.equal(noTenant.status, 400);
    assert.ok(noTenant.body.error.code && noTenant.body.request_id);
    assert.equal((await api(server, '/api/v1/projections/health', { tenant: 'other-tenant' })).status, 403);
    const readerAdmin = await api(server, '/api/v1/admin/replays', {
      token: SAMPLE_TOKENS.reader,
      method: 'POST',
      body: { mode: 'catch_up', projection: 'all', reason: 'smoke' },
    });
    assert.equal(readerAdmin.status, 403);
    assert.equal(
      (await api(server, '/api/v1/admin/replays', { token: SAMPLE_TOKENS.writer, method: 'POST', body: { projection: 'all', reason: 'x' } })).status,
      403,
    );
    assert.equal((await api(server, '/api/v1/projections/health', { token: 'dev-admin-token' })).status, 401, 'no dev tokens in prod');

    // replays
    await replay(server, { mode: 'catch_up', projection: 'all', reason: 'smoke check' });
    assert.equal((await api(server, '/api/v1/admin/replays', { method: 'POST', body: { mode: 'sideways', projection: 'all', reason: 'x' } })).status, 400);
    assert.equal((await api(server, '/api/v1/admin/replays', { method: 'POST', body: { mode: 'catch_up', projection: 'all' } })).status, 400);
    assert.equal((await api(server, '/api/v1/admin/replays', { method: 'POST', body: '{not json' })).status, 400);
    const rebuild = await api(server, '/api/v1/admin/replays', { method: 'POST', body: { mode: 'rebuild', projection: 'trace_summary', reason: 'x' } });
    assert.equal(rebuild.status, 403, 'rebuild is disabled in prod unless enabled');
    const first = await api(server, '/api/v1/admin/replays', { method: 'POST', body: { mode: 'catch_up', projection: 'context_graph', reason: 'a' } });
    assert.equal(first.status, 202);
    const second = await api(server, '/api/v1/admin/replays', { method: 'POST', body: { mode: 'catch_up', projection: 'context_graph', reason: 'b' } });
    assert.equal(second.status, 409);
    const cancelled = await api(server, `/api/v1/admin/replays/${first.body.data.run.job_id}/cancel`, { method: 'POST' });
    assert.equal(cancelled.status, 200);
    assert.equal(cancelled.body.data.run.status, 'cancelled');
    assert.equal((await api(server, '/api/v1/admin/replays/replay-9999')).status, 404);

    // traces
    const trace = await api(server, `/api/v1/traces/${SAMPLE_TRACE_ID}`, { token: SAMPLE_TOKENS.reader });
    assert.equal(trace.status, 200, trace.text);
    assert.equal(trace.body.data.summary.event_count, trace.body.data.events.length);
    assert.equal(trace.body.data.summary.tags, undefined, 'v0.1.0 has no trace tags');
    assert.equal((await api(server, '/api/v1/traces/trace-does-not-exist', { token: SAMPLE_TOKENS.reader })).status, 404);
    await sql(mainDb, `INSERT INTO dg_event_log (tenant_id, trace_id, event_type, payload) VALUES ('default', $1, 'policy.evaluated', $2)`, [
      SAMPLE_TRACE_ID,
      JSON.stringify({ policy_id: 'late_check', outcome: 'pass' }),
    ]);
    const behind = await api(server, `/api/v1/traces/${SAMPLE_TRACE_ID}`, { token: SAMPLE_TOKENS.reader });
    assert.equal(behind.status, 409);
    assert.equal(behind.body.error.code, 'projection_out_of_date');
    await replay(server, { mode: 'catch_up', projection: 'all', reason: 'catch up after direct insert' });
    const after409 = await api(server, `/api/v1/traces/${SAMPLE_TRACE_ID}`, { token: SAMPLE_TOKENS.reader });
    assert.equal(after409.status, 200);
    assert.equal(after409.body.data.summary.event_count, trace.body.data.summary.event_count + 1);

    // workflows: the real list_inbox (open items only by default, overdue first, then priority,
    // then requested_at, 12 by default), and reads write (an SLA sweep, refreshed_at)
    const inbox = async (query = '') => {
      const r = await api(server, `/api/v1/workflows${query}`, { token: SAMPLE_TOKENS.reader });
      assert.equal(r.status, 200, r.text);
      return r.body.data as { items: any[]; summary: any; filters: any };
    };
    const idsOf = (d: { items: any[] }) => d.items.map((w) => w.workflow_id);
    const inbox0 = await inbox();
    assert.deepEqual(inbox0.filters, { assigned_account_id: null, assigned_role: null, limit: 12, only_open: true, only_overdue: false, priority: null, status: null, trace_id: null });
    assert.deepEqual(idsOf(inbox0), ['wf-default-0003', 'wf-default-0005'], 'only open items by default (wf-default-0001 is approved); the overdue one first');
    const escalated = inbox0.items[0];
    assert.equal(escalated.status, 'escalated', 'the read escalated the overdue item (requested_at 2026-03-07, SLA long past)');
    assert.equal(escalated.overdue, true);
    assert.equal(escalated.assigned_role, 'admin');
    assert.equal(escalated.metadata.escalation_count, 1);
    await inbox();
    const escalations = await sql<{ n: number }>(mainDb, `SELECT COUNT(*)::int AS n FROM dg_workflow_actions WHERE workflow_id = 'wf-default-0003' AND action = 'escalate' AND actor = 'workflow-sla'`);
    assert.equal(escalations[0]!.n, 1, 'escalated once, however often it is read');
    assert.deepEqual(idsOf(await inbox('?only_open=false')), ['wf-default-0003', 'wf-default-0001', 'wf-default-0005'], 'closed ones with only_open=false; priority after overdue');
    assert.deepEqual(idsOf(await inbox('?only_open=nonsense')), ['wf-default-0003', 'wf-default-0005'], 'a bad boolean is the default');
    assert.deepEqual(idsOf(await inbox('?only_open=0&trace_id=trace-default-0001')), ['wf-default-0001']);
    assert.deepEqual(idsOf(await inbox('?only_open=false&status=approved')), ['wf-default-0001']);
    assert.deepEqual(idsOf(await inbox('?only_overdue=true')), ['wf-default-0003']);
    assert.equal((await api(server, '/api/v1/workflows?priority=critical', { token: SAMPLE_TOKENS.reader })).status, 400, 'the real priorities: urgent, high, normal, low');

    // Ordering and limit: 14 new open items, 7 urgent then 7 high, each requested later than the last.
    const added = Array.from({ length: 14 }, (_, i) => `wf-inbox-${String(i).padStart(2, '0')}`);
    for (const [i, id] of added.entries()) {
      await sql(
        mainDb,
        `INSERT INTO dg_workflow_runtime (workflow_id, tenant_id, trace_id, title, status, priority, requested_at, sla_due_at)
         VALUES ($1, 'default', 'trace-default-0002', $1, 'requested', $2, now() - make_interval(mins => $3), now() + interval '4 hours')`,
        [id, i < 7 ? 'urgent' : 'high', 100 - i],
      );
    }
    try {
      const full = await inbox();
      assert.equal(full.items.length, 12, 'the default limit is 12');
      assert.deepEqual(idsOf(full), ['wf-default-0003', ...added.slice(0, 7), ...added.slice(7, 11)], 'overdue, then urgent, then high, each by requested_at; wf-default-0005 (normal) is pushed out');
      assert.ok(!idsOf(full).includes('wf-default-0005'));
      assert.deepEqual(idsOf(await inbox('?priority=urgent&limit=3')), ['wf-default-0003', ...added.slice(0, 2)], 'wf-default-0003 is urgent too');
      assert.equal((await inbox('?limit=2')).items.length, 2);
      assert.equal((await inbox('?limit=abc')).items.length, 12, 'a bad limit is the default, not 400');
      assert.equal((await inbox('?limit=500')).filters.limit, 50, 'at most 50');
      assert.equal((await inbox('?limit=500')).items.length, 16);

      // An approved item leaves the inbox and stays readable: only_open=false and by id.
      await sql(mainDb, `UPDATE dg_workflow_runtime SET status = 'approved', current_decision = 'approve' WHERE workflow_id = $1`, [added[0]]);
      assert.ok(!idsOf(await inbox('?limit=50')).includes(added[0]), 'approved: gone from the default list');
      assert.ok(idsOf(await inbox('?limit=50&only_open=false')).includes(added[0]), 'approved: listed with only_open=false');
      const byId = await api(server, `/api/v1/workflows/${added[0]}`, { token: SAMPLE_TOKENS.reader });
      assert.equal(byId.status, 200);
      assert.equal(byId.body.data.workflow.status, 'approved');
    } finally {
      await sql(mainDb, `DELETE FROM dg_workflow_runtime WHERE workflow_id LIKE 'wf-inbox-%'`);
    }

    const wf = await api(server, `/api/v1/workflows/${SAMPLE_WORKFLOW_ID}`, { token: SAMPLE_TOKENS.reader });
    assert.equal(wf.status, 200);
    assert.equal(wf.body.data.workflow.workflow_id, SAMPLE_WORKFLOW_ID);
    const refreshed = await sql<{ refreshed_at: Date | null }>(mainDb, 'SELECT refreshed_at FROM dg_workflow_runtime WHERE workflow_id = $1', [
      SAMPLE_WORKFLOW_ID,
    ]);
    assert.ok(refreshed[0]?.refreshed_at, 'workflow reads refresh runtime rows');
    assert.equal((await api(server, '/api/v1/workflows/wf-nope', { token: SAMPLE_TOKENS.reader })).status, 404);
    const exp = await api(server, `/api/v1/admin/workflows/${SAMPLE_WORKFLOW_ID}/export`);
    assert.equal(exp.status, 200);
    assert.equal((await api(server, `/api/v1/admin/workflows/${SAMPLE_WORKFLOW_ID}/export`, { token: SAMPLE_TOKENS.reader })).status, 403);
  } finally {
    assert.equal(await stopServer(server), 0, 'graceful SIGTERM exits 0');
  }
});

test('v0.2.0: one migration, reports version 0.2.0', async () => {
  await checkout('v0.2.0');
  await build(mainDb);
  assert.deepEqual(await migrationVersions(mainDb), [...BASE_MIGRATIONS, '20260314000100']);
  const server = await startServer(prodEnv(mainDb));
  try {
    const hz = await api(server, '/api/healthz', { token: null, tenant: null });
    assert.equal(hz.body.version, '0.2.0');
    await caughtUpHealth(server);
    const trace = await api(server, `/api/v1/traces/${SAMPLE_TRACE_ID}`);
    assert.equal(trace.status, 200, trace.text);
    assert.deepEqual(trace.body.data.summary.tags, ['workflow:refund_review']);
  } finally {
    await stopServer(server);
  }
});

test('v0.2.1: migrate fails after applying its first migration', async () => {
  await checkout('v0.2.1');
  await build(mainDb, false);
  const r = await mix(['ecto.migrate'], prodEnv(mainDb));
  assert.equal(r.exitCode, 1);
  assert.match(r.stdout, /== Migrated 20260321000100/);
  assert.match(r.stderr, /\*\* \(Postgrex\.Error\) ERROR 42703 \(undefined_column\)/);
  const versions = await migrationVersions(mainDb);
  assert.ok(versions.includes('20260321000100'));
  assert.ok(!versions.includes('20260321000200'));
  const t = await sql<{ ok: boolean }>(mainDb, `SELECT to_regclass('dg_trace_annotations') IS NOT NULL AS ok`);
  assert.equal(t[0]?.ok, true);
});

test('v0.3.0: migrates and stays alive, but the console and replay admission are broken', async () => {
  await checkout('v0.3.0');
  await build(mainDb);
  assert.ok((await migrationVersions(mainDb)).includes('20260328000100'));
  const server = await startServer(prodEnv(mainDb));
  try {
    const hz = await api(server, '/api/healthz', { token: null, tenant: null });
    assert.equal(hz.status, 200);
    assert.equal(hz.body.version, '0.3.0');
    assert.equal(hz.body.store['repo_started?'], true);
    await caughtUpHealth(server);
    const page = await api(server, '/', { token: null, tenant: null });
    assert.equal(page.status, 200);
    assert.match(page.text, /DecisionGraph Operator Console/);
    assert.match(page.text, /Projection health unavailable/);
    const r = await api(server, '/api/v1/admin/replays', { method: 'POST', body: { mode: 'catch_up', projection: 'all', reason: 'smoke' } });
    assert.equal(r.status, 500);
  } finally {
    await stopServer(server);
  }
});

test('v0.2.3: compile fails with a CompileError', async () => {
  await checkout('v0.2.3');
  const r = await mix(['compile'], prodEnv(mainDb));
  assert.notEqual(r.exitCode, 0);
  assert.match(r.stderr, /\*\* \(CompileError\) apps\/dg_core\/lib\/decision_graph\/core\/trace_rules\.ex:12: undefined function normalize_trace_ref\/2/);
});

test('v0.2.2: projector bug changes digests; a rebuild on v0.1.0 code restores them', async () => {
  const db = await createTestDatabase('sample_rebuild');
  databases.push(db);
  await checkout('v0.2.2');
  await build(db);
  assert.deepEqual(await migrationVersions(db), [...BASE_MIGRATIONS]);
  let server = await startServer(prodEnv(db, { DG_FIXTURE_PROJECTOR_INTERVAL_MS: '100' }));
  let buggy: Record<string, string | null>;
  try {
    const health = await caughtUpHealth(server);
    buggy = digests(health);
    const ts = (health.projections as Projection[]).find((p) => p.projection_name === 'trace_summary');
    assert.ok((ts?.open_failures ?? 0) > 0, 'v0.2.2 records open failures');
    assert.notEqual(buggy.trace_summary, baselineDigests.trace_summary);
    assert.equal(buggy.context_graph, baselineDigests.context_graph);
  } finally {
    await stopServer(server);
  }

  await checkout('v0.1.0');
  await withRebuildConfig(async () => {
  await build(db, false);
  server = await startServer(prodEnv(db, { DG_FIXTURE_PROJECTOR_INTERVAL_MS: '100' }));
  try {
    const before = digests(await caughtUpHealth(server));
    assert.equal(before.trace_summary, buggy.trace_summary, 'going back to old code alone does not fix the projection');
    const run = await replay(server, { mode: 'rebuild', projection: 'trace_summary', reason: 'roll back v0.2.2 projector bug' });
    assert.equal(run.mode, 'rebuild');
    const healed = await caughtUpHealth(server);
    assert.deepEqual(digests(healed), baselineDigests);
    for (const p of healed.projections as Projection[]) assert.equal(p.open_failures, 0);
  } finally {
    await stopServer(server);
  }
  });
});

test('v0.1.0 -> v0.2.2 on a caught-up database: the trace_summary definition change rebuilds it at startup and hits the bug; rebuild on v0.1.0 heals', async () => {
  const db = await createTestDatabase('sample_upgrade_022');
  databases.push(db);
  const autoRuns = () =>
    sql<{ job_id: string; tenant_id: string; mode: string; status: string; reason: string; processed_events: string; metadata: any }>(
      db,
      `SELECT job_id, tenant_id, mode, status, reason, processed_events::text, metadata FROM dg_projection_runs
       WHERE metadata->>'trigger' = 'projection_definition_changed' ORDER BY id`,
    );
  const runCount = async () => (await sql<{ n: number }>(db, 'SELECT COUNT(*)::int AS n FROM dg_projection_runs'))[0]?.n ?? 0;
  const traceSummary = (health: { projections: Projection[] }) => health.projections.find((p) => p.projection_name === 'trace_summary');

  // 1. v0.1.0 migrates and projects everything, then stops.
  await checkout('v0.1.0');
  await build(db);
  let server = await startServer(prodEnv(db, { DG_FIXTURE_PROJECTOR_INTERVAL_MS: '100' }));
  let original: Record<string, string | null>;
  try {
    const health = await caughtUpHealth(server);
    original = digests(health);
    for (const p of health.projections as Projection[]) assert.equal(p.open_failures, 0);
    if (baselineDigests.trace_summary) assert.deepEqual(original, baselineDigests);
  } finally {
    assert.equal(await stopServer(server), 0);
  }
  assert.equal(await runCount(), 0, 'v0.1.0 records no runs by itself');
  const versions = await migrationVersions(db);

  // 2. Upgrade to v0.2.2 (no migration, no new event): its projector re-projects trace_summary at startup.
  await checkout('v0.2.2');
  await build(db);
  assert.deepEqual(await migrationVersions(db), versions, 'v0.2.2 has no migration');
  server = await startServer(prodEnv(db)); // default projector interval (250 ms)
  let buggy: Record<string, string | null>;
  try {
    const health = await waitFor(
      'v0.2.2 to show open trace_summary failures',
      async () => {
        const r = await api(server, '/api/v1/projections/health');
        if (r.status !== 200) return undefined;
        const ts = traceSummary(r.body.data);
        const caughtUp = (r.body.data.projections as Projection[]).every((p) => p.pending_events === 0 && p.digest);
        // The startup rebuild's run row is marked completed just after its last batch commits.
        const finished = (await autoRuns()).every((run) => run.status !== 'running');
        return caughtUp && finished && (ts?.open_failures ?? 0) > 0 ? r.body.data : undefined;
      },
      30_000,
    );
    buggy = digests(health);
    assert.notEqual(buggy.trace_summary, original.trace_summary, 'trace_summary digest changed');
    assert.equal(buggy.context_graph, original.context_graph);
    assert.equal(buggy.precedent_index, original.precedent_index);
    assert.deepEqual(health.open_runs, [], 'no open replay run left behind');
    const runs = await autoRuns();
    assert.equal(runs.length, 1, JSON.stringify(runs));
    const run = runs[0]!;
    assert.equal(run.mode, 'rebuild');
    assert.equal(run.status, 'completed');
    assert.equal(run.tenant_id, '*');
    assert.equal(run.reason, 'projection definition changed: trace_summary v2');
    assert.deepEqual(run.metadata.projection_definitions, { trace_summary: 2 });
    assert.equal(run.metadata.previous_definition_version, 1);
    assert.ok(Number(run.metadata.previous_last_log_seq) > 0, 'it re-projected a caught-up projection');
    assert.ok(Number(run.processed_events) >= 20);
    const openFailures = await sql<{ n: number }>(
      db,
      `SELECT COUNT(*)::int AS n FROM dg_projection_failures WHERE projection_name = 'trace_summary' AND status = 'open'`,
    );
    assert.equal(run.metadata.failed_events, openFailures[0]?.n, 'failed_events counts every tenant');
    // Admission is not blocked by it.
    await replay(server, { mode: 'catch_up', projection: 'all', reason: 'smoke after upgrade' });
  } finally {
    assert.equal(await stopServer(server), 0);
  }

  // A restart of v0.2.2 does not rebuild again (the definition is recorded).
  server = await startServer(prodEnv(db, { DG_FIXTURE_PROJECTOR_INTERVAL_MS: '100' }));
  try {
    const health = await caughtUpHealth(server);
    assert.equal(digests(health).trace_summary, buggy.trace_summary);
    assert.equal((await autoRuns()).length, 1, 'no second automatic rebuild');
  } finally {
    assert.equal(await stopServer(server), 0);
  }

  // 3. Back on v0.1.0 code: nothing changes by itself; an admitted rebuild restores v0.1.0's digests.
  await checkout('v0.1.0');
  await withRebuildConfig(async () => {
  await build(db, false);
  const runsBefore = await runCount();
  server = await startServer(prodEnv(db, { DG_FIXTURE_PROJECTOR_INTERVAL_MS: '100' }));
  try {
    const hz = await api(server, '/api/healthz', { token: null, tenant: null });
    assert.equal(hz.body.version, '0.1.0');
    const stale = await caughtUpHealth(server);
    await sleep(300); // a few ticks: v0.1.0 must not rebuild anything by itself
    const still = await caughtUpHealth(server);
    assert.equal(digests(stale).trace_summary, buggy.trace_summary);
    assert.equal(digests(still).trace_summary, buggy.trace_summary, 'v0.1.0 code alone does not fix the projection');
    assert.ok((traceSummary(still)?.open_failures ?? 0) > 0, 'failures stay open on v0.1.0 until a rebuild');
    assert.deepEqual(still.open_runs, []);
    assert.equal(await runCount(), runsBefore, 'v0.1.0 starts no run by itself');
    assert.equal((await autoRuns())[0]?.status, 'completed', 'v0.1.0 leaves the recorded rebuild alone');

    const run = await replay(server, { mode: 'rebuild', projection: 'trace_summary', reason: 'roll back v0.2.2 projector bug' });
    assert.equal(run.mode, 'rebuild');
    const healed = await caughtUpHealth(server);
    assert.deepEqual(digests(healed), original);
    for (const p of healed.projections as Projection[]) assert.equal(p.open_failures, 0);
    // A rebuild is per tenant (the real Write.rebuild/2): release-demo's failures stay open until its own rebuild.
    const demoFailures = async () => (await sql<{ n: number }>(db, `SELECT COUNT(*)::int AS n FROM dg_projection_failures WHERE status = 'open' AND tenant_id = 'release-demo'`))[0]?.n;
    assert.ok((await demoFailures() ?? 0) > 0, "the default tenant's rebuild leaves release-demo's failures open");
    await replay(server, { mode: 'rebuild', projection: 'trace_summary', reason: 'roll back v0.2.2 projector bug', tenant: 'release-demo' });
    assert.equal(await demoFailures(), 0);
    await replay(server, { mode: 'catch_up', projection: 'all', reason: 'smoke after rollback' });
    const open = await sql<{ n: number }>(db, `SELECT COUNT(*)::int AS n FROM dg_projection_failures WHERE status = 'open'`);
    assert.equal(open[0]?.n, 0);
  } finally {
    assert.equal(await stopServer(server), 0);
  }
  });
});

test('issue 18: replay/rebuild need the permission; rebuild is compile-time config, off in prod; a non-object metadata answers 400 after both checks and writes nothing; a rebuild run belongs to the x-tenant-id tenant and rebuilds that tenant only', async () => {
  const db = await createTestDatabase('sample_issue18');
  databases.push(db);
  await checkout('v0.1.0');
  await build(db);
  const accounts = JSON.stringify({
    operator_console_account_id: 'admin-full',
    service_accounts: [
      { account_id: 'admin-full', roles: ['admin'], tenant_ids: ['*'], token: 'tok-full', permissions: ['projection_replay', 'projection_rebuild'] },
      { account_id: 'admin-none', roles: ['admin'], tenant_ids: ['*'], token: 'tok-none' },
      { account_id: 'admin-replay', roles: ['admin'], tenant_ids: ['*'], token: 'tok-replay', permissions: ['projection_replay'] },
    ],
  });
  const probe = (mode: string) => ({ mode, projection: 'all', reason: 'probe', metadata: 'not-an-object' });
  const runsNow = async () => (await sql<{ n: number }>(db, 'SELECT COUNT(*)::int AS n FROM dg_projection_runs'))[0]!.n;
  let server = await startServer(prodEnv(db, { DECISION_GRAPH_SERVICE_ACCOUNTS_JSON: accounts }));
  try {
    const before = await runsNow();
    const none = await api(server, '/api/v1/admin/replays', { token: 'tok-none', method: 'POST', body: probe('catch_up') });
    assert.equal(none.status, 403, none.text);
    assert.equal(none.body.error.message, 'Service account lacks projection_replay permission');
    const ok = await api(server, '/api/v1/admin/replays', { token: 'tok-replay', method: 'POST', body: probe('catch_up') });
    assert.equal(ok.status, 400, ok.text);
    assert.equal(ok.body.error.code, 'invalid_argument');
    assert.equal(ok.body.error.message, 'metadata must be an object');
    const noRebuild = await api(server, '/api/v1/admin/replays', { token: 'tok-replay', method: 'POST', body: probe('rebuild') });
    assert.equal(noRebuild.status, 403);
    assert.equal(noRebuild.body.error.message, 'Service account lacks projection_rebuild permission');
    const off = await api(server, '/api/v1/admin/replays', { token: 'tok-full', method: 'POST', body: probe('rebuild') });
    assert.equal(off.status, 403, off.text);
    assert.deepEqual([off.body.error.code, off.body.error.message], ['forbidden', 'Projection rebuilds are disabled in this deployment']);
    const env = await api(server, '/api/v1/admin/replays', { token: 'tok-full', method: 'POST', body: { mode: 'rebuild', projection: 'all', reason: 'x' } });
    assert.equal(env.status, 403, 'stock prod config: no rebuild');
    assert.equal(await runsNow(), before, 'no probe wrote a run');
  } finally {
    assert.equal(await stopServer(server), 0);
  }
  // An environment variable does not turn rebuilds on; the operator's prod.exs does.
  server = await startServer(prodEnv(db, { DECISION_GRAPH_SERVICE_ACCOUNTS_JSON: accounts, DECISION_GRAPH_ALLOW_PROJECTION_REBUILD: 'true' }));
  try {
    const r = await api(server, '/api/v1/admin/replays', { token: 'tok-full', method: 'POST', body: probe('rebuild') });
    assert.equal(r.status, 403, r.text);
  } finally {
    assert.equal(await stopServer(server), 0);
  }
  await withRebuildConfig(async () => {
    await build(db, false);
    server = await startServer(prodEnv(db, { DECISION_GRAPH_SERVICE_ACCOUNTS_JSON: accounts }));
    try {
      const r = await api(server, '/api/v1/admin/replays', { token: 'tok-full', method: 'POST', body: probe('rebuild') });
      assert.equal(r.status, 400, r.text);
      assert.equal(r.body.error.message, 'metadata must be an object');
      // Both tenants' trace summaries damaged by hand (and one open failure each): the rebuild of
      // release-demo repairs release-demo's only, as the real Write.rebuild/2 (per tenant).
      const titles = async () =>
        Object.fromEntries(
          (await sql<{ tenant_id: string; n: number }>(db, `SELECT tenant_id, COUNT(*)::int AS n FROM dg_trace_summary WHERE title = 'damaged' GROUP BY tenant_id`)).map((r) => [r.tenant_id, r.n]),
        );
      const openFailures = async () =>
        Object.fromEntries(
          (await sql<{ tenant_id: string; n: number }>(db, `SELECT tenant_id, COUNT(*)::int AS n FROM dg_projection_failures WHERE status = 'open' GROUP BY tenant_id`)).map((r) => [r.tenant_id, r.n]),
        );
      const digestOf = async (tenant: string) =>
        (await sql<{ digest: string }>(db, `SELECT digest FROM dg_projection_digests WHERE projection_name = 'trace_summary' AND tenant_id = $1`, [tenant]))[0]?.digest;
      for (const tenant of ['default', 'release-demo']) {
        await waitFor(`tenant ${tenant} caught up`, async () => {
          const r = await api(server, '/api/v1/projections/health', { token: 'tok-full', tenant });
          return r.status === 200 && (r.body.data.projections as Projection[]).every((p) => p.pending_events === 0 && p.digest);
        });
      }
      const healthyDigests = { default: await digestOf('default'), 'release-demo': await digestOf('release-demo') };
      assert.ok(healthyDigests.default && healthyDigests['release-demo']);
      await sql(db, `UPDATE dg_trace_summary SET title = 'damaged'`);
      for (const tenant of ['default', 'release-demo']) {
        await sql(
          db,
          `INSERT INTO dg_projection_failures (projection_name, tenant_id, log_seq, trace_id, event_type, error, status, attempts)
           SELECT 'trace_summary', tenant_id, log_seq, trace_id, event_type, 'injected by the test', 'open', 1 FROM dg_event_log WHERE tenant_id = $1 ORDER BY log_seq LIMIT 1`,
          [tenant],
        );
      }
      const damaged = await titles();
      assert.ok((damaged.default ?? 0) > 0 && (damaged["release-demo"] ?? 0) > 0, JSON.stringify(damaged));
      const run = await api(server, '/api/v1/admin/replays', { token: 'tok-full', tenant: 'release-demo', method: 'POST', body: { mode: 'rebuild', projection: 'trace_summary', reason: 'per tenant' } });
      assert.equal(run.status, 202, run.text);
      assert.equal(run.body.data.run.tenant_id, 'release-demo');
      const other = await api(server, `/api/v1/admin/replays/${run.body.data.run.job_id}`, { token: 'tok-full', tenant: 'default' });
      assert.equal(other.status, 404, 'a run belongs to its tenant');
      await waitFor('the tenant rebuild completes', async () => {
        const r = await api(server, `/api/v1/admin/replays/${run.body.data.run.job_id}`, { token: 'tok-full', tenant: 'release-demo' });
        return r.body?.data?.run?.status === 'completed';
      });
      assert.deepEqual(await titles(), { default: damaged.default }, 'release-demo rebuilt; default left as it was');
      assert.deepEqual(await openFailures(), { default: 1 }, "release-demo's failures resolved; default's stay open");
      assert.equal(await digestOf('release-demo'), healthyDigests['release-demo'], "release-demo's digest is its healthy one again");
      const cursor = await sql<{ n: number }>(db, `SELECT last_log_seq::int AS n FROM dg_projection_cursors WHERE projection_name = 'trace_summary'`);
      const head = await sql<{ n: number }>(db, 'SELECT max(log_seq)::int AS n FROM dg_event_log');
      assert.equal(cursor[0]!.n, head[0]!.n, 'the cursor stays at the head: the other tenants are not replayed');
    } finally {
      assert.equal(await stopServer(server), 0);
    }
  });
});

/** True while pid runs (a zombie counts as exited). */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/\) [ZX] /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

test('OTP release: mix release, eval migrate, start/daemon/pid/stop; a built release is self-contained', async () => {
  const db = await createTestDatabase('sample_release');
  databases.push(db);
  await checkout('v0.1.0');
  const env = prodEnv(db);
  const noAccounts = { ...env };
  delete noAccounts.DECISION_GRAPH_SERVICE_ACCOUNTS_JSON;
  const relDir = path.join(target.beamDir, '_build/prod/rel/decisiongraph_beam');
  const bin = path.join(relDir, 'bin/decisiongraph_beam');
  const buildsLog = path.join(target.beamDir, '_build/prod/rel/decisiongraph_beam.builds.log');
  const rel = (args: string[], e: Record<string, string> = env, cwd = relDir) =>
    execa(bin, args, { cwd, env: e, extendEnv: false, reject: false, timeout: 30_000 });
  const buildLines = async (file: string) => (await fs.readFile(file, 'utf8')).split('\n').filter(Boolean);

  // 1. mix release (only the declared release name)
  await mixOk(['deps.get'], env);
  const wrongName = await mix(['release', 'decisiongraph'], env);
  assert.equal(wrongName.exitCode, 1);
  assert.match(wrongName.stderr, /\*\* \(Mix\) Unknown release :decisiongraph\. The available releases are: \[:decisiongraph_beam\]/);
  const built = await mixOk(['release', 'decisiongraph_beam'], env);
  assert.match(built.stdout, /^\* assembling decisiongraph_beam-0\.1\.0 on MIX_ENV=prod$/m);
  assert.match(built.stdout, /^Release created at _build\/prod\/rel\/decisiongraph_beam$/m);
  const lines = await buildLines(buildsLog);
  assert.equal(lines.length, 1, lines.join('\n'));
  assert.match(lines[0]!, /^\d{4}-\d\d-\d\dT\S+ 0\.1\.0$/);
  assert.ok((await fs.stat(bin)).mode & 0o100, 'bin/decisiongraph_beam is executable');
  await fs.access(path.join(relDir, 'releases/0.1.0'));
  const relMigrations = (await fs.readdir(path.join(relDir, 'lib/dg_store-0.1.0/priv/repo/migrations'))).map((f) => f.slice(0, 14)).sort();
  assert.deepEqual(relMigrations, [...BASE_MIGRATIONS]);
  assert.equal((await execa('git', ['status', '--porcelain'], { cwd: target.repoDir })).stdout, '', 'building leaves the tree clean');
  assert.equal((await rel(['version'])).stdout, 'decisiongraph_beam 0.1.0');

  // 2. eval: migrations of the release, like mix ecto.migrate
  const migrate = await rel(['eval', 'DecisionGraph.Store.Release.migrate()']);
  assert.equal(migrate.exitCode, 0, `${migrate.stdout}\n${migrate.stderr}`);
  assert.match(migrate.stdout, /\[info\] == Running 20260307000100 DecisionGraph\.Store\.Repo\.Migrations\.CreateDgEventLog\.change\/0 forward/);
  assert.deepEqual(await migrationVersions(db), [...BASE_MIGRATIONS]);
  assert.match((await rel(['eval', 'DecisionGraph.Store.Release.migrate()'])).stdout, /Migrations already up/);
  const otherExpr = await rel(['eval', 'DecisionGraph.Store.Release.rollback()']);
  assert.equal(otherExpr.exitCode, 1);
  assert.match(otherExpr.stderr, /\*\* \(UndefinedFunctionError\) function DecisionGraph\.Store\.Release\.rollback\/0 is undefined/);

  // 3. start refuses to boot without service accounts; pid/stop when nothing runs
  const refused = await rel(['start'], { ...noAccounts, PORT: String(await freePort()) });
  assert.notEqual(refused.exitCode, 0);
  assert.match(refused.stderr, /requires service accounts/);
  assert.match(refused.stderr, /DECISION_GRAPH_SERVICE_ACCOUNTS_JSON/);
  const noPid = await rel(['pid']);
  assert.equal(noPid.exitCode, 1);
  assert.match(noPid.stderr, /--rpc-eval : RPC failed with reason :nodedown/);
  assert.equal((await rel(['stop'])).exitCode, 0, 'stop with nothing running');

  // 4. daemon / pid / stop (called from elsewhere than the release dir)
  const port = await freePort();
  const daemonEnv = { ...env, PORT: String(port) };
  const started = await rel(['daemon'], daemonEnv, os.tmpdir());
  assert.equal(started.exitCode, 0, started.stderr);
  const pidText = (await fs.readFile(path.join(relDir, 'tmp/pid'), 'utf8')).trim();
  const pid = Number(pidText);
  releasePids.add(pid);
  const hz = await waitFor('release healthz', async () => {
    const r = await fetch(`http://127.0.0.1:${port}/api/healthz`);
    const body = (await r.json()) as any;
    return r.status === 200 && body.store?.['repo_started?'] === true ? body : undefined;
  });
  assert.equal(hz.version, '0.1.0');
  assert.equal(hz.deployment_env, 'prod');
  const sid = Number((await fs.readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ')[3]);
  assert.equal(sid, pid, 'the daemon runs in its own session');
  const printed = await rel(['pid']);
  assert.equal(printed.exitCode, 0);
  assert.equal(printed.stdout.trim(), pidText);
  const twice = await rel(['daemon'], daemonEnv);
  assert.equal(twice.exitCode, 1, 'a second daemon of the same release is refused');
  assert.match(await fs.readFile(path.join(relDir, 'tmp/log/erlang.log.1'), 'utf8'), /Running DecisionGraphWeb\.Endpoint/);
  const stopped = await rel(['stop'], env, os.tmpdir());
  assert.equal(stopped.exitCode, 0, stopped.stderr);
  assert.equal(processAlive(pid), false);
  releasePids.delete(pid);
  await assert.rejects(fs.access(path.join(relDir, 'tmp/pid')));
  assert.equal((await rel(['pid'])).exitCode, 1);

  // 5. v0.2.0: its release is built in its own worktree (as the orchestrator does), and the main
  //    checkout's _build is recompiled at v0.2.0: neither touches the v0.1.0 release.
  const wt = path.join(tmpDir, 'worktree-v0.2.0');
  await execa('git', ['worktree', 'add', '-q', '--detach', wt, 'v0.2.0'], { cwd: target.repoDir });
  worktrees.push(wt);
  const wtBeam = path.join(wt, 'beam');
  const inWorktree = (args: string[]) => execa('mix', args, { cwd: wtBeam, env, extendEnv: false, reject: false, timeout: 20_000 });
  assert.equal((await inWorktree(['deps.get'])).exitCode, 0);
  const built2 = await inWorktree(['release', 'decisiongraph_beam', '--overwrite']);
  assert.equal(built2.exitCode, 0, built2.stderr);
  assert.match(built2.stdout, /\* assembling decisiongraph_beam-0\.2\.0 on MIX_ENV=prod/);
  assert.deepEqual((await buildLines(path.join(wtBeam, '_build/prod/rel/decisiongraph_beam.builds.log'))).map((l) => l.split(' ')[1]), ['0.2.0']);
  await checkout('v0.2.0');
  await mixOk(['compile'], env);
  const manifest = JSON.parse(await fs.readFile(path.join(target.beamDir, '_build/prod/fixture_manifest.json'), 'utf8'));
  assert.equal(manifest.version, '0.2.0', 'the main checkout now builds v0.2.0');
  await checkout('v0.1.0');

  // The v0.1.0 release still starts (foreground `start`, stopped by `stop`) and reports 0.1.0.
  const old = await startServer(env, { file: bin, args: ['start'], cwd: relDir });
  try {
    const hz1 = await api(old, '/api/healthz', { token: null, tenant: null });
    assert.equal(hz1.body.version, '0.1.0');
    const page = await api(old, '/', { token: null, tenant: null });
    assert.equal(page.status, 200);
    assert.match(page.text, /Operator Console/);
    assert.equal((await rel(['pid'])).stdout.trim(), String(old.proc.pid), '`start` writes the same pid file');
    const stop1 = await rel(['stop']);
    assert.equal(stop1.exitCode, 0, stop1.stderr);
    assert.equal(await Promise.race([old.exited, idle(5000).then(() => 'timeout' as const)]), 0, 'graceful stop exits 0');
  } finally {
    servers.delete(old);
    if (processAlive(old.proc.pid!)) old.proc.kill('SIGKILL');
  }
  assert.equal((await buildLines(buildsLog)).length, 1, 'restarting the old release does not build it again');

  // The v0.2.0 release from the worktree migrates and serves 0.2.0.
  const bin2 = path.join(wtBeam, '_build/prod/rel/decisiongraph_beam/bin/decisiongraph_beam');
  const migrate2 = await execa(bin2, ['eval', 'DecisionGraph.Store.Release.migrate()'], { env, extendEnv: false, reject: false, timeout: 30_000 });
  assert.equal(migrate2.exitCode, 0, migrate2.stderr);
  assert.deepEqual(await migrationVersions(db), [...BASE_MIGRATIONS, '20260314000100']);
  const next = await startServer(env, { file: bin2, args: ['start'], cwd: os.tmpdir() });
  try {
    assert.equal((await api(next, '/api/healthz', { token: null, tenant: null })).body.version, '0.2.0');
  } finally {
    assert.equal(await stopServer(next), 0);
  }
});

// ------------------------------------------------------------------------------ writes (POST /api/v1/events)

/** Builds `tag` in its own worktree against its own database, migrated (a failing migration is left half-applied). */
async function serveTag(tag: string): Promise<{ server: RunningServer; db: TestDatabase }> {
  const db = await createTestDatabase(`sample_w_${tag.replace(/\W/g, '')}`);
  databases.push(db);
  const wt = await fs.mkdtemp(path.join(tmpDir, `worktree-writes-${tag}-`));
  await fs.rmdir(wt);
  await execa('git', ['worktree', 'add', '-q', '--detach', wt, tag], { cwd: target.repoDir });
  worktrees.push(wt);
  const cwd = path.join(wt, 'beam');
  const env = prodEnv(db);
  const inWorktree = (args: string[]) => execa('mix', args, { cwd, env, extendEnv: false, reject: false, timeout: 20_000 });
  for (const args of [['deps.get'], ['compile']]) {
    const r = await inWorktree(args);
    assert.equal(r.exitCode, 0, `${tag}: mix ${args.join(' ')}: ${r.stderr}`);
  }
  const migrated = await inWorktree(['ecto.migrate']);
  assert.equal(migrated.exitCode, tag === 'v0.2.1' ? 1 : 0, `${tag}: mix ecto.migrate: ${migrated.stderr}`);
  return { server: await startServer(env, { file: 'mix', args: ['phx.server'], cwd }), db };
}

test('writes: POST /api/v1/events appends one envelope, answers 201 with its log_seq, and the projector picks it up', async () => {
  const { server, db } = await serveTag('v0.1.0');
  try {
    const before = await caughtUpHealth(server);
    const envelope = trafficEnvelope('evt-sample-0001', 1);
    const r = await api(server, '/api/v1/events', { token: SAMPLE_TOKENS.writer, method: 'POST', body: envelope });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.body.data.projection_sync_triggered, true);
    assert.match(r.body.request_id, /^req-/);
    const event = r.body.data.event;
    assert.equal(event.event_id, 'evt-sample-0001');
    assert.equal(event.tenant_id, 'default');
    assert.equal(event.event_type, envelope.event_type);
    assert.equal(event.trace_id, envelope.trace_id);
    assert.deepEqual(event.payload, envelope.payload);
    assert.deepEqual(event.actor, envelope.actor);
    assert.equal(event.source.producer_id, envelope.source.producer_id);
    assert.match(event.payload_hash, /^sha256:[0-9a-f]{64}$/);
    assert.equal(event.log_seq, before.event_log_last_seq + 1, 'appended at the end of the log');
    const rows = await sql<{ log_seq: string; event_id: string }>(db, 'SELECT log_seq::text, event_id FROM dg_event_log WHERE event_id = $1', ['evt-sample-0001']);
    assert.deepEqual(rows, [{ log_seq: String(event.log_seq), event_id: 'evt-sample-0001' }]);

    // The admin token writes too; a repeated idempotency key answers the stored event, a changed payload is a conflict.
    const again = await api(server, '/api/v1/events', { method: 'POST', body: envelope });
    assert.equal(again.status, 201, again.text);
    assert.equal(again.body.data.event.log_seq, event.log_seq, 'an idempotent retry does not append twice');
    const conflict = await api(server, '/api/v1/events', { method: 'POST', body: { ...envelope, payload: { other: true } } });
    assert.equal(conflict.status, 409);
    assert.equal(conflict.body.error.code, 'idempotency_conflict');
    const admin = await api(server, '/api/v1/events', { method: 'POST', body: trafficEnvelope('evt-sample-0002', 2) });
    assert.equal(admin.status, 201, admin.text);
    assert.equal(admin.body.data.event.log_seq, event.log_seq + 1);

    // Refusals: reader 403, bad or missing token 401, no tenant 400, a tenant not allowed 403, bad bodies 400.
    const body = trafficEnvelope('evt-sample-refused', 3);
    const post = (opts: Parameters<typeof api>[2]) => api(server, '/api/v1/events', { method: 'POST', body, ...opts });
    assert.equal((await post({ token: SAMPLE_TOKENS.reader })).status, 403);
    assert.equal((await post({ token: 'not-a-token' })).status, 401);
    assert.equal((await post({ token: null })).status, 401);
    const noTenant = await post({ tenant: null });
    assert.equal(noTenant.status, 400);
    assert.equal(noTenant.body.error.code, 'invalid_request');
    assert.equal((await post({ tenant: 'other-tenant' })).status, 403);
    for (const [what, bad] of [
      ['malformed JSON', '{"event_id": '],
      ['no envelope', []],
      ['missing event_id', { ...body, event_id: undefined }],
      ['missing payload', { ...body, payload: undefined }],
      ['trace_seq not an integer', { ...body, trace_seq: 'one' }],
      ['actor without actor_id', { ...body, actor: { actor_type: 'service' } }],
      ['occurred_at not a timestamp', { ...body, occurred_at: 'yesterday' }],
      ['event_type this version does not accept', { ...body, event_type: 'made.up' }],
    ] as const) {
      const r400 = await post({ token: SAMPLE_TOKENS.writer, body: bad });
      assert.equal(r400.status, 400, `${what}: ${r400.text}`);
      assert.equal(r400.body.error.code, 'invalid_request', what);
    }
    const refused = await sql<{ n: number }>(db, `SELECT count(*)::int AS n FROM dg_event_log WHERE event_id = 'evt-sample-refused'`);
    assert.equal(refused[0]?.n, 0, 'refused writes append nothing');

    // The projector picks the writes up: pending drains, the trace reads them.
    const after = await caughtUpHealth(server);
    assert.equal(after.event_log_last_seq, event.log_seq + 1);
    const trace = await api(server, `/api/v1/traces/${envelope.trace_id}`, { token: SAMPLE_TOKENS.reader });
    assert.equal(trace.status, 200, trace.text);
    assert.equal(trace.body.data.summary.last_log_seq, event.log_seq);

    // Concurrent writes get distinct log_seq values without gaps between them, each confirmed once.
    const burst = await Promise.all(
      Array.from({ length: 40 }, (_, i) => api(server, '/api/v1/events', { token: SAMPLE_TOKENS.writer, method: 'POST', body: trafficEnvelope(`evt-burst-${i}`, i) })),
    );
    const seqs = burst.map((b) => (assert.equal(b.status, 201, b.text), b.body.data.event.log_seq as number)).sort((a, b) => a - b);
    assert.ok(seqs[0]! > event.log_seq + 1, 'after the earlier writes');
    assert.deepEqual(seqs, Array.from({ length: 40 }, (_, i) => seqs[0]! + i), 'consecutive (a refused insert may burn a sequence value, so not from the previous one)');
    const drained = await caughtUpHealth(server);
    assert.equal(drained.event_log_last_seq, seqs[39]);
    for (const p of drained.projections as Projection[]) assert.equal(p.open_failures, 0, `${p.projection_name} has no failures from written events`);
  } finally {
    assert.equal(await stopServer(server), 0);
  }
});

test('writes: every tag that serves takes POST /api/v1/events (v0.2.3, which does not compile, has the route in its source)', async () => {
  for (const tag of SAMPLE_TAGS) {
    if (tag === 'v0.2.3') {
      const src = await execa('git', ['show', `${tag}:beam/apps/dg_web/priv/fixture/server.mjs`], { cwd: target.repoDir });
      assert.match(src.stdout, /p === '\/api\/v1\/events'/);
      continue;
    }
    const { server } = await serveTag(tag);
    try {
      const before = await caughtUpHealth(server);
      const r = await api(server, '/api/v1/events', { token: SAMPLE_TOKENS.writer, method: 'POST', body: trafficEnvelope(`evt-${tag}`, 5) });
      assert.equal(r.status, 201, `${tag}: ${r.text}`);
      assert.equal(r.body.data.event.log_seq, before.event_log_last_seq + 1, tag);
      assert.equal((await api(server, '/api/v1/events', { token: SAMPLE_TOKENS.reader, method: 'POST', body: trafficEnvelope(`evt-${tag}-r`, 6) })).status, 403, tag);
      const after = await caughtUpHealth(server);
      assert.equal(after.event_log_last_seq, r.body.data.event.log_seq, `${tag}: the projector caught up with the write`);
    } finally {
      assert.equal(await stopServer(server), 0, tag);
    }
  }
});

test('writes: SIGTERM under a steady stream of keep-alive writes drains and shuts down gracefully (no forced exit)', async () => {
  const { server } = await serveTag('v0.1.0');
  let stop = false;
  let n = 0;
  const writers = Array.from({ length: 4 }, async () => {
    while (!stop) {
      await api(server, '/api/v1/events', { token: SAMPLE_TOKENS.writer, method: 'POST', body: trafficEnvelope(`evt-drain-${n}`, n++) }).catch(() => {});
    }
  });
  await waitFor('writes flowing', async () => n > 40);
  const code = await stopServer(server);
  stop = true;
  await Promise.all(writers);
  assert.equal(code, 0);
  const logs = server.logs.join('');
  assert.match(logs, /Shutdown complete/);
  assert.doesNotMatch(logs, /graceful shutdown timed out/, 'keep-alive connections are closed as they go idle');
});
