import type { WorkflowHandle } from '@temporalio/client';

/** Which workflow code (worker build ID) ran a run's workflow tasks, from its history. */
export interface RunCode {
  /** The build ID of the worker that completed the run's first workflow task. */
  startedOn?: string;
  /** The build ID of the worker that completed its latest workflow task: the code the run is on now. */
  current?: string;
  /** Each build that completed workflow tasks, in order, with how many it completed. */
  builds: Array<{ buildId: string; workflowTasks: number }>;
}

type TaskCompleted = {
  binaryChecksum?: string | null;
  workerVersion?: { buildId?: string | null } | null;
  deploymentVersion?: { buildId?: string | null } | null;
};

function buildIdOf(attrs: TaskCompleted): string {
  return attrs.deploymentVersion?.buildId || attrs.workerVersion?.buildId || attrs.binaryChecksum || 'unknown';
}

export async function runCode(handle: WorkflowHandle): Promise<RunCode> {
  return runCodeOfHistory(await handle.fetchHistory());
}

export function runCodeOfHistory(history: { events?: Array<{ workflowTaskCompletedEventAttributes?: unknown }> | null }): RunCode {
  const builds: RunCode['builds'] = [];
  for (const event of history.events ?? []) {
    const attrs = event.workflowTaskCompletedEventAttributes as TaskCompleted | null | undefined;
    if (!attrs) continue;
    const buildId = buildIdOf(attrs);
    const last = builds[builds.length - 1];
    if (last?.buildId === buildId) last.workflowTasks++;
    else builds.push({ buildId, workflowTasks: 1 });
  }
  return { startedOn: builds[0]?.buildId, current: builds[builds.length - 1]?.buildId, builds };
}

export function renderRunCode(code: RunCode): string {
  if (!code.current) return 'Code: no workflow task completed yet';
  if (code.builds.length === 1) return `Code: ${code.current}`;
  return `Code: ${code.current} (started on ${code.startedOn}; builds in order: ${code.builds.map((b) => `${b.buildId} x${b.workflowTasks}`).join(', ')})`;
}
