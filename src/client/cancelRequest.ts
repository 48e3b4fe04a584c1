import type { StepStatus, UpgradeStatus } from '../domain/types.js';

/** An operator's cancel request as the run's history records it. */
export interface CancelRequestEvent {
  at: Date;
  identity?: string;
  cause?: string;
}

/** What `status` says about a cancel request: when, by whom, at which step, and what the run does about it. */
export interface CancelRequestInfo {
  at: string;
  by?: string;
  /** The step running when it arrived, or "after <step>" when it came between steps. */
  at_step: string;
  /** What the run does (running) or did (finished) with it. */
  effect: string;
}

type HistoryEvent = {
  eventTime?: { seconds?: unknown; nanos?: number | null } | null;
  workflowExecutionCancelRequestedEventAttributes?: { identity?: string | null; cause?: string | null } | null;
};

/** The first cancel request in a run's history, if any. */
export function cancelRequestOfHistory(history: { events?: HistoryEvent[] | null }): CancelRequestEvent | undefined {
  for (const e of history.events ?? []) {
    const attrs = e.workflowExecutionCancelRequestedEventAttributes;
    if (!attrs) continue;
    const ms = Number(e.eventTime?.seconds ?? 0) * 1000 + Math.floor((e.eventTime?.nanos ?? 0) / 1e6);
    return { at: new Date(ms), identity: attrs.identity || undefined, cause: attrs.cause || undefined };
  }
  return undefined;
}

const began = (s: StepStatus, at: number) => s.startedAt !== undefined && Date.parse(s.startedAt) <= at;
const endedBefore = (s: StepStatus, at: number) => s.endedAt !== undefined && Date.parse(s.endedAt) < at;

/** The step that was running when the request arrived, else "after <the last step that ended before it>". */
export function stepAt(steps: StepStatus[], at: Date): string {
  const t = at.getTime();
  const running = steps.find((s) => began(s, t) && !endedBefore(s, t) && s.state !== 'skipped');
  if (running) return running.name;
  const before = steps.filter((s) => s.endedAt !== undefined && Date.parse(s.endedAt) <= t).at(-1);
  return before ? `after ${before.name}` : 'before the first step';
}

const stepBegan = (steps: StepStatus[], name: string, at: number) => steps.some((s) => s.name === name && began(s, at));
const stepDone = (steps: StepStatus[], name: string, at: number) => steps.some((s) => s.name === name && s.state !== 'cancelled' && s.endedAt !== undefined && Date.parse(s.endedAt) <= at);

/**
 * What the workflow does with a cancel request (src/workflows: the upgrade's catch block, the
 * rollback's non-cancellable scope), given where it was when the request arrived. A running
 * activity hears of the cancel at its next heartbeat: commands (build, migrate) stop, the other
 * steps (smoke checks, copies) finish first; then the run stops before its next command.
 */
export function cancelEffect(status: UpgradeStatus, at: Date): string {
  const t = at.getTime();
  if (status.operation === 'rollback') {
    return 'a rollback is itself the compensation and cannot be cancelled: it goes on to the end (at a blocked step: dg-upgrade abandon)';
  }
  if (status.operation === 'rebuildProjections') {
    return 'the projection rebuild stops at its running step, with no compensation: check the deployment when it ends';
  }
  const backupId = status.backup?.id ? ` ${status.backup.id}` : '';
  if (stepBegan(status.steps, 'startNew', t)) {
    return `the new version already serves (cutover done); cancelling now means a rollback: the running step stops or finishes, then the pre-upgrade backup${backupId} is restored and the previous version started (events written since the backup are discarded only with accept-data-loss)`;
  }
  if (stepDone(status.steps, 'backup', t) || stepBegan(status.steps, 'migrate', t)) {
    return `the old version is stopped and the database may be migrated: the run rolls back, restoring the pre-upgrade backup${backupId} and starting the previous version`;
  }
  if (stepBegan(status.steps, 'stopOld', t)) {
    return 'the old version is stopped or stopping and nothing is migrated: the run starts the previous version again, no restore';
  }
  return 'nothing has changed yet: the run stops before its next step and the old version keeps serving';
}

/** The cancel request of a run, described for `status` (undefined when none was made). */
export function describeCancelRequest(status: UpgradeStatus, request: CancelRequestEvent | undefined, runStatus: string): CancelRequestInfo | undefined {
  if (!request) return undefined;
  const when = stepAt(status.steps, request.at);
  let effect = cancelEffect(status, request.at);
  if (runStatus !== 'RUNNING' || status.outcome) effect = `${effect}; the run ended ${status.outcome ?? status.phase}`;
  return { at: request.at.toISOString(), by: request.identity, at_step: when, effect };
}

export function renderCancelRequest(info: CancelRequestInfo): string {
  return `  cancel requested ${info.at_step.startsWith('after') || info.at_step.startsWith('before') ? info.at_step : `at ${info.at_step}`} (${info.at}${info.by ? ` by ${info.by}` : ''}): ${info.effect}`;
}

/** The status with the run's cancel request, if any, read from its history. */
export async function withCancelRequest<S extends UpgradeStatus>(
  handle: { fetchHistory(): Promise<{ events?: HistoryEvent[] | null }>; describe(): Promise<{ status: { name: string } }> },
  status: S,
  history?: { events?: HistoryEvent[] | null },
): Promise<S & { cancelRequest?: CancelRequestInfo }> {
  const request = cancelRequestOfHistory(history ?? (await handle.fetchHistory()));
  if (!request) return status;
  const info = describeCancelRequest(status, request, (await handle.describe()).status.name);
  return { ...status, cancelRequest: info };
}
