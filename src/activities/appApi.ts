import type { ResolvedDeployment } from '../config/profile.js';
import { heartbeat, sleep } from './heartbeat.js';
import { retryWhileRateLimited } from './rateLimit.js';
import { baseUrlOf } from './runtime.js';

export interface ApiResponse {
  status: number;
  body: any;
  text: string;
}

/** A caller of the running app's HTTP API with the deployment's tenant header (or `tenantId`'s). */
export function appApi(d: ResolvedDeployment, tenantId?: string) {
  const base = baseUrlOf(d);
  const tenant = tenantId ?? d.profile.smoke.tenant;
  return async (method: string, route: string, token?: string, body?: unknown, opts: { deadline?: number } = {}): Promise<ApiResponse> => {
    const headers: Record<string, string> = { 'x-tenant-id': tenant };
    if (token) headers.authorization = `Bearer ${token}`;
    if (body) headers['content-type'] = 'application/json';
    return sendRetryingRateLimits(`${base}${route}`, { method, headers, body: body ? JSON.stringify(body) : undefined }, opts.deadline ?? Date.now() + RATE_LIMIT_WAIT_CAP_MS);
  };
}

/** Without a caller's deadline, a 429 is waited out for at most one of the app's one-minute windows. */
export const RATE_LIMIT_WAIT_CAP_MS = 61_000;

/**
 * One request; a 429 (DecisionGraph's rate limiter, src/activities/rateLimit.ts) is waited out and
 * sent again while the wait ends before `deadline`, heartbeating what it waits for. A 429 that
 * cannot be waited out in time is returned like any other answer.
 */
export function sendRetryingRateLimits(url: string, init: { method: string; headers: Record<string, string>; body?: string }, deadline: number): Promise<ApiResponse> {
  return retryWhileRateLimited(
    async () => {
      const res = await fetch(url, { ...init, signal: AbortSignal.timeout(10_000) });
      const text = await res.text();
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      return { value: { status: res.status, body: parsed, text }, status: res.status, retryAfter: res.headers.get('retry-after'), date: res.headers.get('date') };
    },
    { deadline, sleep, onWait: (ms, attempt) => heartbeat(`${init.method} ${new URL(url).pathname} answered 429 rate_limited (try ${attempt}); waiting ${Math.ceil(ms / 1000)} s for the rate-limit window`) },
  );
}

export function errorOf(r: ApiResponse): string {
  return r.body?.error?.code ? `${r.status} ${r.body.error.code}` : `${r.status}`;
}

export function openFailures(p: any): number {
  return Array.isArray(p.open_failures) ? p.open_failures.length : Number(p.open_failures ?? 0);
}
