import { ActivityCancellationType, proxyActivities } from '@temporalio/workflow';
import type * as activities from '../activities/index.js';
import { wholeDatabaseTimeoutMs } from '../domain/stepTimeouts.js';
import { BAD_INPUT_TYPES } from '../domain/types.js';

// Failures that a retry cannot fix: report them at once.
const nonRetryableErrorTypes = [...BAD_INPUT_TYPES, 'DgToolFailed'];

type Activities = typeof activities;

function short(arg: unknown): string {
  if (typeof arg === 'string') return arg.includes('/') ? `…/${arg.split('/').filter(Boolean).slice(-2).join('/')}` : arg;
  if (arg && typeof arg === 'object') return JSON.stringify(arg).slice(0, 60);
  return String(arg);
}

/** Gives every activity call a one-line summary in the Temporal UI, e.g. "startRuntime sample …/releases/8bf9c0". */
function withSummaries(proxy: Activities): Activities {
  return new Proxy(proxy, {
    get(target, name: string) {
      const fn = (target as any)[name];
      return (...args: unknown[]) => fn.executeWithOptions({ summary: `${name} ${args.filter((a) => a !== undefined).map(short).join(' ')}`.slice(0, 120) }, args);
    },
  });
}

/** Reads and quick git work. */
export const quick = withSummaries(proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  heartbeatTimeout: '20 seconds',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: { maximumAttempts: 3, initialInterval: '1 second', nonRetryableErrorTypes },
}));

/**
 * Long steps (build, backup, migrate, start, stop, smoke). They heartbeat every second, so a short
 * heartbeat timeout lets a dead worker be noticed in seconds and the step retried on a new one;
 * every one of them is safe to run again after a partial run.
 */
export const long = withSummaries(proxyActivities<Activities>({
  startToCloseTimeout: '2 hours',
  heartbeatTimeout: '5 seconds',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: { maximumAttempts: 5, initialInterval: '1 second', maximumInterval: '10 seconds', nonRetryableErrorTypes },
}));

/**
 * Patch (issue 19): the steps that read a whole database run with heartbeats and a time limit
 * from its size (selectBackup as a long step; verifyRestored sized by the backup's database).
 */
export const WHOLE_DATABASE_TIMEOUTS = 'whole-database-step-timeouts';

/**
 * Steps that read a whole database (a restore's verification): a time limit from its size, and
 * the long steps' short heartbeat timeout, which their per-chunk progress keeps.
 */
export function wholeDatabase(databaseBytes: number | undefined): Activities {
  return withSummaries(proxyActivities<Activities>({
    startToCloseTimeout: wholeDatabaseTimeoutMs(databaseBytes),
    heartbeatTimeout: '5 seconds',
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: { maximumAttempts: 5, initialInterval: '1 second', maximumInterval: '10 seconds', nonRetryableErrorTypes },
  }));
}

/**
 * Webhook notifications: a short time limit (the profile's per-webhook timeout is at most 30 s),
 * 3 attempts with a small backoff. They never block a run's main path (workflows/notifications.ts).
 */
export const notifications = withSummaries(proxyActivities<Activities>({
  startToCloseTimeout: '45 seconds',
  cancellationType: ActivityCancellationType.TRY_CANCEL,
  retry: { maximumAttempts: 3, initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '4 seconds', nonRetryableErrorTypes },
}));
