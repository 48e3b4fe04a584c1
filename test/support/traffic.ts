import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';

/**
 * Live traffic for end-to-end tests and benches: N writes/s through the app's write API
 * (`POST /api/v1/events`, as the real DecisionGraph takes them), and optionally a second writer
 * that inserts into `dg_event_log` directly (a cron job or a second service), which keeps writing
 * while the app is stopped. Every confirmed write is recorded with its `log_seq` and event ID;
 * every failed request with its time and reason.
 *
 *   const traffic = startTraffic(d, { rate: 50 });
 *   ...
 *   const t = await traffic.stop();
 */

/** What the generator needs of a deployment (a SampleDeployment or E2eDeployment fits). */
export interface TrafficTarget {
  port: number;
  databaseUrl: string;
  secrets: { adminToken: string; writerToken?: string };
}

export interface TrafficOptions {
  /** API writes per second (default 50; 0 for none). */
  rate?: number;
  /** Direct-to-database inserts per second (default 0: off); switch with `setDirectRate`. */
  directRate?: number;
  tenant?: string;
  /** Bearer token with the writer or admin role (default the deployment's writer token, else its admin token). */
  token?: string;
  /** Per-request timeout (default 2000 ms). */
  timeoutMs?: number;
  /** `cron` (default): connects once a second, writes that second's events, disconnects. `session`: one connection kept open. */
  directMode?: 'cron' | 'session';
  /** application_name of the direct writer's database sessions. */
  directApplicationName?: string;
}

export type WriteVia = 'api' | 'direct';

export interface ConfirmedWrite {
  via: WriteVia;
  eventId: string;
  logSeq: number;
  /** Epoch ms when the confirmation arrived. */
  at: number;
}

export interface FailedWrite {
  via: WriteVia;
  eventId: string;
  /** Epoch ms when the request was sent. */
  sentAt: number;
  at: number;
  /** `refused`: certainly not written (an HTTP error answer, a refused connection). `unknown`: the request may have been written (timeout, connection lost mid-request). */
  outcome: 'refused' | 'unknown';
  reason: string;
}

export interface TrafficReport {
  startedAt: number;
  stoppedAt: number;
  sent: number;
  confirmed: ConfirmedWrite[];
  failed: FailedWrite[];
}

export interface Traffic {
  /** Switches the direct writer on (events/s) or off (0) while the traffic runs. */
  setDirectRate(perSecond: number): void;
  /** A copy of what happened so far. */
  snapshot(): TrafficReport;
  /** Stops sending, waits for requests in flight, and returns the full record. */
  stop(): Promise<TrafficReport>;
}

/** Serialises appends like the app does (events.mjs), so log_seq values commit in order. */
const APPEND_LOCK_KEY = 7_345_001;
const TRAFFIC_TRACES = 16;

/** One event envelope as the real app's EventEnvelope takes it. Bounded trace IDs keep projections small. */
export function trafficEnvelope(eventId: string, n: number, producer = 'dgu-traffic') {
  const trace = `trace-traffic-${String(n % TRAFFIC_TRACES).padStart(2, '0')}`;
  const policy = n % 2 === 0;
  return {
    event_id: eventId,
    event_type: policy ? 'policy.evaluated' : 'trace.annotated',
    idempotency_key: eventId,
    trace_id: trace,
    trace_seq: n,
    occurred_at: new Date().toISOString(),
    actor: { actor_type: 'service', actor_id: producer },
    source: { producer_id: producer, system: 'dg-upgrade-tests', subsystem: 'traffic' },
    payload: policy ? { policy_id: `traffic_policy_${n % 4}`, outcome: n % 3 === 0 ? 'fail' : 'pass' } : { note: `traffic note ${n}`, actor: producer },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function startTraffic(target: TrafficTarget, opts: TrafficOptions = {}): Traffic {
  const rate = opts.rate ?? 50;
  const tenant = opts.tenant ?? 'default';
  const token = opts.token ?? target.secrets.writerToken ?? target.secrets.adminToken;
  const timeoutMs = opts.timeoutMs ?? 2000;
  const runTag = randomBytes(4).toString('hex');
  const url = `http://127.0.0.1:${target.port}/api/v1/events`;
  const report: TrafficReport = { startedAt: Date.now(), stoppedAt: 0, sent: 0, confirmed: [], failed: [] };
  const inFlight = new Set<Promise<void>>();
  let stopped = false;

  const track = (p: Promise<void>) => {
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  };

  async function sendOne(n: number): Promise<void> {
    const eventId = `evt-${runTag}-${n}`;
    const sentAt = Date.now();
    const fail = (outcome: FailedWrite['outcome'], reason: string): void => {
      report.failed.push({ via: 'api', eventId, sentAt, at: Date.now(), outcome, reason });
    };
    let res: Response;
    try {
      res = await fetch(url, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'x-tenant-id': tenant, 'content-type': 'application/json' },
        body: JSON.stringify(trafficEnvelope(eventId, n)),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      const reason = cause?.code ?? cause?.message ?? (err as Error).name ?? String(err);
      // A refused connection never reached the app; anything else may have been written.
      return fail(cause?.code === 'ECONNREFUSED' ? 'refused' : 'unknown', reason);
    }
    let text = '';
    try {
      text = await res.text();
    } catch (err) {
      return fail('unknown', `reading the answer: ${(err as Error).message}`);
    }
    if (res.status !== 201) return fail(res.status >= 500 ? 'unknown' : 'refused', `HTTP ${res.status}: ${text.slice(0, 200)}`);
    const body = JSON.parse(text);
    report.confirmed.push({ via: 'api', eventId, logSeq: Number(body.data.event.log_seq), at: Date.now() });
  }

  // API writer: a 20 ms tick sends what the schedule owes, in small bursts after a stall.
  let owed = 0;
  let lastTick = Date.now();
  const apiTimer = setInterval(() => {
    if (stopped || rate <= 0) return;
    const now = Date.now();
    owed += ((now - lastTick) * rate) / 1000;
    lastTick = now;
    const burst = Math.min(Math.floor(owed), Math.max(1, Math.ceil(rate / 5)));
    owed = Math.min(owed - burst, rate);
    for (let i = 0; i < burst; i++) track(sendOne(report.sent++));
  }, 20);

  // Direct writer: its own named sessions. Like a cron job, once a second it connects, inserts
  // that second's events (each autocommitted) and disconnects; `directMode: 'session'` keeps one
  // connection open instead (a second service).
  let directRate = opts.directRate ?? 0;
  let directN = 0;
  const connectDirect = async () => {
    const c = new pg.Client({ connectionString: target.databaseUrl, application_name: opts.directApplicationName ?? 'dgu-direct-writer', connectionTimeoutMillis: timeoutMs });
    c.on('error', () => {});
    await c.connect();
    return c;
  };
  const directLoop = (async () => {
    let client: pg.Client | undefined;
    let owedDirect = 0;
    let last = Date.now();
    while (!stopped) {
      await sleep(opts.directMode === 'session' ? 20 : 1000);
      const now = Date.now();
      owedDirect += ((now - last) * directRate) / 1000;
      last = now;
      if (directRate <= 0 || owedDirect < 1) {
        owedDirect = directRate <= 0 ? 0 : owedDirect;
        if (directRate <= 0 && client) {
          await client.end().catch(() => {});
          client = undefined;
        }
        continue;
      }
      const batch = Math.floor(owedDirect);
      owedDirect -= batch;
      for (let i = 0; i < batch && !stopped; i++) {
        const n = directN++;
        const eventId = `direct-${runTag}-${n}`;
        const sentAt = Date.now();
        report.sent++;
        let committing = false;
        try {
          client ??= await connectDirect();
          const env = trafficEnvelope(eventId, n, 'dgu-direct-writer');
          await client.query('BEGIN');
          await client.query('SELECT pg_advisory_xact_lock($1)', [APPEND_LOCK_KEY]);
          const { rows } = await client.query(
            `INSERT INTO dg_event_log (tenant_id, trace_id, event_type, payload, event_id, idempotency_key)
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING log_seq`,
            [tenant, env.trace_id, env.event_type, JSON.stringify(env.payload), eventId],
          );
          committing = true;
          await client.query('COMMIT');
          report.confirmed.push({ via: 'direct', eventId, logSeq: Number(rows[0].log_seq), at: Date.now() });
        } catch (err) {
          // Failing before COMMIT was sent writes nothing; a connection lost during COMMIT may have written.
          report.failed.push({ via: 'direct', eventId, sentAt, at: Date.now(), outcome: committing ? 'unknown' : 'refused', reason: (err as Error).message });
          await client?.end().catch(() => {});
          client = undefined;
          break;
        }
      }
      if (opts.directMode !== 'session' && client) {
        await client.end().catch(() => {});
        client = undefined;
      }
    }
    await client?.end().catch(() => {});
  })();

  const copy = (): TrafficReport => ({ ...report, confirmed: [...report.confirmed], failed: [...report.failed] });
  return {
    setDirectRate(perSecond: number) {
      directRate = perSecond;
    },
    snapshot: copy,
    async stop() {
      stopped = true;
      clearInterval(apiTimer);
      await directLoop;
      await Promise.all([...inFlight]);
      report.stoppedAt = Date.now();
      return copy();
    },
  };
}

// ------------------------------------------------------------------------------------ assertions

export interface EventRow {
  logSeq: number;
  eventId: string | null;
  /** The whole row as text: tells two rows with the same log_seq apart (a restore resets the sequence). */
  row: string;
}

export async function eventLogRows(databaseUrl: string): Promise<EventRow[]> {
  const client = new pg.Client({ connectionString: databaseUrl, application_name: 'dgu-test-inspect' });
  await client.connect();
  try {
    const { rows } = await client.query(`SELECT log_seq::bigint AS s, event_id, t::text AS row FROM dg_event_log t ORDER BY log_seq`);
    return rows.map((r) => ({ logSeq: Number(r.s), eventId: r.event_id as string | null, row: r.row as string }));
  } finally {
    await client.end();
  }
}

export interface WriteAccounting {
  /** Confirmed writes found in the live database. */
  live: number;
  /** Confirmed writes not in the live database, each in the set-aside database of the rollback that discarded it. */
  setAside: number;
  /** Per set-aside database: how many confirmed writes its rollback discarded. */
  perAside: Record<string, number>;
}

/**
 * Every confirmed write (API and direct) is in exactly one place: once in the live database with
 * the log_seq it was confirmed with, or (discarded by a rollback) not in the live database but
 * once, with that log_seq, in the set-aside database of the rollback that discarded it (the
 * newest of `asideUrls`, given oldest first, that holds it). Nothing confirmed is lost. That
 * each rollback discarded exactly what its gate counted is `assertGateCountMatchesDiscarded`.
 */
export async function assertConfirmedWritesAccountedFor(
  report: TrafficReport,
  liveUrl: string,
  asideUrls: Record<string, string> = {},
  /** Rows of set-aside databases read before (they never change): pass the same map to each call. */
  asideCache: Map<string, EventRow[]> = new Map(),
): Promise<WriteAccounting> {
  const index = (rows: EventRow[]) => {
    const m = new Map<string, number[]>();
    for (const r of rows) if (r.eventId) m.set(r.eventId, [...(m.get(r.eventId) ?? []), r.logSeq]);
    return m;
  };
  const live = index(await eventLogRows(liveUrl));
  const asides = new Map<string, Map<string, number[]>>();
  for (const [name, url] of Object.entries(asideUrls)) {
    if (!asideCache.has(url)) asideCache.set(url, await eventLogRows(url));
    asides.set(name, index(asideCache.get(url)!));
  }
  const result: WriteAccounting = { live: 0, setAside: 0, perAside: Object.fromEntries([...asides.keys()].map((k) => [k, 0])) };
  const problems: string[] = [];
  for (const w of report.confirmed) {
    const inLive = live.get(w.eventId);
    if (inLive) {
      if (inLive.length !== 1 || inLive[0] !== w.logSeq) problems.push(`${w.via} ${w.eventId} (log_seq ${w.logSeq}) is in the live database as log_seq ${inLive.join(', ')}`);
      else result.live++;
      continue;
    }
    // Each set-aside database is a whole copy of the database it replaced, so a write that stayed
    // live through earlier rollbacks is in their set-aside databases too: the newest one holding it
    // is the rollback that discarded it.
    const holders = [...asides].filter(([, m]) => m.get(w.eventId)?.length).map(([name, m]) => ({ name, seqs: m.get(w.eventId)! }));
    const discardedBy = holders.at(-1);
    if (!discardedBy) {
      problems.push(`${w.via} ${w.eventId} (log_seq ${w.logSeq}, confirmed ${new Date(w.at).toISOString()}) is LOST: in neither the live nor a set-aside database`);
    } else if (discardedBy.seqs.length !== 1 || discardedBy.seqs[0] !== w.logSeq) {
      problems.push(`${w.via} ${w.eventId} (log_seq ${w.logSeq}) is in ${discardedBy.name} as log_seq ${discardedBy.seqs.join(', ')}`);
    } else {
      result.setAside++;
      result.perAside[discardedBy.name]!++;
    }
  }
  assert.deepEqual(problems.slice(0, 20), [], `${problems.length} confirmed writes not accounted for exactly once`);
  return result;
}

export interface DiscardCount {
  /** Rows of the set-aside database that the live database does not hold: what the restore discarded. */
  discarded: number;
  /** Of those, writes the generator saw confirmed. */
  confirmedByGenerator: number;
  /** Of those, writes whose request failed with an unknown outcome (they were in fact written). */
  unknownOutcome: number;
  /** Of those, rows the generator knows nothing about (written by something else). */
  foreign: number;
}

/**
 * What a rollback discarded, counted from the databases themselves: rows of the set-aside (the
 * upgraded) database missing from the live one. Run it right after the rollback, before another
 * rollback changes the live database again.
 */
export async function countDiscarded(liveUrl: string, asideUrl: string, report?: TrafficReport): Promise<DiscardCount> {
  const liveRows = new Set((await eventLogRows(liveUrl)).map((r) => r.row));
  const missing = (await eventLogRows(asideUrl)).filter((r) => !liveRows.has(r.row));
  const confirmed = new Set(report?.confirmed.map((w) => w.eventId));
  const unknown = new Set(report?.failed.filter((f) => f.outcome === 'unknown').map((f) => f.eventId));
  const result: DiscardCount = { discarded: missing.length, confirmedByGenerator: 0, unknownOutcome: 0, foreign: 0 };
  for (const r of missing) {
    if (r.eventId && confirmed.has(r.eventId)) result.confirmedByGenerator++;
    else if (r.eventId && unknown.has(r.eventId)) result.unknownOutcome++;
    else result.foreign++;
  }
  return result;
}

/** The events count a rollback's data-loss gate accepted (upgrade status: rollback.dataLoss; rollback status: dataLoss), or 0 when it never stopped there. */
export function acceptedDataLoss(status: any): number {
  const loss = status?.rollback?.dataLoss ?? status?.dataLoss;
  return loss?.acceptedBy ? Number(loss.eventsAfterBackup) : 0;
}

/**
 * The count the data-loss gate accepted equals what the restore actually discarded from the live
 * database, and everything discarded is kept in the set-aside database. Returns the counts.
 */
export async function assertGateCountMatchesDiscarded(status: any, liveUrl: string, asideUrl: string, report?: TrafficReport): Promise<DiscardCount & { accepted: number }> {
  const accepted = acceptedDataLoss(status);
  const counted = await countDiscarded(liveUrl, asideUrl, report);
  assert.equal(
    counted.discarded,
    accepted,
    `the data-loss gate accepted ${accepted} events, the restore discarded ${counted.discarded} (${counted.confirmedByGenerator} confirmed writes, ${counted.unknownOutcome} of unknown outcome, ${counted.foreign} from elsewhere)`,
  );
  return { ...counted, accepted };
}

/** One line for logs: how the traffic went. */
export function describeTraffic(t: TrafficReport): string {
  const byVia = (via: WriteVia) => t.confirmed.filter((w) => w.via === via).length;
  const reasons = new Map<string, number>();
  for (const f of t.failed) {
    const key = `${f.via}:${f.reason.replace(/\d+/g, 'N').slice(0, 60)}`;
    reasons.set(key, (reasons.get(key) ?? 0) + 1);
  }
  return `${t.sent} sent in ${((t.stoppedAt || Date.now()) - t.startedAt) / 1000} s: ${byVia('api')} api + ${byVia('direct')} direct confirmed, ${t.failed.length} failed ${JSON.stringify(Object.fromEntries(reasons))}`;
}
