import { defaultPayloadConverter } from '@temporalio/common';
import type { WorkflowExecutionDescription } from '@temporalio/client';

/** What a running activity last reported in its heartbeat: long steps say how far they are. */
export interface ActivityProgress {
  activity: string;
  attempt: number;
  detail?: string;
  /** Seconds since its last heartbeat, when known. */
  heartbeatAgeSeconds?: number;
}

export function progressText(details: unknown): string | undefined {
  if (details === undefined || details === null) return undefined;
  if (typeof details === 'string') return details;
  if (typeof details === 'object') {
    const d = details as { step?: string; rows?: number; ofRows?: number; lastLogSeq?: number; bytes?: number; ofBytes?: number };
    if (d.step && typeof d.bytes === 'number') {
      const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;
      return `${d.step}: ${mib(d.bytes)}${d.ofBytes ? ` of ~${mib(d.ofBytes)} (~${Math.min(100, Math.floor((100 * d.bytes) / d.ofBytes))}%)` : ''}`;
    }
    if (d.step && typeof d.rows === 'number') {
      const pct = d.ofRows ? ` (~${Math.min(100, Math.floor((100 * d.rows) / d.ofRows))}%)` : '';
      return `${d.step}: ${d.rows.toLocaleString('en-US')}${d.ofRows ? ` of ~${d.ofRows.toLocaleString('en-US')}` : ''} rows${pct}${d.lastLogSeq ? `, at log_seq ${d.lastLogSeq}` : ''}`;
    }
    return JSON.stringify(details).slice(0, 200);
  }
  return String(details);
}

/** The pending activities of a run, each with its last heartbeat's details decoded. */
export function activityProgress(desc: WorkflowExecutionDescription): ActivityProgress[] {
  return (desc.raw.pendingActivities ?? []).map((a) => {
    let detail: string | undefined;
    try {
      const payload = a.heartbeatDetails?.payloads?.at(-1);
      if (payload) detail = progressText(defaultPayloadConverter.fromPayload(payload as never));
    } catch {
      detail = undefined;
    }
    const last = a.lastHeartbeatTime?.seconds ? Number(a.lastHeartbeatTime.seconds) : undefined;
    return {
      activity: a.activityType?.name ?? 'activity',
      attempt: a.attempt ?? 1,
      ...(detail ? { detail } : {}),
      ...(last ? { heartbeatAgeSeconds: Math.max(0, Math.round(Date.now() / 1000 - last)) } : {}),
    };
  });
}

export function renderProgress(progress: ActivityProgress[] | undefined): string[] {
  return (progress ?? []).map((p) => `  in progress: ${p.activity}${p.attempt > 1 ? ` (attempt ${p.attempt})` : ''}${p.detail ? `: ${p.detail}` : ''}`);
}
