import type { EventLogMark } from './types.js';

/** What the narrow path's rule looks at: the pre-upgrade backup's manifest and the live database now. */
export interface RecoveryFacts {
  backup: { id: string; migrationVersions: string[]; eventLog: EventLogMark };
  current: { migrationVersions: string[]; eventLog: EventLogMark };
  /** The operator states the applied migrations are not suspect (explicit, recorded). */
  migrationsNotSuspect?: boolean;
}

export interface RecoveryDecision {
  path: 'rebuild-projections' | 'restore';
  reasons: string[];
  /** Migrations applied since the backup (in the live database, not in the backup). */
  appliedMigrations: string[];
}

/**
 * The guide's rule for the narrow path: a projection rebuild is enough only when the event log
 * is trustworthy and no migration is suspect. Allowed when no migration was applied since the
 * backup (or the operator explicitly marks them not suspect) AND the event log's high-water
 * mark and row count are not below the backup's. Anything else: the restore-based rollback.
 */
export function decideRecoveryPath(facts: RecoveryFacts): RecoveryDecision {
  const reasons: string[] = [];
  const inBackup = new Set(facts.backup.migrationVersions);
  const inCurrent = new Set(facts.current.migrationVersions);
  const applied = facts.current.migrationVersions.filter((v) => !inBackup.has(v));
  const removed = facts.backup.migrationVersions.filter((v) => !inCurrent.has(v));
  let ok = true;
  if (removed.length) {
    ok = false;
    reasons.push(`migration versions ${removed.join(', ')} of the backup are missing from the live database: the schema is not what the backup had`);
  }
  if (applied.length && !facts.migrationsNotSuspect) {
    ok = false;
    reasons.push(`the upgrade applied migration ${applied.join(', ')}: a migration is suspect, so the projection rebuild is not enough (mark them not suspect only if you are sure)`);
  } else if (applied.length) {
    reasons.push(`migration ${applied.join(', ')} applied, marked not suspect by the operator`);
  } else if (!removed.length) {
    reasons.push('no migration applied since the backup');
  }
  if (facts.current.eventLog.maxLogSeq < facts.backup.eventLog.maxLogSeq) {
    ok = false;
    reasons.push(`the event log's high-water mark ${facts.current.eventLog.maxLogSeq} is below the backup's ${facts.backup.eventLog.maxLogSeq}: events were lost`);
  }
  if (facts.current.eventLog.rowCount < facts.backup.eventLog.rowCount) {
    ok = false;
    reasons.push(`the event log has ${facts.current.eventLog.rowCount} rows, fewer than the backup's ${facts.backup.eventLog.rowCount}: events were lost`);
  }
  if (ok) reasons.push('the event log is at or past the backup (trustworthy)');
  return { path: ok ? 'rebuild-projections' : 'restore', reasons, appliedMigrations: applied };
}
