import { ActivityCancellationType, proxyActivities } from '@temporalio/workflow';
import type * as activities from '../activities/index.js';
import { FAILURE_TYPES } from './types.js';

// Failures that a retry cannot fix: report them at once.
const nonRetryableErrorTypes = [FAILURE_TYPES.badInput, 'DgToolFailed'];

/** Reads and quick git work. */
export const quick = proxyActivities<typeof activities>({
  startToCloseTimeout: '2 minutes',
  heartbeatTimeout: '20 seconds',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: { maximumAttempts: 3, initialInterval: '1 second', nonRetryableErrorTypes },
});

/**
 * Long steps (build, backup, migrate, start, stop, smoke). They heartbeat every second, so a short
 * heartbeat timeout lets a dead worker be noticed in seconds and the step retried on a new one;
 * every one of them is safe to run again after a partial run.
 */
export const long = proxyActivities<typeof activities>({
  startToCloseTimeout: '2 hours',
  heartbeatTimeout: '5 seconds',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: { maximumAttempts: 5, initialInterval: '1 second', maximumInterval: '10 seconds', nonRetryableErrorTypes },
});
