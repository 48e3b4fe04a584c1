import { failpoint } from './failpoints.js';
import { heartbeat, keepAlive, sleep } from './heartbeat.js';
import { durationMs, type ResolvedDeployment } from '../config/profile.js';
import { redactSecrets } from '../config/secrets.js';
import type { SmokeCheckResult, SmokeObservations, SmokeReport } from '../domain/types.js';
import { databaseUrl, deploymentOf, secret, secretValues } from './deployment.js';
import { withDatabase } from '../database/postgres.js';
import { appApi, errorOf, openFailures } from './appApi.js';
import { adminPollDelayMs } from './rateLimit.js';
import { probeRuntime, runtimeAnswers } from './runtime.js';

/** DecisionGraph's closed workflow statuses (workflows.ex `@terminal_statuses`); every other status is open. */
const TERMINAL_WORKFLOW_STATUSES = ['approved', 'rejected', 'overridden'];

class CheckFailed extends Error {}
/** A failure whose cause is projection data (open failures, stale or wrong summaries). */
class ProjectionSymptom extends Error {}

/** The runtime is gone: every further check fails at once instead of polling into its timeout. */
class RuntimeGone extends Error {}

/** A refused or reset connection: nothing listens on the port (any more). */
function isRefused(err: unknown): boolean {
  let e = err as { code?: string; cause?: unknown } | undefined;
  for (let depth = 0; e && depth < 4; depth++, e = e.cause as typeof e) {
    if (e.code === 'ECONNREFUSED' || e.code === 'ECONNRESET' || e.code === 'UND_ERR_SOCKET') return true;
  }
  return false;
}

/**
 * Polls `attempt` until it returns a value or the deadline passes; the last failure is the reason.
 * A refused connection is not retried into the timeout: `gone` decides at once whether the
 * runtime died (then the check fails within about a second) or is only busy.
 */
async function poll<T>(deadline: number, what: string, attempt: () => Promise<T | CheckFailed | ProjectionSymptom>, gone?: () => Promise<boolean>, pause: (poll: number) => number = () => 300): Promise<T> {
  for (let n = 0; ; n++) {
    let result: T | CheckFailed | ProjectionSymptom;
    try {
      result = await attempt();
    } catch (err) {
      if (isRefused(err) && gone && (await gone())) throw new RuntimeGone(`the runtime is gone: ${what} was refused and no runtime process is running`);
      result = new CheckFailed((err as Error).message);
    }
    if (!(result instanceof CheckFailed) && !(result instanceof ProjectionSymptom)) return result;
    if (Date.now() > deadline) throw result;
    heartbeat(`smoke: ${what}: ${result.message}`);
    await sleep(pause(n));
  }
}

async function newestTraceId(d: ResolvedDeployment): Promise<string | undefined> {
  if (d.profile.smoke.traceId) return d.profile.smoke.traceId;
  return withDatabase(databaseUrl(d), async (c) => {
    const exists = await c.query(`SELECT to_regclass('public.dg_trace_summary') AS t`);
    if (!exists.rows[0].t) return undefined;
    // A trace nothing writes to any more: under live traffic the busiest traces answer 409
    // (projection out of date) whenever the projector is a moment behind, which says nothing
    // about the version serving. The least recently updated one is also the same trace before
    // and after the upgrade, so their reads compare.
    const quiet = await c.query(`SELECT 1 FROM information_schema.columns WHERE table_name = 'dg_trace_summary' AND column_name = 'updated_at'`);
    const order = quiet.rows.length ? 'updated_at ASC, trace_id ASC' : 'trace_id DESC';
    const { rows } = await c.query(`SELECT trace_id FROM dg_trace_summary WHERE tenant_id = $1 ORDER BY ${order} LIMIT 1`, [d.profile.smoke.tenant]);
    return rows[0]?.trace_id as string | undefined;
  });
}

/**
 * The guide's five post-upgrade checks, each with its own verdict, latency and reason. With a
 * baseline (the same checks on the old version before the upgrade), the trace and workflow
 * reads are compared with what the old version returned. `readOnly` (the baseline before an
 * upgrade) leaves out replay admission, which writes a replay run: a rejected or failed
 * preflight must leave the database exactly as it was.
 */
export function runSmokeChecks(deployment: string, baseline?: SmokeObservations, opts: { readOnly?: boolean } = {}): Promise<SmokeReport> {
  return keepAlive('smoke checks', () => smokeChecks(deployment, baseline, opts));
}

async function smokeChecks(deployment: string, baseline: SmokeObservations | undefined, opts: { readOnly?: boolean }): Promise<SmokeReport> {
  const d = deploymentOf(deployment);
  const call = appApi(d);
  const reader = secret(d.profile.smoke.readerToken);
  const admin = secret(d.profile.smoke.adminToken);
  const timeoutMs = durationMs(d.profile.smoke.timeout);
  const observations: SmokeObservations = {};
  const checks: SmokeCheckResult[] = [];
  let version: string | undefined;

  // Process adapter: the pidfile's process is gone. Command adapter: still refused 1 s later.
  let goneReason: string | undefined;
  const gone = async (): Promise<boolean> => {
    if (d.profile.runtime.adapter === 'process') return !(await probeRuntime(deployment)).running;
    await sleep(1000);
    return !(await runtimeAnswers(deployment));
  };
  const pollLive = <T>(deadline: number, what: string, attempt: () => Promise<T | CheckFailed | ProjectionSymptom>, pause?: (poll: number) => number) => poll(deadline, what, attempt, gone, pause);
  const check = async (name: SmokeCheckResult['name'], fn: (deadline: number) => Promise<string>) => {
    const started = Date.now();
    heartbeat(`smoke: ${name}`);
    if (goneReason) {
      checks.push({ name, passed: false, latencyMs: 0, reason: `not run: ${goneReason}` });
      return;
    }
    try {
      const reason = await fn(started + timeoutMs);
      checks.push({ name, passed: true, latencyMs: Date.now() - started, reason });
    } catch (caught) {
      let err = caught;
      if (!(err instanceof RuntimeGone) && isRefused(err) && (await gone())) err = new RuntimeGone(`the runtime is gone: ${name} was refused and no runtime process is running`);
      if (err instanceof RuntimeGone) goneReason = err.message;
      const reason = redactSecrets((err as Error).message, secretValues(d));
      const projectionSymptom = !(err instanceof RuntimeGone) && (name === 'projections' || err instanceof ProjectionSymptom);
      checks.push({ name, passed: false, latencyMs: Date.now() - started, reason, projectionSymptom });
    }
  };

  await check('healthz', (deadline) =>
    pollLive(deadline, 'healthz', async () => {
      const r = await call('GET', '/api/healthz');
      if (r.status !== 200) return new CheckFailed(`GET /api/healthz answered ${r.status}`);
      if (r.body?.store?.['repo_started?'] !== true) return new CheckFailed('healthz is 200 but store["repo_started?"] is not true');
      // The projector reports its own start; projection reads before it has started show stale state.
      if (r.body?.projector?.status === 'starting') return new CheckFailed('the projector is still starting');
      version = r.body?.version;
      return `200, repo started${version ? `, version ${version}` : ''}`;
    }),
  );

  if (!opts.readOnly) await failpoint('smoke.afterHealthz');
  // Under load pending_events is rarely 0 at the instant of a read. A projector that keeps up
  // is one that, with no open failure, reaches the event-log head seen at the check's first read
  // within the smoke timeout; one that falls behind or fails does not pass.
  let headAtStart: number | undefined;
  await check('projections', (deadline) =>
    pollLive(deadline, 'projections', async () => {
      const r = await call('GET', '/api/v1/projections/health', reader);
      if (r.status !== 200) return new CheckFailed(`GET /api/v1/projections/health answered ${errorOf(r)}`);
      const projections: any[] = r.body?.data?.projections ?? [];
      if (projections.length === 0) return new CheckFailed('no projections reported');
      const failing = projections.filter((p) => openFailures(p) > 0).map((p) => p.projection_name);
      if (failing.length) return new CheckFailed(`open projection failures in ${failing.join(', ')}`);
      const head = Number(r.body?.data?.event_log_last_seq ?? NaN);
      headAtStart ??= head;
      const behind = Number.isFinite(headAtStart)
        ? projections.filter((p) => Number(p.last_log_seq) < headAtStart!)
        : projections.filter((p) => Number(p.pending_events) > 0);
      if (behind.length) {
        return new CheckFailed(`not caught up to log_seq ${headAtStart}: ${behind.map((p) => `${p.projection_name} at ${p.last_log_seq} (${p.pending_events} pending)`).join(', ')}`);
      }
      observations.digests = Object.fromEntries(projections.map((p) => [p.projection_name, p.digest ?? null]));
      const pendingNow = projections.reduce((n, p) => n + Number(p.pending_events), 0);
      return `${projections.length} projections caught up to log_seq ${headAtStart}, no open failures${pendingNow ? ` (${pendingNow} newer events pending: writes are flowing)` : ''}`;
    }),
  );

  await check('console', async () => {
    const r = await call('GET', `/?tenant=${encodeURIComponent(d.profile.smoke.tenant)}`);
    if (r.status !== 200) throw new Error(`GET / answered ${r.status}`);
    if (!r.text.includes('Operator Console')) throw new Error('GET / is 200 but is not the operator console');
    const panel = /(Projection health unavailable|[A-Z][a-z]+ unavailable|Internal Server Error)/.exec(r.text);
    if (panel) throw new Error(`console renders an error panel: "${panel[1]}"`);
    return '200, console without error panel';
  });

  // Admin routes share DecisionGraph's limit of 60 requests a minute per account and tenant
  // (rate_limiter.ex, fixed one-minute windows) with the operator's own admin scripts, so they are
  // polled on adminPollDelayMs (0.5, 1, 2, then every 3 s), and a 429 is waited out up to the
  // check's deadline (appApi). Admin requests of one smoke run: this check's only, none in a
  // readOnly baseline; usually 2-4 (one admission, 1-3 status reads of a catch_up bounded to the
  // head); at most 25 within the check's 60 s default timeout (22 polls on that schedule, plus 3 for
  // the second loop restarting it), i.e. under half the limit. Reader routes (600 a minute) are
  // polled every 300 ms: at most 200 a minute.
  if (!opts.readOnly) await check('replay', async (deadline) => {
    const run = await pollLive(deadline, 'replay admission', async () => {
      // Bounded by the head the projections check saw: an unbounded catch-up under steady writes
      // only ends when the projector outruns the writers, which a loaded host may never do.
      const bound = Number.isFinite(headAtStart) ? { until_log_seq: headAtStart } : {};
      const r = await call('POST', '/api/v1/admin/replays', admin, { mode: 'catch_up', projection: 'all', reason: 'dg-upgrade smoke check', ...bound }, { deadline });
      if (r.status === 409) return new CheckFailed('a replay job is already running (409)');
      if (r.status !== 202) throw new Error(`replay admission answered ${errorOf(r)}, expected 202`);
      return r.body?.data?.run as { job_id: string };
    }, adminPollDelayMs);
    const finalStatus = await pollLive(deadline, `replay ${run.job_id}`, async () => {
      const r = await call('GET', `/api/v1/admin/replays/${encodeURIComponent(run.job_id)}`, admin, undefined, { deadline });
      const status = r.body?.data?.run?.status ?? r.body?.data?.status;
      if (status === 'completed' || status === 'failed' || status === 'cancelled') return status as string;
      return new CheckFailed(`replay ${run.job_id} is ${status ?? errorOf(r)}`);
    }, adminPollDelayMs);
    if (finalStatus !== 'completed') throw new Error(`catch_up replay ${run.job_id} ended ${finalStatus}`);
    return `catch_up replay ${run.job_id} admitted (202) and completed`;
  });

  await check('traces-workflows', async (deadline) => {
    const traceId = await newestTraceId(d);
    const notes: string[] = [];
    if (traceId) {
      const trace = await pollLive(deadline, `trace ${traceId}`, async () => {
        const r = await call('GET', `/api/v1/traces/${encodeURIComponent(traceId)}`, reader);
        if (r.status === 409) return new ProjectionSymptom('trace projection out of date (409)');
        if (r.status !== 200) throw new Error(`GET /api/v1/traces/${traceId} answered ${errorOf(r)}`);
        return r.body?.data;
      });
      const count = Number(trace?.summary?.event_count ?? trace?.events?.length ?? 0);
      observations.traceId = traceId;
      observations.traceEventCount = count;
      if (baseline?.traceId === traceId && baseline.traceEventCount !== undefined && count < baseline.traceEventCount) {
        throw new ProjectionSymptom(`trace ${traceId} shows ${count} events, the old version showed ${baseline.traceEventCount}`);
      }
      notes.push(`trace ${traceId}: ${count} events`);
    } else {
      notes.push('no trace to read yet');
    }
    // Workflow reads write: in DecisionGraph every workflow route (list, by id, export) first runs
    // refresh_runtime!, which ingests pending workflow events and escalates overdue items
    // (apps/dg_api/lib/decision_graph/api/workflows.ex). The API has no read-only way to see
    // them, so even the baseline before an upgrade writes here (docs/decisions.md). Under steady
    // writes a read may lose a race and answer 5xx; a broken route fails all three tries, a
    // second apart.
    const workflowRead = async (route: string) => {
      let r = await call('GET', route, reader);
      for (let attempt = 2; r.status >= 500 && attempt <= 3; attempt++) {
        heartbeat(`smoke: ${route} answered ${r.status}, try ${attempt} of 3`);
        await sleep(1000);
        r = await call('GET', route, reader);
      }
      return r;
    };
    const wf = await workflowRead('/api/v1/workflows?limit=12');
    if (wf.status !== 200) throw new Error(`GET /api/v1/workflows answered ${errorOf(wf)}`);
    const items: any[] = Array.isArray(wf.body?.data) ? wf.body.data : (wf.body?.data?.workflows ?? wf.body?.data?.items ?? []);
    const ids = items.map((w) => String(w.workflow_id ?? w.id)).sort();
    observations.workflowIds = ids;
    if (baseline?.workflowIds) {
      // The list is an inbox, not a stable set: open items only (only_open defaults to true),
      // overdue first, then priority, then requested_at, the top 12. An item approved or rejected
      // during the upgrade, or pushed out by more urgent ones, leaves it with no data lost. So each
      // one the old version listed and this one does not is looked up by id, which answers closed
      // items too: only one that no longer exists (404) is lost data.
      const missing = baseline.workflowIds.filter((id) => !ids.includes(id));
      const lost: string[] = [];
      const closed: Record<string, number> = {};
      let pushedOut = 0;
      for (const id of missing) {
        heartbeat(`smoke: workflow ${id} left the inbox, looking it up`);
        const route = `/api/v1/workflows/${encodeURIComponent(id)}`;
        const r = await workflowRead(route);
        if (r.status === 404) {
          lost.push(id);
          continue;
        }
        if (r.status !== 200) throw new Error(`GET ${route} (a workflow the old version listed) answered ${errorOf(r)}`);
        const status = String(r.body?.data?.workflow?.status ?? r.body?.data?.status ?? 'unknown');
        if (TERMINAL_WORKFLOW_STATUSES.includes(status)) closed[status] = (closed[status] ?? 0) + 1;
        else pushedOut++;
      }
      if (lost.length) {
        throw new Error(`workflows shown before the upgrade no longer exist (GET /api/v1/workflows/:id answered 404): ${lost.join(', ')}`);
      }
      if (missing.length) {
        const closedCount = Object.values(closed).reduce((a, b) => a + b, 0);
        const parts = [
          closedCount ? `${closedCount} changed state (${Object.entries(closed).map(([s, n]) => `${n} ${s}`).join(', ')})` : '',
          pushedOut ? `${pushedOut} still open outside the top 12` : '',
        ].filter(Boolean);
        notes.push(`${missing.length} of the ${baseline.workflowIds.length} workflows listed before left the inbox and still exist: ${parts.join(', ')}`);
      }
    }
    notes.push(`${ids.length} open workflows in the inbox${opts.readOnly ? ' (read through routes that write: DecisionGraph refreshes its workflow runtime on every workflow read)' : ''}`);
    return notes.join('; ');
  });

  return { passed: checks.every((c) => c.passed), checkedAt: new Date().toISOString(), version, checks, observations };
}
