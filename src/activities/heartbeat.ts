import { Context } from '@temporalio/activity';

/** The last details each running activity sent, so that keepAlive's ticks repeat progress instead of replacing it. */
const lastDetails = new WeakMap<Context, unknown>();

/** Heartbeats when called inside an activity; a no-op when the same code runs outside one (setup scripts, tests). */
export function heartbeat(details?: unknown): void {
  try {
    const ctx = Context.current();
    lastDetails.set(ctx, details);
    ctx.heartbeat(details);
  } catch {
    /* not in an activity */
  }
}

function repeatLastHeartbeat(fallback: unknown): void {
  try {
    const ctx = Context.current();
    ctx.heartbeat(lastDetails.has(ctx) ? lastDetails.get(ctx) : fallback);
  } catch {
    /* not in an activity */
  }
}

export function cancellationSignal(): AbortSignal | undefined {
  try {
    return Context.current().cancellationSignal;
  } catch {
    return undefined;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Heartbeats every second while `fn` runs, for activity bodies that wait on I/O without a loop
 * of their own (a checksum of a big dump, row counts, HTTP checks). A dead worker stops
 * heartbeating, so Temporal notices it within the heartbeat timeout either way.
 */
export async function keepAlive<T>(what: string, fn: () => Promise<T>): Promise<T> {
  heartbeat(what);
  const ticker = setInterval(() => repeatLastHeartbeat(what), 1000);
  try {
    return await fn();
  } finally {
    clearInterval(ticker);
  }
}

/**
 * Heartbeats `{ step, bytes, ofBytes }` every second while `fn` runs, `bytes` read by `measure`
 * (a growing dump file, a restored database's size): progress for steps run by another program.
 */
export async function withByteProgress<T>(step: string, measure: () => Promise<number | undefined> | number | undefined, ofBytes: number | undefined, fn: () => Promise<T>): Promise<T> {
  const tick = async () => {
    const bytes = await Promise.resolve().then(measure).catch(() => undefined);
    heartbeat(bytes === undefined ? step : { step, bytes, ...(ofBytes ? { ofBytes } : {}) });
  };
  await tick();
  const ticker = setInterval(() => void tick(), 1000);
  try {
    return await fn();
  } finally {
    clearInterval(ticker);
  }
}
