import type { WorkflowExecutionDescription, WorkflowHandle } from '@temporalio/client';
import type { UpgradeStatus } from '../domain/types.js';
import { CliError, EXIT } from './exitCodes.js';

/**
 * How long a query may wait for a worker. A worker answers in well under a second; without one
 * the server would hold the query about 30 s. Short enough that a command reports the dead
 * worker within 10 s of its start (README: exit 5).
 */
export const QUERY_DEADLINE_MS = 8000;

export const START_WORKER_HINT =
  'start the worker (dg-upgrade worker --profile FILE, or systemctl start dg-upgrade-worker) and run the command again; the run waits and loses nothing';

export interface Poller {
  identity: string;
  lastAccessTime?: Date;
}

/** The workers polling a task queue for workflow tasks (Temporal keeps a poller listed for a few minutes after its last poll). */
export async function workflowPollers(handle: WorkflowHandle, taskQueue: string): Promise<Poller[]> {
  const { workflowService, options } = handle.client;
  const queue = await workflowService.describeTaskQueue({ namespace: options.namespace, taskQueue: { name: taskQueue }, taskQueueType: 1 /* WORKFLOW */ });
  return (queue.pollers ?? []).map((p) => ({
    identity: p.identity ?? 'unknown',
    lastAccessTime: p.lastAccessTime?.seconds ? new Date(Number(p.lastAccessTime.seconds) * 1000) : undefined,
  }));
}

type ErrorLink = { code?: unknown; message?: unknown; cause?: unknown };

/** An error and up to four of its causes, outermost first. */
function causeChain(err: unknown): ErrorLink[] {
  const chain: ErrorLink[] = [];
  for (let e = err as ErrorLink | undefined, i = 0; e && i < 5; e = e.cause as ErrorLink | undefined, i++) chain.push(e);
  return chain;
}

const messageMatches = (e: ErrorLink, re: RegExp) => typeof e.message === 'string' && re.test(e.message);

/** A query that got no answer: the deadline passed (ours or the server's). Not a query a worker refused. */
export function isNoAnswer(err: unknown): boolean {
  return causeChain(err).some((e) => e.code === 4 /* DEADLINE_EXCEEDED */ || messageMatches(e, /deadline exceeded|context deadline|timed? ?out/i));
}

/** A call ended with gRPC CANCELLED (code 1): by its deadline when that has passed. */
export function isCancelledCall(err: unknown): boolean {
  return causeChain(err).some((e) => e.code === 1 || messageMatches(e, /\b1 CANCELLED\b|Call cancelled/));
}

/** The server refused the query at once: "no poller seen for task queue recently, worker may be down" (FAILED_PRECONDITION). */
export function isNoPoller(err: unknown): boolean {
  return causeChain(err).some((e) => messageMatches(e, /no poller seen for task queue/i));
}

/** An error's message with its causes' gRPC codes and messages, on one line ("Failed to query Workflow <- 4 DEADLINE_EXCEEDED: ..."). */
export function errorChainText(err: unknown): string {
  return causeChain(err)
    .map((e) => {
      const message = typeof e.message === 'string' ? e.message.split('\n')[0]! : String(e);
      return typeof e.code === 'number' && !message.startsWith(String(e.code)) ? `[code ${e.code}] ${message}` : message;
    })
    .join(' <- ');
}

/** Why nobody answered, from the queue's pollers: none, or when and who polled last. */
export function noWorkerReason(taskQueue: string, pollers: Poller[] | undefined, now = Date.now()): string {
  if (!pollers) return `no worker answered for task queue "${taskQueue}"`;
  if (pollers.length === 0) return `no worker polls task queue "${taskQueue}"`;
  const last = pollers.reduce<Poller | undefined>((a, p) => (!a || (p.lastAccessTime?.getTime() ?? 0) > (a.lastAccessTime?.getTime() ?? 0) ? p : a), undefined)!;
  const ago = last.lastAccessTime ? `${Math.max(0, Math.round((now - last.lastAccessTime.getTime()) / 1000))} s ago` : 'at an unknown time';
  return `the worker that last polled task queue "${taskQueue}" (${last.identity}, ${ago}) does not answer: it is down, stuck or overloaded`;
}

export function noWorkerError(workflowId: string, what: string, reason: string): CliError {
  return new CliError(`cannot ${what} ${workflowId}: ${reason}`, EXIT.unavailable, START_WORKER_HINT);
}

/**
 * The status query of a run, bounded: a run whose task queue no worker polls fails at once, one
 * whose worker does not answer within QUERY_DEADLINE_MS fails then, both with EXIT.unavailable
 * and what to do. Every CLI command that reads a run goes through here.
 */
export async function queryStatus(handle: WorkflowHandle, desc: WorkflowExecutionDescription, what = 'read the status of'): Promise<UpgradeStatus> {
  const pollers = await workflowPollers(handle, desc.taskQueue).catch(() => undefined);
  if (pollers && pollers.length === 0) throw noWorkerError(handle.workflowId, what, noWorkerReason(desc.taskQueue, pollers));
  const deadline = Date.now() + QUERY_DEADLINE_MS;
  try {
    return await handle.client.connection.withDeadline(deadline, () => handle.query<UpgradeStatus>('status'));
  } catch (err) {
    if (isNoPoller(err)) throw noWorkerError(handle.workflowId, what, `no worker polls task queue "${desc.taskQueue}" (Temporal has seen no poller of it lately: the worker is down)`);
    // Our deadline sometimes ends the call as "1 CANCELLED: Call cancelled" rather than DEADLINE_EXCEEDED.
    if (!isNoAnswer(err) && !(isCancelledCall(err) && Date.now() >= deadline - 50)) throw err;
    const now = await workflowPollers(handle, desc.taskQueue).catch(() => undefined);
    throw noWorkerError(handle.workflowId, what, `${noWorkerReason(desc.taskQueue, now)}; no answer within ${QUERY_DEADLINE_MS / 1000} s`);
  }
}
