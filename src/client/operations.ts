import os from 'node:os';
import {
  Client,
  Connection,
  WorkflowExecutionAlreadyStartedError,
  WorkflowFailedError,
  WorkflowNotFoundError,
  type WorkflowExecutionDescription,
  type WorkflowHandle,
  type WorkflowHandleWithFirstExecutionRunId,
} from '@temporalio/client';
import { ActivityFailure, ApplicationFailure, CancelledFailure, ChildWorkflowFailure, TerminatedFailure, TimeoutFailure } from '@temporalio/common';
import { getDeployment, loadProfileFile, modelProblem, ProfileError, profilePathFromEnv, taskQueueForNode, type ResolvedDeployment } from '../config/profile.js';
import { currentDirOf, otpReleaseDirOf } from '../activities/layout.js';
import { lockWorkflowId } from '../domain/lock.js';
import { FAILURE_TYPES, type UpgradeInput, type UpgradeResult, type UpgradeStatus } from '../domain/types.js';
import type { PlanResult } from '../workflows/planUpgrade.js';
import { CliError, EXIT } from './exitCodes.js';
import { activityProgress } from './progress.js';
import { temporalSettings, type TemporalSettings } from './temporalConnection.js';
import { errorChainText, queryStatus, START_WORKER_HINT } from './runQuery.js';
import { statusOfFinishedRun } from './finishedRun.js';
import { withCancelRequest } from './cancelRequest.js';

export interface Session {
  client: Client;
  settings: TemporalSettings;
  close(): Promise<void>;
}

export async function connect(env: NodeJS.ProcessEnv = process.env): Promise<Session> {
  let settings: TemporalSettings;
  try {
    settings = temporalSettings(env);
  } catch (err) {
    throw new CliError((err as Error).message, EXIT.badInput, 'fix the TEMPORAL_* environment (see dg-upgrade --help)');
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
  try {
    await connection.workflowService.describeNamespace({ namespace: settings.namespace });
  } catch (err) {
    // gRPC NOT_FOUND: the server answers, but the namespace is not there (a typo in
    // TEMPORAL_NAMESPACE, or another cluster). Any other refusal (e.g. an API key without the
    // right to describe it) is left to the calls that follow.
    if ((err as { code?: number }).code === 5) {
      await connection.close().catch(() => {});
      throw new CliError(
        `cannot use Temporal at ${settings.address}: it has no namespace "${settings.namespace}"`,
        EXIT.unavailable,
        'set TEMPORAL_NAMESPACE to an existing namespace (temporal operator namespace list), or TEMPORAL_ADDRESS to the right server',
      );
    }
  }
  const client = new Client({ connection, namespace: settings.namespace });
  return { client, settings, close: () => connection.close() };
}

export function loadDeployment(profileFlag: string | undefined, name: string): ResolvedDeployment {
  try {
    const file = profilePathFromEnv(profileFlag);
    const d = getDeployment(loadProfileFile(file), name, file);
    // The serving release's root is on this node when the CLI runs there; elsewhere the file is not found and the profile must name the accounts.
    const problem = modelProblem(d, otpReleaseDirOf(d, currentDirOf(d)));
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
  // The new version serves, but its portable backup could not be written or verified.
  [FAILURE_TYPES.backupUnverified]: EXIT.needsAttention,
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
      const handle = session.client.workflow.getHandle(workflowId);
      const running = await handle.describe().catch(() => undefined);
      const trouble = running ? await workflowTaskTrouble(handle, running).catch(() => undefined) : undefined;
      throw new CliError(
        `deployment "${d.name}" already has an operation running (${running?.type ?? 'workflow'} ${workflowId}, run ${running?.runId ?? '?'})${trouble ? `, stuck: the worker fails its workflow task: ${trouble.message.split('\n')[0]}` : ''}`,
        EXIT.conflict,
        trouble?.neverStarted ? `it never started a step; free the deployment with: dg-upgrade cancel ${d.name}` : `follow it with: dg-upgrade status ${d.name} --follow`,
      );
    }
    throw err;
  }
}

export async function runPlan(session: Session, d: ResolvedDeployment, targetRef: string, opts: Pick<UpgradeInput, 'allowDowngrade' | 'window' | 'notBefore' | 'windowLength'> = {}): Promise<PlanResult> {
  const handle = await session.client.workflow.start('planUpgrade', {
    taskQueue: taskQueueForNode(d.profile.node),
    workflowId: `dg-upgrade-plan-${d.name}-${Date.now()}`,
    args: [{ deployment: d.name, targetRef, ...opts, ...(opts.allowDowngrade ? { allowDowngrade: true } : { allowDowngrade: undefined }) }],
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

/** What `dg-upgrade status --json` prints: the run's status, the cancel request it holds and the code that ran it. */
export async function statusReport(session: Session, which: { deployment?: string; workflowId?: string }) {
  const handle = handleFor(session, which);
  const { runCodeOfHistory } = await import('./codeVersion.js');
  const read = await readStatus(handle); // describes the run first: an unknown ID is EXIT.notFound
  const history = await handle.fetchHistory();
  return { ...(await withCancelRequest(handle, read, history)), code: runCodeOfHistory(history) };
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

/**
 * The status query; for a finished run whose query cannot be served, the result or failure details.
 * A running workflow stuck on a failing workflow task is reported as such (no query can reach it);
 * one no worker answers for fails within QUERY_DEADLINE_MS with EXIT.unavailable (runQuery.ts).
 */
export async function readStatus(handle: WorkflowHandle, what?: string): Promise<UpgradeStatus> {
  const desc = await describeOrFail(handle);
  // Checked before the query, which would wait for a worker that never comes.
  const trouble = await workflowTaskTrouble(handle, desc, { now: true });
  if (trouble) throw stuckRunError(handle.workflowId, desc.searchAttributes?.DgDeployment?.[0] as string | undefined ?? deploymentOfLockId(handle.workflowId), trouble);
  try {
    return withProgress(handle, await queryStatus(handle, desc, what), desc);
  } catch (err) {
    if (desc.status.name === 'RUNNING') {
      const now = await workflowTaskTrouble(handle, desc, { now: true }).catch(() => undefined);
      if (now) throw stuckRunError(handle.workflowId, deploymentOfLockId(handle.workflowId), now);
      if (err instanceof CliError) throw err;
      throw new CliError(`cannot ${what ?? 'read the status of'} ${handle.workflowId}: ${errorChainText(err)}`, EXIT.unavailable, START_WORKER_HINT);
    }
    const final = await finalResult(handle);
    return statusOfFinishedRun(
      {
        workflowId: handle.workflowId,
        type: desc.type,
        runStatus: desc.status.name,
        deployment: (desc.searchAttributes?.DgDeployment?.[0] as string | undefined) ?? deploymentOfLockId(handle.workflowId),
        targetRef: desc.searchAttributes?.DgTargetRef?.[0] as string | undefined,
      },
      final.result,
      final.error?.message,
    );
  }
}

/**
 * The status with the running activities' last heartbeats: the run's own, or, while an upgrade
 * waits on its rollback child, the child's (where the long steps of a rollback run).
 */
async function withProgress(handle: WorkflowHandle, status: UpgradeStatus, desc: WorkflowExecutionDescription): Promise<UpgradeStatus> {
  if (desc.status.name !== 'RUNNING') return status;
  let progress = activityProgress(desc);
  const child = status.rollbackWorkflowId;
  if (progress.length === 0 && child) {
    const childDesc = await handle.client.getHandle(child).describe().catch(() => undefined);
    if (childDesc?.status.name === 'RUNNING') progress = activityProgress(childDesc);
  }
  return progress.length ? { ...status, progress } : status;
}

/** "dg-upgrade-prod" -> "prod" (the deployment whose lock the workflow ID is). */
export function deploymentOfLockId(workflowId: string): string | undefined {
  const m = /^dg-upgrade-([a-z0-9][a-z0-9-]*)$/.exec(workflowId);
  return m?.[1];
}

export interface FinalResult {
  exitCode: number;
  result?: UpgradeResult;
  error?: CliError;
}

/** One link of a failure's cause chain, as the operator should read it. */
function describeLink(e: unknown): string {
  if (e instanceof ActivityFailure) return `activity ${e.activityType ?? '?'} failed`;
  if (e instanceof ChildWorkflowFailure) return `child workflow ${e.execution?.workflowId ?? e.workflowType ?? '?'} failed`;
  if (e instanceof ApplicationFailure) return `${e.type ? `[${e.type}] ` : ''}${e.message}`;
  if (e instanceof TimeoutFailure) return `timed out (${e.timeoutType ?? '?'})`;
  return (e as Error)?.message ?? String(e);
}

/** The cause chain of a workflow failure, outermost first: workflow -> activity -> application failure. */
export function failureChain(err: unknown): unknown[] {
  const chain: unknown[] = [];
  let e: unknown = err instanceof WorkflowFailedError ? err.cause : err;
  while (e && chain.length < 10) {
    chain.push(e);
    e = (e as { cause?: unknown }).cause;
  }
  return chain;
}

/**
 * A CliError for a failed workflow: the root cause's message (what went wrong on the worker), the
 * exit code of the first failure type in the chain that has one, and the chain itself.
 */
export function cliErrorOfFailure(err: unknown): CliError {
  if (err instanceof CliError) return err;
  if (!(err instanceof WorkflowFailedError)) return new CliError((err as Error).message, EXIT.failed);
  const cause = err.cause;
  if (cause instanceof CancelledFailure) return new CliError('cancelled by an operator', EXIT.rejected, 'see what was put back with: dg-upgrade status');
  if (cause instanceof TerminatedFailure) return new CliError(`terminated: ${cause.message}`, EXIT.failed, 'check the deployment with: dg-upgrade status');
  if (cause instanceof TimeoutFailure) return new CliError(`the run timed out (${cause.timeoutType ?? 'workflow timeout'}); is a worker serving its task queue?`, EXIT.failed, 'start one with: dg-upgrade worker');
  const chain = failureChain(err);
  const root = chain.at(-1) as Error | undefined;
  const typed = chain.find((e): e is ApplicationFailure => e instanceof ApplicationFailure && !!e.type && e.type in EXIT_OF_FAILURE);
  const outerApp = cause instanceof ApplicationFailure ? cause : undefined;
  const compensationFailed = outerApp?.type === FAILURE_TYPES.failed && /COMPENSATION FAILED/.test(outerApp.message);
  const code = compensationFailed ? EXIT.needsAttention : typed ? EXIT_OF_FAILURE[typed.type!]! : EXIT.failed;
  // The upgrade's own summaries already name the step, the cause and what was put back.
  const ownSummary = outerApp && [FAILURE_TYPES.failed, FAILURE_TYPES.rolledBack, FAILURE_TYPES.recoveredByRebuild, FAILURE_TYPES.abandoned, FAILURE_TYPES.backupUnverified].includes(outerApp.type as never);
  const message = ownSummary ? outerApp.message : (root?.message || cause?.message || err.message);
  return new CliError(message, code, hintOfFailure(typed?.type ?? outerApp?.type ?? undefined, chain), chain.length > 1 ? chain.map((e) => (e === root && e instanceof ApplicationFailure ? `${e.type ?? 'ApplicationFailure'} (the message above)` : describeLink(e))) : undefined);
}

function hintOfFailure(type: string | undefined, chain: unknown[]): string | undefined {
  switch (type) {
    case FAILURE_TYPES.invalidProfile:
      return "fix the profile (or the secret it names) on the worker's node; the worker reads it again on the next run";
    case FAILURE_TYPES.unknownDeployment:
      return "check the deployment name against the worker's profile";
    case FAILURE_TYPES.badRef:
      return 'pass an existing tag or commit of the repository (git tag --list)';
    case FAILURE_TYPES.databaseUnreachable:
      return "check that the database is up and the profile's database.url is right";
    case FAILURE_TYPES.wrongWorkflowId:
      return 'start it with the ID the message names (dg-upgrade upgrade does)';
    case FAILURE_TYPES.noBackup:
      return 'list backups with: dg-upgrade backups <deployment>';
    case FAILURE_TYPES.badInput:
      return 'fix the input the message names and start again';
    default: {
      const activity = chain.find((e): e is ActivityFailure => e instanceof ActivityFailure);
      return activity ? `the worker's ${activity.activityType} step failed on the node: fix what the message names (the worker log has details) and start again` : undefined;
    }
  }
}

/** Why a running workflow makes no progress: its workflow task keeps failing, or no worker takes it. */
export interface WorkflowTaskTrouble {
  /** The failure message of the last WorkflowTaskFailed event, or why no worker took the task. */
  message: string;
  /** How many times the task was tried (0: never picked up). */
  attempt: number;
  /** No workflow task ever completed: the workflow's code never started, so no step ran. */
  neverStarted: boolean;
}

/** A workflow task failure about decoding a payload (not any failure that follows a signal). */
const DECODE_FAILURE = /decod|deserializ|payload convert|converter|Unexpected token|not valid JSON|in JSON at position/i;

/** A workflow task waiting this long for a worker is checked against the task queue's pollers. */
const UNPICKED_TASK_MS = 5000;

/**
 * A running workflow whose workflow task fails again and again (an input the worker cannot decode,
 * an unknown workflow type, a worker bug) or that no worker polls for (a wrong task queue) answers
 * no query. Its describe shows the pending task; the history's last WorkflowTaskFailed event says
 * why it fails.
 */
export async function workflowTaskTrouble(handle: WorkflowHandle, desc: WorkflowExecutionDescription, opts: { now?: boolean } = {}): Promise<WorkflowTaskTrouble | undefined> {
  if (desc.status.name !== 'RUNNING') return undefined;
  const pending = desc.raw.pendingWorkflowTask;
  if (!pending) return undefined;
  const attempt = pending.attempt ?? 1;
  let message: string | undefined;
  if (attempt >= 2) {
    const events = (await handle.fetchHistory()).events ?? [];
    const failed = events.filter((e) => e.workflowTaskFailedEventAttributes).at(-1)?.workflowTaskFailedEventAttributes;
    if (!failed) return undefined;
    message = [failed.failure?.message, failed.failure?.cause?.message].filter(Boolean).join(': ') || 'no failure message recorded';
    // A signal the worker cannot decode fails every later workflow task: name it.
    const lastCompleted = events.map((e) => !!e.workflowTaskCompletedEventAttributes).lastIndexOf(true);
    const signal = events.slice(lastCompleted + 1).find((e) => e.workflowExecutionSignaledEventAttributes)?.workflowExecutionSignaledEventAttributes;
    // Blame the signal's payload only when the failure is about decoding: a task that fails for
    // another reason after a signal (e.g. a result too large to send) must not send the operator
    // looking for an encoding problem.
    if (signal && lastCompleted >= 0) {
      message += DECODE_FAILURE.test(message)
        ? ` (after the signal "${signal.signalName}" from ${signal.identity || 'unknown'}; a signal payload the worker cannot decode wedges the run)`
        : ` (after the signal "${signal.signalName}" from ${signal.identity || 'unknown'})`;
    }
  } else {
    const scheduledMs = Number(pending.scheduledTime?.seconds ?? 0) * 1000;
    const notStarted = !pending.startedTime || Number(pending.startedTime.seconds ?? 0) === 0;
    if (!notStarted || !scheduledMs || (!opts.now && Date.now() - scheduledMs < UNPICKED_TASK_MS)) return undefined;
    const { workflowService, options } = handle.client;
    const queue = await workflowService.describeTaskQueue({ namespace: options.namespace, taskQueue: { name: desc.taskQueue }, taskQueueType: 1 /* WORKFLOW */ });
    if (queue.pollers?.length) return undefined;
    message = `no worker polls its task queue "${desc.taskQueue}" (wrong task queue, or the worker is down)`;
  }
  const events = (await handle.fetchHistory()).events ?? [];
  return { message, attempt: attempt >= 2 ? attempt : 0, neverStarted: !events.some((e) => e.workflowTaskCompletedEventAttributes) };
}

/** "the worker fails it: <why>" or "no worker picks it up: <why>". */
export function troubleText(trouble: WorkflowTaskTrouble): string {
  return trouble.attempt ? `the worker fails it (attempt ${trouble.attempt}): ${trouble.message.split('\n')[0]}` : `no worker picks it up: ${trouble.message.split('\n')[0]}`;
}

export function stuckRunError(workflowId: string, deployment: string | undefined, trouble: WorkflowTaskTrouble): CliError {
  const first = `${workflowId} is stuck on its ${trouble.neverStarted ? 'first ' : ''}workflow task: ${troubleText(trouble)}`;
  const cancel = `dg-upgrade cancel ${deployment ?? `--workflow-id ${workflowId}`}`;
  return trouble.neverStarted
    ? new CliError(first, EXIT.needsAttention, `no step has run; free the deployment with: ${cancel} (it terminates the run), then start it again as the README says (dg-upgrade upgrade, or the UI with workflow type, task queue dg-upgrade-<node> and a JSON input)`)
    : new CliError(
        first,
        EXIT.needsAttention,
        /wedges the run/.test(trouble.message)
          ? 'reset the run to its last completed workflow task without re-applying signals (Temporal UI: Reset), then send the signal again with a JSON payload; terminating could leave the deployment half-changed'
          : 'fix the worker (see its log) and the run continues where it stopped; terminating it could leave the deployment half-changed',
      );
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
    if (err instanceof WorkflowFailedError && err.cause instanceof CancelledFailure) {
      // A cancel after the backup was taken rolls the deployment back: not "nothing changed" (exit 3).
      const status = await handle.describe().then((desc) => queryStatus(handle, desc)).catch(() => undefined);
      if (status?.outcome === 'rolled-back') {
        return { exitCode: EXIT.failed, result: status, error: new CliError(status.summary, EXIT.failed, 'the cancel came after the pre-upgrade backup: the deployment was rolled back; see dg-upgrade status') };
      }
    }
    const details = err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure ? (err.cause.details?.[0] as UpgradeResult | undefined) : undefined;
    return { exitCode: error.exitCode, result: details, error };
  }
}

/** Polls the status query until `until` says stop or the run closes; a stuck run ends the wait with its failure. */
export async function watchStatus(
  handle: WorkflowHandle,
  onStatus: (status: UpgradeStatus) => void,
  until: (status: UpgradeStatus) => boolean = () => false,
  intervalMs = 500,
  onNoAnswer?: (why: CliError) => void,
): Promise<UpgradeStatus | undefined> {
  let last: UpgradeStatus | undefined;
  for (;;) {
    const desc = await describeOrFail(handle);
    const trouble = await workflowTaskTrouble(handle, desc);
    if (trouble) throw stuckRunError(handle.workflowId, deploymentOfLockId(handle.workflowId), trouble);
    try {
      last = await withProgress(handle, await queryStatus(handle, desc), desc);
      onStatus(last);
      if (until(last)) return last;
    } catch (err) {
      // The first workflow task may not have run yet; or no worker answers: the run waits, so does this.
      if (err instanceof CliError && err.exitCode === EXIT.unavailable) onNoAnswer?.(err);
    }
    if (desc.status.name !== 'RUNNING') return last;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
