// Types shared by the workflows, the activities and the client. No runtime imports here.
import type { PlanRehearsal, RehearsalStepName } from './rehearsal.js';

export interface UpgradeInput {
  deployment: string;
  targetRef: string;
  /** Ignored since the approval-from-profile-only patch: the profile's approval.policy decides. Kept for runs started before it. */
  autoApprove?: boolean;
  /** Who started the run (CLI user or "temporal-ui"), for the audit trail. */
  requestedBy?: string;
  /** The operator asks for a downgrade explicitly: the plan lists the migrations the older version does not know. */
  allowDowngrade?: boolean;
  /** "next": stop the old version only inside one of the profile's maintenance windows (patch maintenance-windows). */
  window?: 'next';
  /** A one-off window from this ISO-8601 time with offset (e.g. "2026-12-01T22:00:00+01:00"). */
  notBefore?: string;
  /** The one-off window's length ("2h"); default the profile's longest window, else 1h. */
  windowLength?: string;
}

/** One weekly maintenance window of the profile (src/domain/maintenanceWindow.ts). */
export interface MaintenanceWindowSpec {
  days: Array<'sun' | 'mon' | 'tue' | 'wed' | 'thu' | 'fri' | 'sat'>;
  start: string;
  end: string;
  timeZone: string;
}

/** The profile's maintenance settings, as the worker read them. */
export interface MaintenanceSettings {
  windows: MaintenanceWindowSpec[];
  predictedDowntimeMs: number;
  whenTooShort: 'next-window' | 'end';
}

/** The window an upgrade waits for, as its plan (and so its hash) states it. */
export interface PlannedWindow {
  /** `profile`: the profile's weekly windows (--window next); `one-off`: --not-before. */
  kind: 'profile' | 'one-off';
  windows?: MaintenanceWindowSpec[];
  /** one-off: [start, end) as ISO instants, and the offset they were given in. */
  start?: string;
  end?: string;
  timeZone?: string;
  /** The downtime the window must still hold when the stop starts. */
  predictedDowntimeMs: number;
  /** Where that figure comes from: the profile's maintenance.predictedDowntime (or its default), or a rehearsal's measurement. */
  predictedDowntimeFrom: 'profile' | 'rehearsal';
  whenTooShort: 'next-window' | 'end';
}

/** What going to an older version means for the schema (preflight, patch downgrade-refused). */
export interface DowngradeFacts {
  /** The target is an ancestor of the running commit. */
  targetIsAncestor: boolean;
  /** Migrations the database holds that the target's code does not have. */
  unknownMigrations: PendingMigration[];
}

/** `cancelled`: the step a cancel request reached (it may have finished its work before it heard of it). */
export type StepState = 'pending' | 'running' | 'succeeded' | 'failed' | 'skipped' | 'cancelled';

export interface StepStatus {
  name: StepName;
  state: StepState;
  startedAt?: string;
  endedAt?: string;
  durationMs?: number;
  detail?: string;
}

export const UPGRADE_STEPS = [
  'preflight',
  'plan',
  'approval',
  'build',
  'stopOld',
  'backup',
  'migrate',
  'startNew',
  'smoke',
  'portableBackup',
  'finalize',
] as const;
export type UpgradeStepName = (typeof UPGRADE_STEPS)[number];
export const COMPENSATION_STEPS = ['restartOld', 'rollback'] as const;
export const ROLLBACK_STEPS = ['stopUpgraded', 'measureDiscard', 'restore', 'verifyRestore', 'prepareOld', 'startOld', 'smokeOld'] as const;
export type RollbackStepName = (typeof ROLLBACK_STEPS)[number];
export const REBUILD_STEPS = ['decide', 'stopCurrent', 'prepareOld', 'startOld', 'rebuild', 'verifyProjections'] as const;
export type RebuildStepName = (typeof REBUILD_STEPS)[number];
/** `window`: an upgrade's wait for its maintenance window, listed before stopOld only when it has one. */
export type StepName = UpgradeStepName | (typeof COMPENSATION_STEPS)[number] | RollbackStepName | RebuildStepName | 'rebuildProjections' | 'window' | 'rehearsal' | RehearsalStepName;

export type Phase =
  | 'starting'
  | 'preflight'
  | 'awaiting-approval'
  | 'waiting-for-window'
  | 'rehearsing'
  | 'building'
  | 'stopping-old'
  | 'backing-up'
  | 'migrating'
  | 'starting-new'
  | 'smoke-checking'
  | 'finalizing'
  | 'compensating'
  | 'rolling-back'
  | 'awaiting-data-loss-approval'
  | 'rollback-blocked'
  | 'succeeded'
  | 'rolled-back'
  | 'rebuilding-projections'
  | 'rebuilt'
  | 'failed'
  | 'rejected'
  | 'aborted'
  | 'abandoned';

export interface CheckoutInfo {
  sha: string;
  /** Tag pointing at the sha, when there is one. */
  tag?: string;
  /** Directory the runtime runs from. */
  dir: string;
}

export interface DeploymentInspection {
  deployment: string;
  node: string;
  layout: 'releases' | 'in-place';
  model: 'source' | 'release';
  runtimeAdapter: 'process' | 'command';
  current: CheckoutInfo;
  running: boolean;
  database: { name: string; redactedUrl: string };
  migrationVersions: string[];
  eventLog: EventLogMark;
  freeDiskBytes: number;
  estimatedBackupBytes: number;
  approval: { policy: 'required' | 'auto'; timeoutMs: number };
  smokeTimeoutMs: number;
  /** What a projection-only failure after cutover does: the narrow path, or the full restore. */
  onProjectionOnlyFailure: 'rebuild-projections' | 'restore';
  /** Things an operator should fix that do not block the upgrade (e.g. a backup dir other users can read). */
  warnings?: string[];
  /** What preflight checked that a later step needs (rename rights, replay/rebuild permissions); absent in older runs. */
  checks?: string[];
  /** The profile's maintenance windows; absent in older runs. */
  maintenance?: MaintenanceSettings;
}

export interface EventLogMark {
  maxLogSeq: number;
  rowCount: number;
}

export interface ResolvedRef {
  ref: string;
  sha: string;
  tag?: string;
}

export interface ReleaseNoteBlock {
  version: string;
  summary: string[];
  impact: string[];
  requiredActions: string[];
  verification: string[];
  rollback: string[];
}

export interface PendingMigration {
  version: string;
  name: string;
}

export interface UpgradePlan {
  deployment: string;
  layout: 'releases' | 'in-place';
  /** `source` (mix phx.server) or `release` (the packaged OTP release). */
  model: 'source' | 'release';
  from: CheckoutInfo;
  to: ResolvedRef;
  database: { name: string; redactedUrl: string };
  pendingMigrations: PendingMigration[];
  /** A downgrade the operator asked for (--allow-downgrade): what the older version will not know. */
  downgrade?: DowngradeFacts;
  releaseNotes: ReleaseNoteBlock[];
  requiredActions: string[];
  estimatedBackupBytes: number;
  steps: string[];
  warnings?: string[];
  /** Preflight's checks of what later steps need (issue 18); absent in older plans. */
  checks?: string[];
  /** The maintenance window the stop waits for (patch maintenance-windows); the hash covers it. */
  window?: PlannedWindow;
  /** The rehearsal on a copy before the approval (patch rehearsal-before-approval); the hash covers it. */
  rehearsal?: PlanRehearsal;
}

export interface SmokeCheckResult {
  name: 'healthz' | 'projections' | 'console' | 'replay' | 'traces-workflows';
  passed: boolean;
  latencyMs: number;
  reason: string;
  /** The failure is explained by derived projection data (health, digests, trace summaries), not by the schema or the code serving requests. */
  projectionSymptom?: boolean;
}

export interface SmokeReport {
  passed: boolean;
  checkedAt: string;
  version?: string;
  checks: SmokeCheckResult[];
  /** Observations compared between baseline and post-upgrade runs. */
  observations: SmokeObservations;
}

export interface SmokeObservations {
  traceId?: string;
  traceEventCount?: number;
  workflowIds?: string[];
  digests?: Record<string, string | null>;
}

export interface BackupManifest {
  id: string;
  deployment: string;
  kind: 'pre-upgrade' | 'manual';
  createdAt: string;
  file: string;
  sizeBytes: number;
  /** pg_database_size of the database the backup was taken from (absent in older manifests): sizes the steps that read it whole. */
  databaseBytes?: number;
  sha256: string;
  database: string;
  gitSha: string;
  gitTag?: string;
  environment: string;
  migrationVersions: string[];
  rowCounts: Record<string, number>;
  eventLog: EventLogMark & { checksum: string };
  workflowId: string;
  verified: { at: string; tocEntries: number; testRestore?: boolean };
  /**
   * The transaction snapshot (pg_export_snapshot) that pg_dump dumped and that the figures above
   * were counted in: the figures describe exactly what the dump holds.
   */
  snapshot?: string;
  /** Sessions of other clients on the database when the backup was taken, and what was done about them. */
  otherSessions?: { policy: OtherSessionsPolicy; seen: DatabaseSession[]; action: string };
  /** How it was taken; absent: dump-while-stopped (backups of older dg-upgrade versions). */
  method?: 'dump-while-stopped' | 'frozen-copy';
  /** frozen-copy: the copy of the database on its server, taken while the app was stopped. */
  frozenDatabase?: string;
  /** frozen-copy: the copy's oid: a rename keeps it, so a swapped-in database proves it is the copy. */
  frozenOid?: number;
  /**
   * frozen-copy: `frozen` while only the copy exists (figures counted in it, no dump file yet),
   * `complete` once the pg_dump file is written from it and verified.
   */
  state?: 'frozen' | 'complete';
  /** HMAC-SHA256 of the manifest's canonical JSON under the deployment's key (src/database/manifestSeal.ts); absent in older manifests. */
  seal?: { alg: 'hmac-sha256'; keyId: string; value: string };
}

export type OtherSessionsPolicy = 'wait' | 'refuse' | 'terminate';

/** A client session on the deployment's database, as pg_stat_activity names it. */
export interface DatabaseSession {
  pid: number;
  applicationName: string;
  user: string;
  clientAddress: string;
  state: string;
  backendStart: string;
}

export interface ApproveSignal {
  by: string;
  planHash: string;
  comment?: string;
}

export interface RejectSignal {
  by: string;
  comment?: string;
}

export interface Decision {
  kind: 'approved' | 'rejected' | 'timed-out' | 'auto-approved';
  by?: string;
  comment?: string;
  at: string;
}

export interface RollbackInput {
  deployment: string;
  /** Backup to restore; default the newest pre-upgrade backup of the deployment. */
  backupId?: string;
  /** Version to go back to; default the one recorded in the backup's manifest. */
  toRef?: string;
  reason?: string;
  /** Set by an upgrade that starts its rollback: where the previous version's build lives. */
  previousDir?: string;
  requestedBy?: string;
}

export interface RebuildProjectionsInput {
  deployment: string;
  /** Default: all three (context_graph, trace_summary, precedent_index). */
  projections?: string[];
  /** Version to go back to; default the one recorded in the newest pre-upgrade backup. */
  toRef?: string;
  backupId?: string;
  /** The operator states that the migrations applied since the backup are not suspect. */
  migrationsNotSuspect?: boolean;
  requestedBy?: string;
  /** Set by an upgrade that starts this: where the previous version's build lives. */
  previousDir?: string;
}

export interface RebuildReport {
  workflowId: string;
  outcome: 'rebuilt';
  decision: { path: string; reasons: string[]; appliedMigrations: string[] };
  revertedTo: { sha: string; tag?: string; dir: string; reused: boolean };
  /** `tenants`: the rebuild job of each tenant with projections (absent in older runs: the smoke tenant only). */
  jobs: Array<{ projection: string; jobId: string; status: string; tenants?: Record<string, string> }>;
  digests: Record<string, string | null>;
  /** The verified digests of every tenant with projections (absent in older runs: `digests`, the smoke tenant's, only). */
  tenantDigests?: Record<string, Record<string, string | null>>;
  summary: string;
}

export interface AcceptDataLossSignal {
  by: string;
  /** The number of events the operator accepts to discard, as reported by the status query. */
  events: number;
}

export interface OperatorSignal {
  by: string;
  comment?: string;
}

export interface DataLossReport {
  eventsAfterBackup: number;
  backupMaxLogSeq: number;
  liveMaxLogSeq: number;
  acceptedBy?: string;
  /** The count accepted by the operator (the last one, when writes made the gate ask again). */
  acceptedEvents?: number;
  /** How many times the gate had to ask, because writes went on while it waited. */
  asked?: number;
  /** Counted at the swap, in the database set aside: events the restored database does not hold. */
  discarded?: number;
}

export interface RollbackReport {
  workflowId: string;
  outcome: 'rolled-back' | 'abandoned' | 'failed';
  backupId?: string;
  restoredTo?: { sha: string; tag?: string; dir: string; reused: boolean };
  asideDatabase?: string;
  dataLoss?: DataLossReport;
  /** Where the confirmed writes are: the restored database up to the backup, the rest only in the set-aside one. */
  writes?: string;
  /** Sessions of other clients found on the live database at the swap, and what was done about them. */
  otherSessions?: BackupManifest['otherSessions'];
  /** Checked before the stop (issue 20): what the restore will use, other clients' sessions seen then, notes. */
  preStopCheck?: { backupId: string; source: 'frozen-copy' | 'dump'; otherSessions: DatabaseSession[]; notes: string[] };
  smoke?: SmokeReport;
  summary: string;
}

export interface UpgradeStatus {
  workflowId: string;
  operation: 'upgrade' | 'rollback' | 'rebuildProjections';
  deployment: string;
  targetRef: string;
  phase: Phase;
  waitingFor?: string;
  steps: StepStatus[];
  plan?: UpgradePlan;
  planHash?: string;
  decision?: Decision;
  ignoredSignals: string[];
  baselineSmoke?: SmokeReport;
  smoke?: SmokeReport;
  /** The window the run waits for or stops in (ISO instants); `note` says why an earlier one was passed over. */
  window?: { start: string; end: string; timeZone: string; note?: string };
  /** Set when the plan's tag points to another commit after the approval: the planned commit is deployed. */
  tagMoved?: { tag: string; plannedSha: string; currentSha: string };
  backup?: Pick<BackupManifest, 'id' | 'file' | 'sizeBytes' | 'sha256' | 'migrationVersions' | 'otherSessions'> & {
    eventLog?: BackupManifest['eventLog'];
    method?: BackupManifest['method'];
    frozenDatabase?: string;
    /** frozen-copy: why the portable dump file could not be written or verified (the frozen copy is kept). */
    problem?: string;
  };
  error?: { step: string; message: string };
  outcome?: 'succeeded' | 'failed' | 'rejected' | 'aborted' | 'rolled-back' | 'abandoned' | 'rebuilt';
  /** Upgrade: what kind of failure it was and which recovery applies. */
  classification?: { kind: 'projection-only' | 'schema' | 'unclear'; path: string; reason: string };
  /** Upgrade: the projection rebuild that compensated it (the narrow path); rebuild: what it did. */
  rebuild?: RebuildReport;
  summary: string;
  /** Rollback: the events a restore discards and who accepted that. */
  dataLoss?: DataLossReport;
  /** Upgrade: the ID of the rollback child workflow, once started (signal it with acceptDataLoss/retry/abandon). */
  rollbackWorkflowId?: string;
  /** Upgrade: the rollback that compensated it; rollback: what it did. */
  rollback?: RollbackReport;
  /** Added by the client, not the workflow: what the run's running activities last reported (long steps' progress). */
  progress?: Array<{ activity: string; attempt: number; detail?: string; heartbeatAgeSeconds?: number }>;
}

/** Every operation answers the same `status` query. */
export type OperationStatus = UpgradeStatus;

export type UpgradeResult = Pick<UpgradeStatus, 'outcome' | 'summary' | 'phase' | 'steps' | 'decision' | 'backup' | 'smoke'> & {
  deployment: string;
  from?: CheckoutInfo;
  to?: ResolvedRef;
};

/** Failure types the client maps to exit codes. */
export const FAILURE_TYPES = {
  badInput: 'DgBadInput',
  invalidProfile: 'DgInvalidProfile',
  unknownDeployment: 'DgUnknownDeployment',
  badRef: 'DgBadRef',
  databaseUnreachable: 'DgDatabaseUnreachable',
  noBackup: 'DgNoBackup',
  refused: 'DgRefused',
  rejected: 'DgRejected',
  aborted: 'DgAborted',
  rolledBack: 'DgRolledBack',
  recoveredByRebuild: 'DgRecoveredByRebuild',
  abandoned: 'DgAbandoned',
  failed: 'DgUpgradeFailed',
  wrongWorkflowId: 'DgWrongWorkflowId',
  /** The disk of the backup dir filled up: not retryable while the app is down. */
  noSpace: 'DgNoSpace',
  /** Writes reached the live database after the operator accepted a data-loss count: ask again. */
  dataLossGrew: 'DgDataLossGrew',
  /** The new version serves, but its pre-upgrade pg_dump file could not be written or verified (the frozen copy is kept). */
  backupUnverified: 'DgBackupUnverified',
} as const;

/** Failures of bad input: nothing was changed, a retry cannot help, the operator must fix the input. */
export const BAD_INPUT_TYPES: readonly string[] = [
  FAILURE_TYPES.badInput,
  FAILURE_TYPES.invalidProfile,
  FAILURE_TYPES.unknownDeployment,
  FAILURE_TYPES.badRef,
  FAILURE_TYPES.databaseUnreachable,
  FAILURE_TYPES.noBackup,
  FAILURE_TYPES.refused,
  FAILURE_TYPES.wrongWorkflowId,
];
