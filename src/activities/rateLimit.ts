/**
 * 429 handling for calls to DecisionGraph's API.
 *
 * The real limiter (aliuyar1234/DecisionGraph at e642cce: `beam/apps/dg_api/lib/decision_graph/api/rate_limiter.ex`,
 * `beam/apps/dg_web/lib/decision_graph_web/plugs/rate_limit.ex`, `api_responder.ex`) counts requests per
 * `"<account_id>:<tenant_id>"` and scope (admin 60, read 600, write 300 by default) in FIXED
 * one-minute windows, `System.system_time(:second) |> div(60)`, and answers past the limit
 * 429 `{"error": {"code": "rate_limited", "message": "Rate limit exceeded for admin API scope", ...}}`
 * with no Retry-After header. So the wait is: Retry-After when a proxy or a later version sends
 * one, else until the next whole minute of the server's clock (its `Date` header; ours without one).
 */

/** After the window boundary, so that a server clock a little behind ours is past it too. */
export const WINDOW_MARGIN_MS = 500;
/** The shortest wait: a `Retry-After: 0` must not become a busy loop. */
export const MIN_WAIT_MS = 200;

/** How long to wait before retrying a 429, from its Retry-After and Date headers. */
export function rateLimitWaitMs(headers: { retryAfter?: string | null; date?: string | null }, now = Date.now()): number {
  const retryAfter = headers.retryAfter?.trim();
  if (retryAfter) {
    if (/^\d+$/.test(retryAfter)) return Math.max(Number(retryAfter) * 1000, MIN_WAIT_MS);
    const at = Date.parse(retryAfter);
    if (Number.isFinite(at)) return Math.max(at - (headers.date ? (Date.parse(headers.date) || now) : now), MIN_WAIT_MS);
  }
  // Fixed windows: the counter resets at the next whole minute. The Date header has one-second
  // resolution, so its time is at most a second behind the server's; the margin covers that.
  const serverNow = headers.date ? Date.parse(headers.date) : NaN;
  const clock = Number.isFinite(serverNow) ? serverNow : now;
  return Math.max(60_000 - (clock % 60_000) + WINDOW_MARGIN_MS, MIN_WAIT_MS);
}

export interface Attempt<T> {
  value: T;
  status: number;
  retryAfter?: string | null;
  date?: string | null;
}

/**
 * Sends, and on 429 waits (rateLimitWaitMs) and sends again, as long as the wait ends before
 * `deadline`; then returns the last answer, a 429 included, for the caller to fail on.
 */
export async function retryWhileRateLimited<T>(
  send: () => Promise<Attempt<T>>,
  opts: { deadline: number; sleep: (ms: number) => Promise<void>; onWait?: (waitMs: number, attempt: number) => void; now?: () => number },
): Promise<T> {
  const now = opts.now ?? Date.now;
  for (let attempt = 1; ; attempt++) {
    const a = await send();
    if (a.status !== 429) return a.value;
    const wait = rateLimitWaitMs(a, now());
    if (now() + wait > opts.deadline) return a.value;
    opts.onWait?.(wait, attempt);
    await opts.sleep(wait);
  }
}

/**
 * The pause between two polls of an admin route (replay status, a re-admission after 409): 0.5 s,
 * 1 s, 2 s, then every 3 s. A replay that ends within a few seconds is seen as fast as before;
 * a long one costs at most 20 admin requests a minute, a third of the real limit of 60 per
 * account and tenant, which the operator's own admin scripts share.
 */
export function adminPollDelayMs(poll: number): number {
  return [500, 1000, 2000][poll] ?? 3000;
}
