import { setCurrentDetails } from '@temporalio/workflow';
import type { OperationStatus } from '../domain/types.js';
import { windowLabel } from '../domain/maintenanceWindow.js';

const ICON: Record<string, string> = { pending: '·', running: '▶', succeeded: '✓', failed: '✗', skipped: '–' };

function seconds(ms?: number): string {
  return ms === undefined ? '' : `${(ms / 1000).toFixed(1)} s`;
}

/** The run's "current details" in the Temporal UI: what it is, where it stands, what it waits for. */
export function publishUiDetails(status: OperationStatus): void {
  const from = status.plan ? (status.plan.from.tag ?? status.plan.from.sha.slice(0, 12)) : '…';
  const to = status.plan ? (status.plan.to.tag ?? status.plan.to.ref) : status.targetRef;
  const lines = [
    `**${status.operation}** of deployment **${status.deployment}**: ${from} → ${to}${status.plan ? ` (${status.plan.model} model, ${status.plan.layout} layout)` : ''}`,
    '',
    `- **phase:** ${status.phase}`,
    `- **summary:** ${status.summary}`,
  ];
  if (status.waitingFor) lines.push(`- **waiting for:** ${status.waitingFor}`);
  if (status.window) {
    const label = windowLabel({ start: Date.parse(status.window.start), end: Date.parse(status.window.end), timeZone: status.window.timeZone });
    lines.push(`- **maintenance window:** ${status.phase === 'waiting-for-window' ? `waiting for window ${label}` : label}${status.window.note ? ` (passed over: ${status.window.note})` : ''}`);
  }
  if (status.plan?.rehearsal) {
    const r = status.plan.rehearsal;
    const predicted = r.predictedDowntimeMs !== undefined ? `; predicted downtime ${seconds(r.predictedDowntimeMs)}` : '';
    lines.push(`- **rehearsal (${r.policy}):** ${r.line}${predicted}`);
  }
  if (status.tagMoved) {
    const m = status.tagMoved;
    lines.push(`- **tag moved:** ${m.tag} points to ${m.currentSha.slice(0, 12)} since the plan; the planned commit ${m.plannedSha.slice(0, 12)} is deployed`);
  }
  if (status.planHash) lines.push(`- **plan hash:** \`${status.planHash}\``);
  if (status.plan?.requiredActions.length) lines.push(`- **required actions:** ${status.plan.requiredActions.join('; ')}`);
  if (status.dataLoss) lines.push(`- **events a restore discards:** ${status.dataLoss.eventsAfterBackup}`);
  lines.push('', '| step | state | time |', '|---|---|---|');
  for (const s of status.steps) lines.push(`| ${s.name} | ${ICON[s.state] ?? ''} ${s.state} | ${seconds(s.durationMs)} |`);
  lines.push('', 'Query `status` for everything (plan, smoke results, backup).');
  setCurrentDetails(lines.join('\n'));
}
