import { WorkflowExecutionAlreadyStartedError, WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { taskQueueForNode, type ResolvedDeployment } from '../config/profile.js';
import { rehearsalLine, rehearsalWorkflowId, seconds, type RehearsalOutcome, type RehearseInput } from '../domain/rehearsal.js';
import { CliError, EXIT } from './exitCodes.js';
import { cliErrorOfFailure, type Session } from './operations.js';

/**
 * Starts `dg-upgrade rehearse` under its own workflow ID (dg-upgrade-<deployment>-rehearse): it
 * takes no upgrade lock (the live install is only read), but two rehearsals of one deployment conflict.
 */
export async function startRehearsal(session: Session, d: ResolvedDeployment, input: RehearseInput) {
  const workflowId = rehearsalWorkflowId(d.name);
  try {
    return await session.client.workflow.start('rehearse', {
      taskQueue: taskQueueForNode(d.profile.node),
      workflowId,
      args: [input],
      workflowIdConflictPolicy: 'FAIL',
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
      staticSummary: `rehearse ${d.name} → ${input.targetRef}`,
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) {
      throw new CliError(`deployment "${d.name}" already has a rehearsal running (${workflowId})`, EXIT.conflict, `follow it with: dg-upgrade status --workflow-id ${workflowId} --json`);
    }
    throw err;
  }
}

/** The rehearsal's end: its outcome (also from a failure's details), the exit code, and the CLI error of a failure. */
export async function rehearsalResult(handle: { result(): Promise<unknown> }): Promise<{ exitCode: number; outcome?: RehearsalOutcome; error?: CliError }> {
  try {
    const outcome = (await handle.result()) as RehearsalOutcome;
    return { exitCode: EXIT.ok, outcome };
  } catch (err) {
    const error = cliErrorOfFailure(err);
    const outcome = err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure ? (err.cause.details?.[0] as RehearsalOutcome | undefined) : undefined;
    return { exitCode: error.exitCode, outcome, error };
  }
}

/** The outcome as the operator reads it. */
export function renderRehearsal(r: RehearsalOutcome): string {
  const lines = [`Rehearsal of ${r.targetRef}${r.sha ? ` (${r.sha.slice(0, 12)})` : ''}: ${r.passed ? 'PASSED' : 'FAILED'}`, `  ${rehearsalLine(r)}`];
  if (r.copy) lines.push(`  copy: ${r.copy.database}, ${(r.copy.liveBytes / 1048576).toFixed(1)} MiB in ${seconds(r.copy.ms)} (${r.copy.method}); event log up to log_seq ${r.copy.eventLogMaxSeq}; space: ${r.copy.space}`);
  for (const m of r.migrations ?? []) lines.push(`  migration ${m.version}${m.name ? ` ${m.name}` : ''}: ${seconds(m.ms)}${m.failed ? ' FAILED' : ''}`);
  if (r.startMs !== undefined) lines.push(`  start to first healthy probe: ${seconds(r.startMs)} (port ${r.port})`);
  for (const c of r.smoke?.checks ?? []) lines.push(`  smoke ${c.name}: ${c.passed ? 'ok' : 'FAILED'} (${c.reason})`);
  if (r.prediction) {
    lines.push(`  predicted downtime: ${seconds(r.prediction.totalMs)}`);
    for (const b of r.prediction.basis) lines.push(`    ${b}`);
  }
  if (r.keptCopy) lines.push(`  the copy is kept as database ${r.keptCopy} (rehearsal.keepCopyOnFailure); drop it with: DROP DATABASE "${r.keptCopy}"`);
  if (r.cleanupProblem) lines.push(`  CLEANUP FAILED: ${r.cleanupProblem}`);
  return lines.join('\n');
}
