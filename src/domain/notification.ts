import type { OperationStatus } from './types.js';

/** The events a webhook may ask for, in the profile's `notifications.webhooks[].events`. */
export const NOTIFICATION_EVENTS = [
  'awaiting-approval',
  'window-waiting',
  'window-opened',
  'succeeded',
  'failed',
  'rolled-back',
  'needs-operator',
  'backup-unverified',
] as const;
export type NotificationEvent = (typeof NOTIFICATION_EVENTS)[number];

/** A webhook as the workflow knows it: its name and events, never its URL (a secret). */
export interface WebhookSubscription {
  name: string;
  events: NotificationEvent[];
}

/** A delivery that failed after its retries; `status` lists them. */
export interface NotificationFailure {
  webhook: string;
  event: NotificationEvent;
  deliveryId: string;
  error: string;
}

/** Status as the workflows keep it, with the failed deliveries. */
export type StatusWithNotifications = OperationStatus & { notificationFailures?: NotificationFailure[] };

/**
 * What the workflow knows about one notification: taken from its status at the moment of the
 * event. Everything here lands in the workflow history and the request body, so it holds no
 * secret (the status never does).
 */
export interface NotificationFacts {
  /** `<workflowId>/<runId>/<sequence>-<event>`: the same on every retry of the delivery, for receivers to drop duplicates. */
  deliveryId: string;
  event: NotificationEvent;
  deployment: string;
  operation: OperationStatus['operation'];
  workflowId: string;
  runId: string;
  from?: string;
  to?: string;
  phase: string;
  /** The status summary, without the "<deployment>: " prefix. */
  summary: string;
  waitingFor?: string;
  planHash?: string;
  /** needs-operator at the data-loss gate: the events a restore would discard (what `accept-data-loss --events` must name). */
  eventsAfterBackup?: number;
  /** window-waiting / window-opened: the window, e.g. "2025-03-30 22:00..23:00 (Europe/Berlin)". */
  window?: string;
  /** When the event happened, in workflow time (ISO 8601). */
  at: string;
}

/** Optional facts a caller adds to an event (the windows code: which window). */
export interface NotificationExtra {
  window?: string;
  summary?: string;
}

export interface NotificationBody extends NotificationFacts {
  source: 'dg-upgrade';
  /** The run in the Temporal UI, when the worker knows the UI's address (TEMPORAL_UI_URL). */
  link?: string;
  /** One or two lines for a chat tool. */
  text: string;
}

const SHORT_SUMMARY = 300;

function refName(ref: { tag?: string; sha: string; ref?: string } | undefined): string | undefined {
  if (!ref) return undefined;
  return ref.tag ?? ref.ref ?? ref.sha.slice(0, 12);
}

/** The facts of one event from the run's status; pure, called in workflow code. */
export function notificationFacts(
  status: OperationStatus,
  event: NotificationEvent,
  run: { workflowId: string; runId: string; sequence: number; at: Date },
  extra: NotificationExtra = {},
): NotificationFacts {
  const prefix = `${status.deployment}: `;
  const summary = extra.summary ?? (status.summary.startsWith(prefix) ? status.summary.slice(prefix.length) : status.summary);
  const from = refName(status.plan?.from);
  const to = status.plan ? refName(status.plan.to) : status.targetRef;
  return {
    deliveryId: `${run.workflowId}/${run.runId}/${run.sequence}-${event}`,
    event,
    deployment: status.deployment,
    operation: status.operation,
    workflowId: run.workflowId,
    runId: run.runId,
    ...(from ? { from } : {}),
    ...(to ? { to } : {}),
    phase: status.phase,
    summary,
    ...(status.waitingFor ? { waitingFor: status.waitingFor } : {}),
    ...(status.planHash && (event === 'awaiting-approval' || event === 'window-waiting') ? { planHash: status.planHash } : {}),
    ...(event === 'needs-operator' && status.phase === 'awaiting-data-loss-approval' && status.dataLoss ? { eventsAfterBackup: status.dataLoss.eventsAfterBackup } : {}),
    ...(extra.window ? { window: extra.window } : {}),
    at: run.at.toISOString(),
  };
}

function clip(text: string, max: number): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/** "prod upgrade v0.1.0 -> v0.2.0", "prod rollback to v0.1.0". */
function what(f: NotificationFacts): string {
  if (f.operation === 'rollback') return `${f.deployment} rollback${f.to ? ` to ${f.to}` : ''}`;
  if (f.operation === 'upgrade') return `${f.deployment} upgrade ${f.from ? `${f.from} -> ` : 'to '}${f.to ?? '?'}`;
  return `${f.deployment} ${f.operation}`;
}

/** The first line of the chat message: what happened and, where someone must act, the command. */
export function headline(f: NotificationFacts): string {
  const w = what(f);
  switch (f.event) {
    case 'awaiting-approval':
      return f.planHash
        ? `dg-upgrade: ${w} is waiting for approval of plan ${f.planHash}; approve: dg-upgrade approve ${f.deployment} --plan-hash ${f.planHash}`
        : `dg-upgrade: ${w} is waiting for approval`;
    case 'window-waiting':
      return `dg-upgrade: ${w} is waiting for its maintenance window${f.window ? ` ${f.window}` : ''}; nothing is stopped before it opens`;
    case 'window-opened':
      return `dg-upgrade: ${w}: maintenance window${f.window ? ` ${f.window}` : ''} opened, the upgrade goes on`;
    case 'succeeded':
      return `dg-upgrade: ${w} succeeded`;
    case 'failed':
      return `dg-upgrade: ${w} FAILED (phase ${f.phase})`;
    case 'rolled-back':
      return f.operation === 'upgrade' ? `dg-upgrade: ${w} failed and was rolled back` : `dg-upgrade: ${w} done`;
    case 'needs-operator':
      if (f.eventsAfterBackup !== undefined) {
        return `dg-upgrade: ${w} needs an operator: a restore would discard ${f.eventsAfterBackup} events written after the backup; accept: dg-upgrade accept-data-loss ${f.deployment} --events ${f.eventsAfterBackup}, or: dg-upgrade abandon ${f.deployment}`;
      }
      if (f.phase === 'rollback-blocked') return `dg-upgrade: ${w} is blocked and needs an operator: dg-upgrade retry ${f.deployment}, or: dg-upgrade abandon ${f.deployment}`;
      return `dg-upgrade: ${w} needs an operator${f.waitingFor ? `: ${clip(f.waitingFor, 200)}` : ''}`;
    case 'backup-unverified':
      return `dg-upgrade: ${w}: THE PRE-UPGRADE BACKUP IS NOT VERIFIED`;
  }
}

/**
 * The JSON body of a webhook POST: the facts, the UI link and a chat-readable `text` (headline,
 * then the summary and the link). Pure; the activity calls it with the worker's UI address.
 */
export function notificationBody(f: NotificationFacts, ui?: { url: string; namespace: string }): NotificationBody {
  const link = ui
    ? `${ui.url.replace(/\/$/, '')}/namespaces/${encodeURIComponent(ui.namespace)}/workflows/${encodeURIComponent(f.workflowId)}/${encodeURIComponent(f.runId)}/history`
    : undefined;
  const second = [clip(f.summary, SHORT_SUMMARY), link].filter(Boolean).join(' ');
  return {
    source: 'dg-upgrade',
    ...f,
    ...(link ? { link } : {}),
    text: `${headline(f)}\n${second}`,
  };
}

/** The terminal events of a run that ended with this status (none for a rejection or a cancel that changed nothing). */
export function terminalEvents(status: StatusWithNotifications, opts: { standalone: boolean; threw?: boolean }): NotificationEvent[] {
  const unverified = status.backup?.problem !== undefined;
  switch (status.outcome) {
    case undefined:
      // A rollback that ends abandoned keeps no outcome of its own.
      return opts.standalone && opts.threw ? ['failed'] : [];
    case 'succeeded':
      return ['succeeded'];
    case 'rolled-back':
      if (!opts.standalone) return [];
      return unverified ? ['rolled-back', 'backup-unverified'] : ['rolled-back'];
    case 'failed':
      if (!opts.standalone) return [];
      // The new version serves and only its backup's dump failed: that is the event.
      if (unverified && status.error?.step === 'portableBackup') return ['backup-unverified'];
      return unverified ? ['failed', 'backup-unverified'] : ['failed'];
    case 'abandoned':
      return opts.standalone ? ['failed'] : [];
    default:
      return [];
  }
}
