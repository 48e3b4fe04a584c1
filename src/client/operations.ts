import os from 'node:os';
import {
  Client,
  Connection,
  WorkflowExecutionAlreadyStartedError,
  WorkflowFailedError,
  WorkflowNotFoundError,
  type WorkflowHandle,
  type WorkflowHandleWithFirstExecutionRunId,
} from '@temporalio/client';
import { ApplicationFailure, CancelledFailure, TerminatedFailure } from '@temporalio/common';
import { getDeployment, loadProfileFile, modelProblem, ProfileError, profilePathFromEnv, taskQueueForNode, type ResolvedDeployment } from '../config/profile.js';
import { lockWorkflowId } from '../workflows/lock.js';
import { FAILURE_TYPES, type UpgradeInput, type UpgradeResult, type UpgradeStatus } from '../workflows/types.js';
import type { PlanResult } from '../workflows/planUpgrade.js';
import { CliError, EXIT } from './exitCodes.js';
import { temporalSettings, type TemporalSettings } from './temporalConnection.js';

export interface Session {
  client: Client;
  settings: TemporalSettings;
  close(): Promise<void>;
}

export async function connect(): Promise<Session> {
  let settings: TemporalSettings;
  try {
    settings = temporalSettings();
  } catch (err) {
    throw new CliError((err as Error).message, EXIT.badInput);
  }
  let connection: Connection;
  try {
    connection = await Connection.connect({ address: settings.address, tls: settings.tls, apiKey: settings.apiKey, connectTimeout: 5000 });
    await connection.workflowService.getSystemInfo({});
  } catch (err) {
    throw new CliError(
      `cannot reach Temporal at ${settings.address} (${(err as Error).message.split('\n')[0]})`,
      EXIT.unavailable,
      'start it (npm run demo starts the embedded dev server) or set TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE',
    );
  }
  const client = new Client({ connection, namespace: settings.namespace });
  return { client, settings, close: () => connection.close() };
}

export function loadDeployment(profileFlag: string | undefined, name: string): ResolvedDeployment {
  try {
    const file = profilePathFromEnv(profileFlag);
    const d = getDeployment(loadProfileFile(file), name, file);
    const problem = modelProblem(d);
    if (problem) throw new CliError(problem, EXIT.invalidProfile, 'fix the profile file');
    return d;
  } catch (err) {
    if (err instanceof ProfileError) {
      const unknown = err.message.startsWith('unknown deployment');
      throw new CliError(err.message.split('\n').join('; '), unknown ? EXIT.unknownDeployment : EXIT.invalidProfile, unknown ? 'check the name, or the profile file (--profile / DG_UPGRADE_PROFILE)' : 'fix the profile file');
    }
    throw err;
  }
}

/** Exit code of each failure type a workflow can end with. */
const EXIT_OF_FAILURE: Record<string, number> = {
  [FAILURE_TYPES.badInput]: EXIT.badInput,
  [FAILURE_TYPES.wrongWorkflowId]: EXIT.badInput,
  [FAILURE_TYPES.invalidProfile]: EXIT.invalidProfile,
  [FAILURE_TYPES.unknownDeployment]: EXIT.unknownDeployment,
  [FAILURE_TYPES.badRef]: EXIT.badRef,
  [FAILURE_TYPES.databaseUnreachable]: EXIT.databaseUnreachable,
  [FAILURE_TYPES.noBackup]: EXIT.noBackup,
  [FAILURE_TYPES.refused]: EXIT.refused,
  [FAILURE_TYPES.rejected]: EXIT.rejected,
  [FAILURE_TYPES.aborted]: EXIT.rejected,
  [FAILURE_TYPES.abandoned]: EXIT.needsAttention,
};

export function operatorName(flag?: string): string {
  if (flag) return flag;
  try {
    return `${os.userInfo().username}@${os.hostname()}`;
  } catch {
    return 'unknown';
  }
}

export function startUpgrade(session: Session, d: ResolvedDeployment, input: UpgradeInput): Promise<WorkflowHandleWithFirstExecutionRunId> {
  return startOperation(
    session,
    d,
    'upgrade',
    input,
    `upgrade ${d.name} to ${input.targetRef}`,
    `Deployment **${d.name}** → \`${input.targetRef}\`, requested by ${input.requestedBy ?? 'unknown'} from the dg-upgrade CLI. Query \`status\` for the plan and progress; approve with the \`approve\` signal.`,
  );
}

/** Starts a mutating operation under the deployment's lock ID: refused while another one runs. */
export async function startOperation(
  session: Session,
  d: ResolvedDeployment,
  workflowType: 'upgrade' | 'rollback' | 'rebuildProjections' | 'releaseValidate',
  input: unknown,
  summary: string,
  details?: string,
): Promise<WorkflowHandleWithFirstExecutionRunId> {
  const workflowId = lockWorkflowId(d.name);
  try {
    return await session.client.workflow.start(workflowType, {
      taskQueue: taskQueueForNode(d.profile.node),
      workflowId,
      args: [input],
      workflowIdConflictPolicy: 'FAIL',
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
      staticSummary: summary,
      staticDetails: details,
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) {
      const running = await session.client.workflow.getHandle(workflowId).describe().catch(() => undefined);
      throw new CliError(
        `deployment "${d.name}" already has an operation running (${running?.type ?? 'workflow'} ${workflowId}, run ${running?.runId ?? '?'})`,
        EXIT.conflict,
        `follow it with: dg-upgrade status ${d.name} --follow`,
      );
    }
    throw err;
  }
}

export async function runPlan(session: Session, d: ResolvedDeployment, targetRef: string): Promise<PlanResult> {
  const handle = await session.client.workflow.start('planUpgrade', {
    taskQueue: taskQueueForNode(d.profile.node),
    workflowId: `dg-upgrade-plan-${d.name}-${Date.now()}`,
    args: [{ deployment: d.name, targetRef }],
    staticSummary: `plan ${d.name} -> ${targetRef} (read-only)`,
    workflowExecutionTimeout: '10 minutes',
  });
  try {
    return await handle.result();
  } catch (err) {
    throw cliErrorOfFailure(err);
  }
}

export function handleFor(session: Session, deploymentOrId: { deployment?: string; workflowId?: string }): WorkflowHandle {
  const id = deploymentOrId.workflowId ?? lockWorkflowId(deploymentOrId.deployment!);
  return session.client.workflow.getHandle(id);
}

export async function describeOrFail(handle: WorkflowHandle) {
  try {
    return await handle.describe();
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) {
      throw new CliError(`no workflow run with ID ${handle.workflowId}`, EXIT.notFound, 'list runs with: dg-upgrade list');
    }
    throw err;
  }
}

/** The status query; for a finished run whose query cannot be served, the result or failure details. */
export async function readStatus(handle: WorkflowHandle): Promise<UpgradeStatus> {
  const desc = await describeOrFail(handle);
  try {
    return await handle.query<UpgradeStatus>('status');
  } catch (err) {
    if (desc.status.name === 'RUNNING') throw err;
    const final = await finalResult(handle);
    return {
      workflowId: handle.workflowId,
      operation: 'upgrade',
      deployment: final.result?.deployment ?? '',
      targetRef: final.result?.to?.ref ?? '',
      phase: final.result?.phase ?? 'failed',
      steps: final.result?.steps ?? [],
      ignoredSignals: [],
      summary: final.result?.summary ?? final.error?.message ?? desc.status.name,
      outcome: final.result?.outcome,
    };
  }
}

export interface FinalResult {
  exitCode: number;
  result?: UpgradeResult;
  error?: CliError;
}

export function cliErrorOfFailure(err: unknown): CliError {
  if (err instanceof WorkflowFailedError) {
    const cause = err.cause;
    if (cause instanceof CancelledFailure) return new CliError('cancelled by an operator', EXIT.rejected);
    if (cause instanceof TerminatedFailure) return new CliError(`terminated: ${cause.message}`, EXIT.failed);
    if (cause instanceof ApplicationFailure) {
      const compensationFailed = cause.type === FAILURE_TYPES.failed && /COMPENSATION FAILED/.test(cause.message);
      const code = compensationFailed ? EXIT.needsAttention : (EXIT_OF_FAILURE[cause.type ?? ''] ?? EXIT.failed);
      let message = cause.message;
      let inner: Error | undefined = cause.cause;
      while (inner) {
        message = inner.message || message;
        inner = inner.cause as Error | undefined;
      }
      const ownSummary = [FAILURE_TYPES.failed, FAILURE_TYPES.rolledBack, FAILURE_TYPES.recoveredByRebuild, FAILURE_TYPES.abandoned].includes(cause.type as never);
      return new CliError(ownSummary ? cause.message : message, code);
    }
    return new CliError(err.cause?.message ?? err.message, EXIT.failed);
  }
  if (err instanceof CliError) return err;
  return new CliError((err as Error).message, EXIT.failed);
}

export async function finalResult(handle: WorkflowHandle): Promise<FinalResult> {
  try {
    const result = (await handle.result()) as UpgradeResult;
    // Only the rollback and rebuild workflows return these (an upgrade that needed them fails).
    const done = result.outcome === 'succeeded' || result.outcome === 'rolled-back' || (result.outcome as string) === 'rebuilt';
    const exitCode = done ? EXIT.ok : result.outcome === 'rejected' || result.outcome === 'aborted' ? EXIT.rejected : EXIT.failed;
    return { exitCode, result };
  } catch (err) {
    const error = cliErrorOfFailure(err);
    const details = err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure ? (err.cause.details?.[0] as UpgradeResult | undefined) : undefined;
    return { exitCode: error.exitCode, result: details, error };
  }
}

/** Polls the status query until `until` says stop or the run closes. */
export async function watchStatus(
  handle: WorkflowHandle,
  onStatus: (status: UpgradeStatus) => void,
  until: (status: UpgradeStatus) => boolean = () => false,
  intervalMs = 500,
): Promise<UpgradeStatus | undefined> {
  let last: UpgradeStatus | undefined;
  for (;;) {
    const desc = await describeOrFail(handle);
    try {
      last = await handle.query<UpgradeStatus>('status');
      onStatus(last);
      if (until(last)) return last;
    } catch {
      /* the first workflow task may not have run yet */
    }
    if (desc.status.name !== 'RUNNING') return last;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
