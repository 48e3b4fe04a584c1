import type { Phase, UpgradeResult, UpgradeStatus } from '../domain/types.js';

/** What a finished run's describe tells about it. */
export interface FinishedRun {
  workflowId: string;
  /** The workflow type: upgrade, rollback, rebuildProjections, ... */
  type: string;
  /** Temporal's status name: COMPLETED, FAILED, CANCELLED, TERMINATED, TIMED_OUT. */
  runStatus: string;
  deployment?: string;
  targetRef?: string;
}

const PHASE_OF_OUTCOME: Record<string, Phase> = {
  succeeded: 'succeeded',
  'rolled-back': 'rolled-back',
  rebuilt: 'rebuilt',
  rejected: 'rejected',
  aborted: 'aborted',
  abandoned: 'abandoned',
  failed: 'failed',
};

/**
 * The status of a finished run whose status query cannot be served (no worker, or one too slow),
 * from its result or failure details: the operation is the run's own workflow type, and the
 * phase its result's (a rollback's report has an outcome and no phase).
 */
export function statusOfFinishedRun(run: FinishedRun, result: (Partial<UpgradeResult> & { outcome?: string }) | undefined, errorMessage?: string): UpgradeStatus {
  const phase: Phase =
    result?.phase ??
    (result?.outcome ? PHASE_OF_OUTCOME[result.outcome] : undefined) ??
    (run.runStatus === 'COMPLETED' ? 'succeeded' : run.runStatus === 'CANCELLED' ? 'aborted' : 'failed');
  return {
    workflowId: run.workflowId,
    operation: run.type as UpgradeStatus['operation'],
    deployment: result?.deployment ?? run.deployment ?? '',
    targetRef: result?.to?.ref ?? run.targetRef ?? '',
    phase,
    steps: result?.steps ?? [],
    ignoredSignals: [],
    summary: result?.summary ?? errorMessage ?? run.runStatus,
    outcome: result?.outcome as UpgradeStatus['outcome'],
  };
}
