import { ApplicationFailure, log, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import { DEPLOYMENT_ATTRIBUTE, OPERATION_ATTRIBUTE, PHASE_ATTRIBUTE, TARGET_REF_ATTRIBUTE } from '../config/searchAttributes.js';
import { lockWorkflowId } from '../domain/lock.js';
import { FAILURE_TYPES, type OperationStatus, type Phase } from '../domain/types.js';
import { publishUiDetails } from './uiDetails.js';

/**
 * Refuses to run a mutating operation outside the deployment's lock: its workflow ID must be
 * the lock ID, or (for compensations) its parent's must. Returns the lock ID.
 */
export function requireDeploymentLock(deployment: string, what: string, opts: { allowChildOfLock: boolean }): string {
  const info = workflowInfo();
  const lockId = lockWorkflowId(deployment);
  const ok = info.workflowId === lockId || (opts.allowChildOfLock && info.parent?.workflowId === lockId);
  if (!ok) {
    throw ApplicationFailure.create({
      message: `${what} of deployment "${deployment}" must run under workflow ID "${lockId}" (one operation per deployment at a time); start it again with that ID`,
      type: FAILURE_TYPES.wrongWorkflowId,
      nonRetryable: true,
    });
  }
  return lockId;
}

/** Sets the search attributes that `list` and the UI filter on (only the lock holder: children share its row). */
export function tagRun(deployment: string, target: string, operation: string): void {
  if (workflowInfo().workflowId !== lockWorkflowId(deployment)) return;
  upsertSearchAttributes([
    { key: DEPLOYMENT_ATTRIBUTE, value: deployment },
    { key: TARGET_REF_ATTRIBUTE, value: target },
    { key: OPERATION_ATTRIBUTE, value: operation },
  ] as never);
}

/** Moves a run to a phase: status, search attribute, UI details and a log line, together. */
export function phaseSetter(status: OperationStatus): (phase: Phase, summary: string, waitingFor?: string) => void {
  return (phase, summary, waitingFor) => {
    status.phase = phase;
    status.summary = `${status.deployment}: ${summary}`;
    status.waitingFor = waitingFor;
    upsertSearchAttributes([{ key: PHASE_ATTRIBUTE, value: phase }] as never);
    publishUiDetails(status);
    log.info(status.summary);
  };
}

/**
 * A short key unique to this run, for names derived from it (backup IDs, set-aside databases,
 * child workflow IDs). Run IDs are UUIDv7: their first characters are a timestamp shared by
 * runs started close together, so the key is taken from the random tail.
 */
export function runKey(): string {
  return workflowInfo().runId.replace(/-/g, '').slice(-8);
}
