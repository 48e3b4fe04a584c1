import type { SmokeReport, UpgradeStepName } from './types.js';

export type FailureClass = 'projection-only' | 'schema' | 'unclear';

export interface FailureClassification {
  kind: FailureClass;
  /** Which recovery applies: the narrow path only for projection-only failures. */
  path: 'rebuild-projections' | 'restore' | 'restart-old' | 'none';
  reason: string;
}

/**
 * Classifies a failed upgrade for its failure report. Projection-only: the smoke checks failed
 * only on projection health (open failures, digests), the new version otherwise serves, and the
 * upgrade applied no migration. A failed migration is a schema failure. Anything else is
 * unclear, and unclear means the full restore.
 */
export function classifyFailure(input: {
  failedStep: UpgradeStepName | string;
  backupTaken: boolean;
  pendingMigrations: number;
  smoke?: SmokeReport;
}): FailureClassification {
  if (!input.backupTaken) {
    return { kind: 'unclear', path: input.failedStep === 'stopOld' || input.failedStep === 'backup' || input.failedStep === 'build' ? 'restart-old' : 'none', reason: 'failed before the database was touched' };
  }
  if (input.failedStep === 'migrate') return { kind: 'schema', path: 'restore', reason: 'a migration failed: the schema may be half-changed' };
  if (input.failedStep === 'smoke' && input.smoke) {
    const failing = input.smoke.checks.filter((c) => !c.passed);
    const failed = failing.map((c) => c.name);
    if (failing.length > 0 && failing.every((c) => c.projectionSymptom) && input.pendingMigrations === 0) {
      return { kind: 'projection-only', path: 'rebuild-projections', reason: `only projection data failed (${failed.join(', ')}) and the upgrade applied no migration` };
    }
    if (input.pendingMigrations > 0) return { kind: 'schema', path: 'restore', reason: `smoke checks failed (${failed.join(', ')}) after ${input.pendingMigrations} migration(s)` };
    return { kind: 'unclear', path: 'restore', reason: `smoke checks failed beyond projection health (${failed.join(', ')})` };
  }
  return { kind: 'unclear', path: 'restore', reason: `failed at ${input.failedStep}` };
}
