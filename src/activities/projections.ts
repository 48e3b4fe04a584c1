import { ApplicationFailure } from '@temporalio/activity';
import { durationMs } from '../config/profile.js';
import type { RecoveryFacts } from '../domain/recoveryRule.js';
import { appApi, errorOf, openFailures } from './appApi.js';
import { tenantsWithProjections } from './appChecks.js';
import { databaseUrl, deploymentOf, secret } from './deployment.js';
import { heartbeat, keepAlive, sleep } from './heartbeat.js';
import { eventLogHead, migrationVersions, withDatabase } from '../database/postgres.js';
import { adminPollDelayMs } from './rateLimit.js';
import { findManifest } from '../database/restore.js';

export const PROJECTIONS = ['context_graph', 'trace_summary', 'precedent_index'] as const;

/** The facts the narrow path's rule needs: the pre-upgrade backup's manifest and the live database. */
export async function recoveryFacts(deployment: string, backupId?: string): Promise<Omit<RecoveryFacts, 'migrationsNotSuspect'>> {
  const d = deploymentOf(deployment);
  const manifest = findManifest(d, backupId);
  const current = await withDatabase(databaseUrl(d), async (c) => {
    const mark = await eventLogHead(c);
    return { migrationVersions: await migrationVersions(c), eventLog: { maxLogSeq: mark.maxLogSeq, rowCount: mark.rowCount } };
  });
  return {
    backup: { id: manifest.id, migrationVersions: manifest.migrationVersions, eventLog: { maxLogSeq: manifest.eventLog.maxLogSeq, rowCount: manifest.eventLog.rowCount } },
    current,
  };
}

/**
 * Admits a `rebuild` replay of one projection through the admin API (it clears the projection's
 * tables, resets its cursor and replays the event log) and follows the job to its end, for every
 * tenant that has projections: DecisionGraph rebuilds per tenant (the x-tenant-id header; cursors,
 * digests and failures are keyed by tenant + projection), so a rebuild of the smoke tenant alone
 * leaves the others as they were. Re-running after a crash admits another rebuild, which is
 * harmless: a rebuild is idempotent.
 */
export function rebuildProjection(deployment: string, projection: string): Promise<{ jobId: string; status: string; tenants?: Record<string, string> }> {
  return keepAlive(`rebuild ${projection}`, async () => {
    const d = deploymentOf(deployment);
    const admin = secret(d.profile.smoke.adminToken);
    const deadline = Date.now() + Math.max(durationMs(d.profile.smoke.timeout), 60_000) * 10;
    // Bounded by the event-log head at admission: an unbounded rebuild under steady writes ends
    // only once the projector outruns the writers; the projector's own ticks go on from there.
    const { head, tenants } = await withDatabase(databaseUrl(d), async (c) => ({
      head: Number((await c.query('SELECT coalesce(max(log_seq), 0) AS n FROM dg_event_log')).rows[0].n),
      tenants: await tenantsWithProjections(c, d.profile.smoke.tenant),
    }));
    const jobs: Record<string, string> = {};
    for (const tenant of tenants) {
      const call = appApi(d, tenant);
      let jobId: string | undefined;
      // Admin routes: 60 requests a minute per account and tenant (DecisionGraph's rate_limiter.ex),
      // so re-admissions and status reads follow adminPollDelayMs (at most 20 a minute) and a 429
      // is waited out up to the deadline (appApi).
      for (let n = 0; !jobId; n++) {
        const r = await call('POST', '/api/v1/admin/replays', admin, { mode: 'rebuild', projection, reason: 'dg-upgrade rebuild-projections', until_log_seq: head, metadata: { by: 'dg-upgrade' } }, { deadline });
        if (r.status === 202) jobId = r.body?.data?.run?.job_id;
        else if (r.status === 409 && Date.now() < deadline) await sleep(adminPollDelayMs(n)); // another replay runs: wait for it
        else if (r.status === 403) {
          const done = Object.keys(jobs);
          throw ApplicationFailure.nonRetryable(
            `the app refuses the rebuild replay of ${projection} for tenant ${tenant} (403 ${r.body?.error?.message ?? r.body?.error?.code ?? ''}): enable projection rebuilds in its configuration and give the smoke admin token projection_rebuild and every tenant; ` +
              `rebuilt for ${done.length ? done.join(', ') : 'no tenant'}, not for ${tenants.filter((t) => !done.includes(t)).join(', ')}`,
          );
        } else throw ApplicationFailure.nonRetryable(`rebuild admission of ${projection} for tenant ${tenant} answered ${errorOf(r)}`);
      }
      for (let n = 0; ; n++) {
        const r = await call('GET', `/api/v1/admin/replays/${encodeURIComponent(jobId)}`, admin, undefined, { deadline });
        const status = r.body?.data?.run?.status ?? r.body?.data?.status;
        heartbeat({ projection, tenant, jobId, status });
        if (status === 'completed') break;
        if (status === 'failed' || status === 'cancelled') throw ApplicationFailure.nonRetryable(`rebuild ${jobId} of ${projection} for tenant ${tenant} ended ${status}`);
        if (Date.now() > deadline) throw ApplicationFailure.nonRetryable(`rebuild ${jobId} of ${projection} for tenant ${tenant} still ${status} at the deadline`);
        await sleep(adminPollDelayMs(n));
      }
      jobs[tenant] = jobId;
    }
    return { jobId: (jobs[d.profile.smoke.tenant] ?? Object.values(jobs)[0]) as string, status: 'completed', tenants: jobs };
  });
}

export interface DigestReading {
  digests: Record<string, string | null>;
  fullDigest: string | null;
  /** The event-log head the projections were caught up to. */
  head?: number;
  /** The digests of every tenant checked (the narrow path checks every tenant with projections). */
  tenants?: Record<string, Record<string, string | null>>;
}

/**
 * Projection health after a rebuild, for every tenant with projections: no open failures, digests
 * present, every projection caught up to the event-log head seen at the first read, and the
 * digests equal over two reads unless writes moved the head between them (under live traffic the
 * digests must change). `digests` are the smoke tenant's; `tenants` holds every tenant's.
 */
export function verifyProjections(deployment: string): Promise<DigestReading> {
  return keepAlive('verify projections', async () => {
    const d = deploymentOf(deployment);
    const reader = secret(d.profile.smoke.readerToken);
    const admin = secret(d.profile.smoke.adminToken);
    const deadline = Date.now() + durationMs(d.profile.smoke.timeout);
    const tenants = await withDatabase(databaseUrl(d), (c) => tenantsWithProjections(c, d.profile.smoke.tenant));
    const read = async (tenant: string): Promise<DigestReading> => {
      const call = appApi(d, tenant);
      let target: number | undefined;
      // The smoke reader may be scoped to the smoke tenant (tenant_ids): another tenant's health is
      // read with the admin token, which the rebuild of every tenant needed anyway.
      let token = reader;
      for (;;) {
        const r = await call('GET', '/api/v1/projections/health', token);
        if ((r.status === 401 || r.status === 403) && token === reader && tenant !== d.profile.smoke.tenant) {
          token = admin;
          continue;
        }
        const projections: any[] = r.body?.data?.projections ?? [];
        const head = Number(r.body?.data?.event_log_last_seq ?? 0);
        target ??= head;
        const problems: string[] = [];
        if (r.status !== 200) problems.push(`projections health answered ${errorOf(r)}`);
        for (const p of projections) {
          if (Number(p.last_log_seq) < target) problems.push(`${p.projection_name}: at ${p.last_log_seq} of ${target} (${p.pending_events} pending)`);
          if (openFailures(p) > 0) problems.push(`${p.projection_name}: ${openFailures(p)} open failures`);
          if (!p.digest) problems.push(`${p.projection_name}: no digest`);
        }
        if (!problems.length && projections.length) {
          const caughtUpToHead = projections.every((p) => Number(p.pending_events) === 0);
          return { digests: Object.fromEntries(projections.map((p) => [p.projection_name, p.digest])), fullDigest: r.body.data.full_digest ?? null, head: caughtUpToHead ? head : undefined };
        }
        if (Date.now() > deadline) throw ApplicationFailure.nonRetryable(`projections of tenant ${tenant} are not healthy after the rebuild: ${problems.join('; ')}`);
        await sleep(300);
      }
    };
    const readAll = async (): Promise<Map<string, DigestReading>> => {
      const all = new Map<string, DigestReading>();
      for (const tenant of tenants) all.set(tenant, await read(tenant));
      return all;
    };
    const first = await readAll();
    await sleep(1000);
    const second = await readAll();
    for (const tenant of tenants) {
      const a = first.get(tenant)!;
      const b = second.get(tenant)!;
      const logMoved = a.head === undefined || b.head === undefined || a.head !== b.head;
      if (!logMoved && JSON.stringify(a.digests) !== JSON.stringify(b.digests)) {
        throw ApplicationFailure.nonRetryable(`projection digests of tenant ${tenant} changed between two reads a second apart: the projections are not stable`);
      }
    }
    const smoke = second.get(d.profile.smoke.tenant)!;
    return { ...smoke, tenants: Object.fromEntries([...second].map(([t, r]) => [t, r.digests])) };
  });
}
