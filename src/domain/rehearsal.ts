// Pure parts of the rehearsal (issue 21): names, the migration log's timings, the predicted downtime.
import type { SmokeReport, StepStatus } from './types.js';

export const REHEARSAL_STEPS = ['preflight', 'build', 'copy', 'migrateCopy', 'startCopy', 'smokeCopy', 'cleanup'] as const;
export type RehearsalStepName = (typeof REHEARSAL_STEPS)[number];

export type RehearsalPolicy = 'required' | 'advisory' | 'off';

/** The rehearse workflow's ID: its own, so it never takes the upgrade lock, but two rehearsals of one deployment conflict. */
export function rehearsalWorkflowId(deployment: string): string {
  return `dg-upgrade-${deployment}-rehearse`;
}

export interface RehearseInput {
  deployment: string;
  targetRef: string;
  /** Set by an upgrade that runs the rehearsal as its child: the commit its plan names. */
  sha?: string;
  requestedBy?: string;
}

export interface MigrationTiming {
  version: string;
  name?: string;
  ms: number;
  /** The one that failed (its transaction was rolled back). */
  failed?: boolean;
}

export interface CopyFigures {
  database: string;
  /** pg_database_size of the live database when the copy began. */
  liveBytes: number;
  /** Size of the copy once restored. */
  copyBytes: number;
  ms: number;
  /** Live bytes per second the pg_dump | pg_restore pipe moved. */
  bytesPerSecond: number;
  /** The event log's head in the copy's snapshot. */
  eventLogMaxSeq: number;
  method: string;
  /** How the free space on the database server was checked. */
  space: string;
  reused?: boolean;
}

export interface DowntimePrediction {
  totalMs: number;
  parts: { stopMs: number; backupMs: number; migrateMs: number; startMs: number };
  /** Where each part comes from, in words. */
  basis: string[];
}

export interface RehearsalOutcome {
  passed: boolean;
  targetRef: string;
  sha?: string;
  /** The step that failed and its own error (the migration's, the smoke check's). */
  failure?: { step: RehearsalStepName; message: string };
  copy?: CopyFigures;
  migrations?: MigrationTiming[];
  migrateMs?: number;
  /** From the spawn to the first 200 of /api/healthz, proven to be the rehearsal's runtime. */
  startMs?: number;
  port?: number;
  smoke?: SmokeReport;
  stopMs?: number;
  /** A raw CREATE DATABASE ... STRATEGY FILE_COPY of the copy, the frozen copy's cost at this size. */
  fileCopyMs?: number;
  /** The parts of the prediction as the workflow timed them (activity round trips, as the upgrade's steps). */
  stepMs?: { stop?: number; backup?: number; migrate?: number; start?: number };
  predictedDowntimeMs?: number;
  prediction?: DowntimePrediction;
  /** Where the copy was kept (profile rehearsal.keepCopyOnFailure), or undefined when dropped. */
  keptCopy?: string;
  /** The cleanup could not finish (what is left is named here). */
  cleanupProblem?: string;
}

export interface RehearsalStatus {
  workflowId: string;
  operation: 'rehearse';
  deployment: string;
  targetRef: string;
  phase: string;
  summary: string;
  steps: StepStatus[];
  outcome?: 'passed' | 'failed';
  rehearsal?: RehearsalOutcome;
  error?: { step: string; message: string };
  /** Always empty: a rehearsal takes no signals (the shape `status` renders). */
  ignoredSignals: string[];
}

/** `<live>_rehearsal_<key>`, within PostgreSQL's 63-byte names. */
export function rehearsalDatabaseName(live: string, key: string): string {
  const suffix = `_rehearsal_${key}`;
  return `${live.slice(0, 63 - suffix.length)}${suffix}`;
}

export const REHEARSAL_COMPLETE_PREFIX = 'dg-upgrade: rehearsal copy complete';

export function rehearsalCopyComment(live: string, key: string, snapshotHead: number): string {
  return `${REHEARSAL_COMPLETE_PREFIX} of ${live} for rehearsal ${key} at event log_seq ${snapshotHead}`;
}

/** The head a complete copy's comment records, or undefined for a half copy (no comment, or another). */
export function completeCopyHead(comment: string | null | undefined): number | undefined {
  if (!comment?.startsWith(REHEARSAL_COMPLETE_PREFIX)) return undefined;
  const m = /log_seq (\d+)$/.exec(comment);
  return m ? Number(m[1]) : undefined;
}

const TIME = /^(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,3}))?/;

function clockMs(line: string): number | undefined {
  const m = TIME.exec(line.trim());
  if (!m) return undefined;
  return ((Number(m[1]) * 60 + Number(m[2])) * 60 + Number(m[3])) * 1000 + Number((m[4] ?? '0').padEnd(3, '0'));
}

/**
 * Each migration's time from Ecto's log (`== Running <version> <Module>.change/0 forward` ...
 * `== Migrated <version> in 0.4s`): the time between the two lines' clock stamps when both carry
 * one, else Ecto's own rounded figure. A Running with no Migrated is the one that failed; its time
 * runs to `endedMs` (the command's end, on the same clock as `startedMs`).
 */
export function migrationTimings(output: string, wall?: { startedMs: number; endedMs: number }): MigrationTiming[] {
  const out: MigrationTiming[] = [];
  const open = new Map<string, { at?: number; name?: string }>();
  for (const line of output.split('\n')) {
    const running = /== Running (\d+) (\S+?)(?:\.change\/0|\.up\/0)?(?: forward)?\s*$/.exec(line);
    if (running) {
      const module = running[2]!.split('.').pop();
      open.set(running[1]!, { at: clockMs(line), name: module });
      continue;
    }
    const migrated = /== Migrated (\d+) in ([\d.]+)s/.exec(line);
    if (migrated) {
      const began = open.get(migrated[1]!);
      open.delete(migrated[1]!);
      const end = clockMs(line);
      const byClock = began?.at !== undefined && end !== undefined ? (end - began.at + 86_400_000) % 86_400_000 : undefined;
      out.push({ version: migrated[1]!, name: began?.name, ms: byClock ?? Math.round(Number(migrated[2]) * 1000) });
    }
  }
  for (const [version, began] of open) {
    let ms = 0;
    if (wall && began.at !== undefined) {
      const endClock = new Date(wall.endedMs);
      const endOfDay = ((endClock.getUTCHours() * 60 + endClock.getUTCMinutes()) * 60 + endClock.getUTCSeconds()) * 1000 + endClock.getUTCMilliseconds();
      ms = Math.max(0, (endOfDay - began.at + 86_400_000) % 86_400_000);
    }
    // The log's clock may be local time (Ecto's logger), not UTC: then what the others left of the run's wall time.
    if (wall && ms > wall.endedMs - wall.startedMs) ms = Math.max(0, wall.endedMs - wall.startedMs - out.reduce((n, m) => n + m.ms, 0));
    out.push({ version, name: began.name, ms, failed: true });
  }
  return out;
}

/**
 * The downtime an upgrade after this rehearsal should see, from parts measured on the copy: the
 * stop (the rehearsal instance's graceful stop), the backup (frozen-copy: the raw FILE_COPY of
 * the copy; a dump: the copy's own pg_dump throughput at the live size), the migrations, and the
 * start to its first healthy probe.
 */
export function predictDowntime(m: {
  stopMs: number;
  migrateMs: number;
  startMs: number;
  backupMethod: 'frozen-copy' | 'dump-while-stopped';
  fileCopyMs?: number;
  liveBytes: number;
  dumpBytesPerSecond?: number;
}): DowntimePrediction {
  const basis: string[] = [`stop: the rehearsal instance's graceful stop as a step, ${m.stopMs} ms`];
  let backupMs: number;
  if (m.backupMethod === 'frozen-copy' && m.fileCopyMs !== undefined) {
    backupMs = m.fileCopyMs;
    basis.push(`backup: CREATE DATABASE ... STRATEGY FILE_COPY of the copy after a checkpoint, as a step, ${m.fileCopyMs} ms`);
  } else if (m.dumpBytesPerSecond && m.dumpBytesPerSecond > 0) {
    backupMs = Math.round((m.liveBytes / m.dumpBytesPerSecond) * 1000);
    basis.push(`backup: ${m.liveBytes} bytes at the copy's measured ${Math.round(m.dumpBytesPerSecond)} bytes/s`);
  } else {
    backupMs = 0;
    basis.push('backup: not measured');
  }
  basis.push(`migrate: the migrations on the copy as a step, ${m.migrateMs} ms`);
  basis.push(`start: the start to the first proven healthy probe as a step, ${m.startMs} ms`);
  const parts = { stopMs: m.stopMs, backupMs, migrateMs: m.migrateMs, startMs: m.startMs };
  return { totalMs: parts.stopMs + parts.backupMs + parts.migrateMs + parts.startMs, parts, basis };
}

/**
 * What the rehearsal instance gets on top of the production environment, so that nothing it does
 * leaves the rehearsal (docs/compatibility.md, "Rehearsal isolation"): DecisionGraph's only
 * outward traffic is its OpenTelemetry exporter (opentelemetry_exporter, OTLP to
 * OTEL_EXPORTER_OTLP_ENDPOINT); its workflow notifications are rows in dg_workflow_notifications
 * of its own database (channel operator_console), so they stay in the copy. A release's node gets
 * a name of its own, so it never joins the live node's distribution.
 */
export function isolationEnv(deployment: string, key: string, host: string): Record<string, string> {
  return {
    OTEL_SDK_DISABLED: 'true',
    OTEL_TRACES_EXPORTER: 'none',
    OTEL_METRICS_EXPORTER: 'none',
    OTEL_LOGS_EXPORTER: 'none',
    RELEASE_NODE: `${deployment.replace(/-/g, '_')}_rehearsal_${key}@${host}`,
  };
}

export function seconds(ms: number | undefined): string {
  return ms === undefined ? '?' : `${(ms / 1000).toFixed(1)} s`;
}

/** One line for a plan, a summary or the UI; in capitals when it failed (an advisory rehearsal still shows it). */
export function rehearsalLine(r: RehearsalOutcome): string {
  if (!r.passed) {
    return `REHEARSAL FAILED AT ${r.failure?.step ?? '?'}: ${r.failure?.message.split('\n')[0] ?? ''}`.toUpperCase();
  }
  const migrations = (r.migrations ?? []).map((m) => `${m.version} ${seconds(m.ms)}`).join(', ');
  return `rehearsal passed: migrations ${migrations || 'none'}; start ${seconds(r.startMs)}; smoke ${r.smoke?.checks.filter((c) => c.passed).length ?? 0}/${r.smoke?.checks.length ?? 0}; predicted downtime ${seconds(r.predictedDowntimeMs)}`;
}

/** What an upgrade's plan carries of its rehearsal (patch rehearsal-before-approval); the plan hash covers it. */
export interface PlanRehearsal {
  policy: 'required' | 'advisory';
  passed: boolean;
  /** One line; in capitals when it failed. */
  line: string;
  failure?: { step: RehearsalStepName; message: string };
  migrations?: Array<{ version: string; ms: number; failed?: boolean }>;
  copyMs?: number;
  startMs?: number;
  smoke?: Array<{ name: string; passed: boolean }>;
  /** Read by the maintenance window (the downtime a window must hold) when present. */
  predictedDowntimeMs?: number;
  /** Its measured parts. */
  predictedParts?: DowntimePrediction['parts'];
  keptCopy?: string;
}

/** The migration tool's own error line (Ecto: `** (Postgrex.Error) ERROR 42703 (undefined_column) ...`), for a message's first line. */
export function migrationErrorLine(output: string): string | undefined {
  const lines = output.split('\n').map((l) => l.trim()).filter(Boolean);
  return [...lines].reverse().find((l) => l.startsWith('** (')) ?? [...lines].reverse().find((l) => /\bERROR\b/.test(l));
}
