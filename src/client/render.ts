import type { SmokeReport, StepStatus, UpgradePlan, UpgradeStatus } from '../domain/types.js';
import { renderProgress } from './progress.js';
import { isUnreleased } from '../domain/releaseNotesParser.js';
import { describePlannedWindow, formatSpan, windowLabel } from '../domain/maintenanceWindow.js';
import { terminalSafe } from './terminalText.js';
import { renderCancelRequest, type CancelRequestInfo } from './cancelRequest.js';
import type { NotificationFailure } from '../domain/notification.js';
import type { PlanRehearsal } from '../domain/rehearsal.js';

/** One field from a signal or another untrusted source, escaped so it stays inside its line. */
const field = (v: unknown) => terminalSafe(v);

const ICON: Record<StepStatus['state'], string> = { pending: '·', running: '…', succeeded: '✓', failed: '✗', skipped: '-', cancelled: '⊘' };

export function formatDuration(ms: number | undefined): string {
  if (ms === undefined) return '';
  return ms < 1000 ? `${ms}ms` : ms < 120_000 ? `${(ms / 1000).toFixed(1)}s` : `${Math.floor(ms / 60_000)}m${Math.round((ms % 60_000) / 1000)}s`;
}

export function formatBytes(n: number): string {
  return n < 1024 ? `${n} B` : n < 1024 ** 2 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 ** 2).toFixed(1)} MiB`;
}

export function renderPlan(plan: UpgradePlan, hash: string): string {
  const lines = [
    `Plan ${hash} for deployment ${plan.deployment} (${plan.model} model, ${plan.layout} layout)`,
    `  from      ${plan.from.tag ?? '-'} ${plan.from.sha.slice(0, 12)}  (${plan.from.dir})`,
    `  to        ${plan.to.tag ?? plan.to.ref} ${plan.to.sha.slice(0, 12)}`,
    `  database  ${plan.database.name}  ${plan.database.redactedUrl}`,
    `  backup    about ${formatBytes(plan.estimatedBackupBytes)}`,
    `  migrations pending: ${plan.pendingMigrations.length ? plan.pendingMigrations.map((m) => `${m.version}_${m.name}`).join(', ') : 'none'}`,
  ];
  if (plan.downgrade) {
    const unknown = plan.downgrade.unknownMigrations.map((m) => `${m.version}_${m.name}`).join(', ');
    lines.push(`  DOWNGRADE (asked for with --allow-downgrade): ${plan.downgrade.targetIsAncestor ? 'the target is older than what runs' : 'the target lacks migrations the database holds'}; migrations the target does not know, left in the schema: ${unknown || 'none'}`);
  }
  for (const note of plan.releaseNotes) {
    const unreleased = isUnreleased(note) ? ' (from the target\'s "## Migration Notes: Unreleased" block: notes gathered since the last versioned block, not yet filed under a version)' : '';
    lines.push(`  release notes ${note.version}${unreleased}:`);
    for (const [label, items] of [['Summary', note.summary], ['Impact', note.impact], ['Required Actions', note.requiredActions], ['Rollback', note.rollback]] as const) {
      if (items.length) lines.push(`    ${label}:`, ...items.map((i) => `      - ${i}`));
    }
  }
  if (plan.requiredActions.length) lines.push('  REQUIRED ACTIONS (approving acknowledges them):', ...plan.requiredActions.map((a) => `    ! ${a}`));
  if (plan.warnings?.length) lines.push('  WARNINGS:', ...plan.warnings.map((w) => `    ! ${w}`));
  if (plan.checks?.length) lines.push('  checked:', ...plan.checks.map((c) => `    ✓ ${c}`));
  if (plan.rehearsal) lines.push(...renderRehearsal(plan.rehearsal));
  if (plan.window) {
    lines.push(`  window    ${plan.window.kind === 'one-off' ? 'one-off ' : ''}${describePlannedWindow(plan.window)}; predicted downtime ${formatSpan(plan.window.predictedDowntimeMs)}${plan.window.predictedDowntimeFrom === 'rehearsal' ? ' (measured by the rehearsal)' : ''}; too little left: ${plan.window.kind === 'one-off' ? 'end' : plan.window.whenTooShort}`);
  }
  lines.push('  steps:', ...plan.steps.map((s, i) => `    ${i + 1}. ${s}`));
  return lines.join('\n');
}

/** The rehearsal the plan carries: its outcome line, each migration's time, start, smoke checks, the predicted downtime. */
export function renderRehearsal(r: PlanRehearsal): string[] {
  const lines = [`  rehearsal (${r.policy}): ${r.line}`];
  if (r.migrations?.length) lines.push(`    migrations on the copy: ${r.migrations.map((m) => `${m.version} ${formatDuration(m.ms)}${m.failed ? ' FAILED' : ''}`).join(', ')}`);
  if (r.copyMs !== undefined || r.startMs !== undefined) lines.push(`    copy ${r.copyMs === undefined ? '-' : formatDuration(r.copyMs)}, start ${r.startMs === undefined ? '-' : formatDuration(r.startMs)}`);
  if (r.smoke?.length) lines.push(`    smoke on the copy: ${r.smoke.map((c) => `${c.passed ? '✓' : '✗'} ${c.name}`).join('  ')}`);
  if (r.predictedDowntimeMs !== undefined) {
    const parts = r.predictedParts ? ` (${Object.entries(r.predictedParts).map(([k, v]) => `${k.replace(/Ms$/, "")} ${formatDuration(Number(v))}`).join(' + ')})` : '';
    lines.push(`    predicted downtime ${formatDuration(r.predictedDowntimeMs)}${parts}`);
  }
  if (r.keptCopy) lines.push(`    copy kept for a look: ${r.keptCopy}`);
  return lines;
}

export function renderSmoke(report: SmokeReport, title: string): string {
  return [
    `${title}: ${report.passed ? 'PASSED' : 'FAILED'}${report.version ? ` (version ${report.version})` : ''}`,
    ...report.checks.map((c) => `  ${c.passed ? '✓' : '✗'} ${c.name.padEnd(17)} ${formatDuration(c.latencyMs).padStart(7)}  ${c.reason}`),
  ].join('\n');
}

export function renderSteps(steps: StepStatus[]): string {
  return steps
    .map((s) => `  ${ICON[s.state]} ${s.name.padEnd(11)} ${s.state.padEnd(9)} ${formatDuration(s.durationMs).padStart(7)}${s.detail ? `  ${s.detail}` : ''}`)
    .join('\n');
}

/**
 * Set by the upgrade when the tag its plan resolved points elsewhere by the time it builds: the
 * planned commit is what gets deployed, and the operator should know the tag moved.
 */
export interface TagMoved {
  tag: string;
  plannedSha: string;
  currentSha: string;
}

/** Which commit the run deploys (the plan's, whatever the tag does later), and whether the tag moved. */
export function renderTarget(status: UpgradeStatus & { tagMoved?: TagMoved }): string[] {
  if (status.operation !== 'upgrade' || !status.plan) return [];
  const to = status.plan.to;
  const verb = status.outcome === 'succeeded' ? 'deployed' : status.outcome ? 'planned' : 'deploys';
  const lines = [`  commit: ${verb} ${to.sha}${to.tag ? ` (${to.tag} when planned)` : ''}`];
  const moved = status.tagMoved;
  if (moved) {
    lines.push(`  ! tag ${moved.tag} moved after the plan: it now points at ${moved.currentSha.slice(0, 12)}; the planned commit ${moved.plannedSha.slice(0, 12)} is the one ${verb === 'deployed' ? 'deployed' : 'deployed on approval'} (upgrade again to get ${moved.currentSha.slice(0, 12)})`);
  }
  return lines;
}

export function renderStatus(status: UpgradeStatus): string {
  const lines = [`${status.workflowId}  ${status.operation}  phase: ${status.phase}`, `  ${field(status.summary)}`];
  lines.push(...renderTarget(status));
  if (status.waitingFor) lines.push(`  waiting for: ${field(status.waitingFor)}`);
  lines.push(...renderWindow(status));
  lines.push(renderSteps(status.steps));
  lines.push(...renderProgress(status.progress));
  if (status.decision) lines.push(`  decision: ${status.decision.kind}${status.decision.by ? ` by ${field(status.decision.by)}` : ''}${status.decision.comment ? ` (${field(status.decision.comment)})` : ''}`);
  if (status.backup) lines.push(`  backup: ${status.backup.id} (${formatBytes(status.backup.sizeBytes)}, sha256 ${status.backup.sha256.slice(0, 16)}…)`);
  if (status.dataLoss) {
    lines.push(`  data loss: ${status.dataLoss.eventsAfterBackup} events after the backup (log_seq > ${status.dataLoss.backupMaxLogSeq})${status.dataLoss.acceptedBy ? `, accepted by ${field(status.dataLoss.acceptedBy)}` : ''}`);
  }
  if (status.classification) lines.push(`  failure class: ${status.classification.kind} (${status.classification.reason}); recovery: ${status.classification.path}`);
  if (status.rebuild) lines.push(`  projection rebuild: ${status.rebuild.workflowId}: ${status.rebuild.summary}`);
  if (status.rollback && status.operation === 'upgrade') lines.push(`  rollback: ${status.rollback.workflowId} ${status.rollback.outcome}: ${field(status.rollback.summary)}`);
  if (status.rollback?.asideDatabase) lines.push(`  upgraded database kept as: ${status.rollback.asideDatabase}`);
  if (status.smoke) lines.push(renderSmoke(status.smoke, '  smoke checks'));
  for (const ignored of status.ignoredSignals) lines.push(`  ignored signal: ${field(ignored)}`);
  const cancel = (status as UpgradeStatus & { cancelRequest?: CancelRequestInfo }).cancelRequest;
  if (cancel) lines.push(field(renderCancelRequest(cancel)));
  lines.push(...renderNotificationFailures(status));
  return lines.join('\n');
}

/** Webhook deliveries that failed after their retries (the run went on without them). */
export function renderNotificationFailures(status: UpgradeStatus & { notificationFailures?: NotificationFailure[] }): string[] {
  return (status.notificationFailures ?? []).map((f) => `  ! notification not delivered: ${field(f.event)} to webhook ${field(f.webhook)}: ${field(f.error)}`);
}

/** The run's maintenance window: the one it waits for, or stopped in. */
export function renderWindow(status: UpgradeStatus): string[] {
  const w = status.window;
  if (!w) return [];
  const label = windowLabel({ start: Date.parse(w.start), end: Date.parse(w.end), timeZone: w.timeZone });
  return [`  window: ${status.phase === 'waiting-for-window' ? `waiting for window ${label}` : label}${w.note ? ` (passed over: ${field(w.note)})` : ''}`];
}

/** One line per step state change, with the time since the follow began. */
export class StepChangePrinter {
  private seen = new Map<string, string>();
  private phase?: string;
  constructor(private readonly out: (line: string) => void, private readonly started = Date.now()) {}

  update(status: UpgradeStatus): void {
    const t = `[${formatDuration(Date.now() - this.started).padStart(7)}]`;
    if (status.phase !== this.phase) {
      this.phase = status.phase;
      this.out(`${t} phase ${status.phase}: ${field(status.summary)}`);
    }
    for (const step of status.steps) {
      const key = `${step.state}:${step.detail ?? ''}`;
      if (this.seen.get(step.name) === key || (step.state === 'pending' && !this.seen.has(step.name))) continue;
      this.seen.set(step.name, key);
      this.out(`${t}   ${ICON[step.state]} ${step.name} ${step.state}${step.durationMs !== undefined && step.state !== 'running' ? ` in ${formatDuration(step.durationMs)}` : ''}${step.detail ? `: ${step.detail}` : ''}`);
    }
    // A long step's progress, at most every 5 s: enough to see it move without flooding the log.
    const progress = renderProgress(status.progress).join('; ');
    if (progress && progress !== this.progress && Date.now() - this.progressAt >= 5000) {
      this.progress = progress;
      this.progressAt = Date.now();
      this.out(`${t} ${progress.trim()}`);
    }
  }
  private progress = '';
  private progressAt = 0;
}
