// 429 handling of the app API caller (compatibility row 27): DecisionGraph limits admin routes to
// 60 requests a minute per account and tenant in fixed one-minute windows and answers 429
// rate_limited with no Retry-After (aliuyar1234/DecisionGraph e642cce, rate_limiter.ex).
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { appApi } from '../src/activities/appApi.js';
import { adminPollDelayMs, rateLimitWaitMs, retryWhileRateLimited } from '../src/activities/rateLimit.js';
import type { ResolvedDeployment } from '../src/config/profile.js';

/** The real app's 429 body (api_responder.ex render_error of Errors.rate_limited/1). */
const RATE_LIMITED = JSON.stringify({ error: { code: 'rate_limited', details: {}, message: 'Rate limit exceeded for admin API scope' }, request_id: 'req-1' });

async function withServer(answer: (n: number, req: http.IncomingMessage, res: http.ServerResponse) => void, fn: (d: ResolvedDeployment, seen: () => Array<{ method: string; url: string; tenant: string }>) => Promise<void>) {
  const seen: Array<{ method: string; url: string; tenant: string }> = [];
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method!, url: req.url!, tenant: String(req.headers['x-tenant-id']) });
    req.resume();
    req.on('end', () => answer(seen.length, req, res));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  // appApi reads only the profile's host, port and smoke tenant.
  const d = { profile: { host: '127.0.0.1', port, smoke: { tenant: 'acme' } } } as unknown as ResolvedDeployment;
  try {
    await fn(d, () => seen);
  } finally {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

test('a 429 on replay admission is waited out (Retry-After) and the admission sent again: 202', async () => {
  await withServer(
    (n, _req, res) => {
      if (n === 1) res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '1' }).end(RATE_LIMITED);
      else res.writeHead(202, { 'content-type': 'application/json' }).end(JSON.stringify({ data: { run: { job_id: 'job-1', status: 'queued' } } }));
    },
    async (d, seen) => {
      const call = appApi(d);
      const started = Date.now();
      const r = await call('POST', '/api/v1/admin/replays', 'admin-token', { mode: 'catch_up', projection: 'all', reason: 'test' }, { deadline: Date.now() + 10_000 });
      assert.equal(r.status, 202);
      assert.equal(r.body.data.run.job_id, 'job-1');
      assert.equal(seen().length, 2, 'sent twice');
      assert.deepEqual(seen().map((s) => `${s.method} ${s.url} ${s.tenant}`), ['POST /api/v1/admin/replays acme', 'POST /api/v1/admin/replays acme']);
      assert.ok(Date.now() - started >= 900, `waited the Retry-After second (${Date.now() - started} ms)`);
    },
  );
});

test('the real app\'s 429 (no Retry-After) is waited out to the next minute of the server\'s Date, then 202', async () => {
  await withServer(
    (n, _req, res) => {
      // The server's clock 59 s into a minute: its window resets in 1 s (+ 0.5 s margin).
      const date = new Date(Math.floor(Date.now() / 60_000) * 60_000 + 59_000).toUTCString();
      if (n === 1) res.writeHead(429, { 'content-type': 'application/json', date }).end(RATE_LIMITED);
      else res.writeHead(202, { 'content-type': 'application/json', date }).end(JSON.stringify({ data: { run: { job_id: 'job-2' } } }));
    },
    async (d, seen) => {
      const started = Date.now();
      const r = await appApi(d, 'other-tenant')('POST', '/api/v1/admin/replays', 'admin-token', { mode: 'rebuild' }, { deadline: Date.now() + 10_000 });
      assert.equal(r.status, 202);
      assert.equal(seen().length, 2);
      assert.equal(seen()[1]!.tenant, 'other-tenant');
      const waited = Date.now() - started;
      assert.ok(waited >= 1400 && waited < 5000, `waited ${waited} ms`);
    },
  );
});

test('a 429 whose window resets after the deadline is returned at once, for the caller to fail on', async () => {
  await withServer(
    (_n, _req, res) => {
      // No Retry-After, as the real app: the wait is to the next whole minute of the server's
      // Date, here 10 s into a minute, so 50.5 s: past the 2 s deadline.
      const date = new Date(Math.floor(Date.now() / 60_000) * 60_000 + 10_000).toUTCString();
      res.writeHead(429, { 'content-type': 'application/json', date }).end(RATE_LIMITED);
    },
    async (d, seen) => {
      const started = Date.now();
      const r = await appApi(d)('GET', '/api/v1/admin/replays/job-1', 'admin-token', undefined, { deadline: Date.now() + 2000 });
      assert.equal(r.status, 429);
      assert.equal(r.body.error.code, 'rate_limited');
      assert.equal(seen().length, 1);
      assert.ok(Date.now() - started < 1000, 'no wait that cannot end before the deadline');
    },
  );
});

test('the wait: Retry-After seconds or date, else the next whole minute of the server clock (fixed windows)', () => {
  const now = Date.parse('2026-12-01T12:00:45.300Z');
  assert.equal(rateLimitWaitMs({ retryAfter: '7' }, now), 7000);
  assert.equal(rateLimitWaitMs({ retryAfter: '0' }, now), 200, 'no busy loop');
  assert.equal(rateLimitWaitMs({ retryAfter: 'Tue, 01 Dec 2026 12:00:50 GMT', date: 'Tue, 01 Dec 2026 12:00:45 GMT' }, now), 5000);
  // Server Date 12:00:45 (one-second resolution): the window resets at 12:01:00, plus the margin.
  assert.equal(rateLimitWaitMs({ date: 'Tue, 01 Dec 2026 12:00:45 GMT' }, now), 15_500);
  // A server clock 20 s ahead of ours decides, not ours.
  assert.equal(rateLimitWaitMs({ date: 'Tue, 01 Dec 2026 12:01:05 GMT' }, now), 55_500);
  assert.equal(rateLimitWaitMs({}, now), 15_200, 'no headers: our clock');
});

test('retryWhileRateLimited: retries each 429 while the wait ends before the deadline, then returns the 429', async () => {
  let clock = 0;
  const slept: number[] = [];
  const answers = [429, 429, 429, 200];
  const sent: number[] = [];
  const value = await retryWhileRateLimited(
    async () => {
      const status = answers[sent.length]!;
      sent.push(status);
      return { value: status, status, retryAfter: '30' };
    },
    { deadline: 70_000, now: () => clock, sleep: async (ms) => { slept.push(ms); clock += ms; } },
  );
  // 0 -> 30 s -> 60 s; a third wait would end at 90 s, past the 70 s deadline.
  assert.equal(value, 429);
  assert.deepEqual(slept, [30_000, 30_000]);
  assert.equal(sent.length, 3);
});

test('admin polling: at most 22 requests in a minute, 20 a minute after that (the real limit is 60)', () => {
  const inWindow = (ms: number) => {
    let t = 0;
    let n = 0;
    while (t <= ms) {
      t += adminPollDelayMs(n);
      n++;
    }
    return n;
  };
  assert.equal(inWindow(60_000), 22);
  assert.equal(inWindow(120_000) - inWindow(60_000), 20);
  // The 300 ms polls they replace: 201 in a minute.
  assert.ok(inWindow(60_000) + 3 <= 30, 'a smoke run (two polling loops) stays under half the limit');
});
