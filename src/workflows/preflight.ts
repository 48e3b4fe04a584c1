import { ApplicationFailure, patched } from '@temporalio/workflow';
import { long, quick } from './activityProxies.js';
import { FAILURE_TYPES, type DeploymentInspection, type DowngradeFacts, type ResolvedRef, type SmokeReport, type UpgradePlan } from '../domain/types.js';

function badInput(message: string): ApplicationFailure {
  return ApplicationFailure.create({ message, type: FAILURE_TYPES.badInput, nonRetryable: true });
}

/** Patch: preflight proves the backup dir is a writable directory (creates and removes a temp file in it). */
export const BACKUP_DIR_CHECKED_AT_PLAN = 'backup-dir-checked-at-plan';
/**
 * Patch: the plan lists what preflight checked (issue 18's permission and ownership checks).
 * The plan hash covers it, so a run planned by older code keeps the plan, and hash, it showed.
 */
export const PLAN_LISTS_CHECKS = 'plan-lists-preflight-checks';
/**
 * Patch (issue 20): going back to an older version (the target an ancestor of what runs, or a
 * database holding migrations the target does not know) is refused unless asked for explicitly;
 * then the plan lists those migrations.
 */
export const DOWNGRADE_REFUSED = 'downgrade-refused';

function refusedDowngrade(deployment: string, from: { tag?: string; sha: string }, to: ResolvedRef, facts: DowngradeFacts): ApplicationFailure {
  const unknown = facts.unknownMigrations.map((m) => `${m.version}_${m.name}`).join(', ');
  const what = facts.targetIsAncestor ? `${describeRef(to)} is older than the running ${describeRef(from)}` : `${describeRef(to)} lacks migrations the database holds`;
  return ApplicationFailure.create({
    message: `deployment "${deployment}": ${what}; ${unknown ? `the database holds migrations ${describeRef(to)} does not know (${unknown}), which it would serve without knowing` : 'no migration differs'}. A downgrade is refused unless asked for: pass --allow-downgrade (the plan then lists them), or roll back to the pre-upgrade backup instead (dg-upgrade rollback), which restores the schema too`,
    type: FAILURE_TYPES.refused,
    nonRetryable: true,
  });
}

/** The plan as the backup method makes it: its warnings, and the frozen copy's steps instead of the dump's. */
export function withBackupMethod(plan: UpgradePlan, prereq: { method: string; warnings: string[] }): UpgradePlan {
  if (prereq.warnings.length) plan.warnings = [...(plan.warnings ?? []), ...prereq.warnings];
  if (prereq.method === 'frozen-copy') {
    plan.steps = plan.steps.map((step) =>
      step.startsWith('back up the database') ? 'copy the database on its server while stopped (CREATE DATABASE ... TEMPLATE, STRATEGY FILE_COPY)' : step,
    );
    plan.steps.push('write and verify the pg_dump file from the frozen copy while the new version serves');
  }
  return plan;
}

export function describeRef(ref: { tag?: string; sha: string }): string {
  return ref.tag ?? ref.sha.slice(0, 12);
}

export interface PreflightResult {
  inspection: DeploymentInspection;
  target: ResolvedRef;
  plan: UpgradePlan;
  baselineSmoke?: SmokeReport;
}

/**
 * Step 1 of the guide: record what runs, resolve the target, read the release notes and the
 * pending migrations. With `baselineSmoke`, also run the smoke checks on the running version
 * (they admit a replay, so `plan` alone skips them to change nothing).
 */
export async function runPreflight(deployment: string, targetRef: string, opts: { baselineSmoke: boolean; allowDowngrade?: boolean }): Promise<PreflightResult> {
  const inspection = await quick.inspectDeployment(deployment);
  if (!inspection.running) {
    throw badInput(`deployment "${deployment}" is not serving (no healthy runtime on its port); dg-upgrade upgrades a running install: start it first`);
  }
  // Issue 20: the backup dir is proved writable while the old version serves (refused at plan time).
  if (patched(BACKUP_DIR_CHECKED_AT_PLAN)) await quick.checkBackupDir(deployment);
  await quick.checkCleanTree(deployment);
  const target = await quick.resolveTargetRef(deployment, targetRef);
  if (target.sha === inspection.current.sha) {
    throw badInput(`deployment "${deployment}" already runs ${describeRef(target)} (${target.sha.slice(0, 12)}); nothing to upgrade`);
  }
  if (inspection.freeDiskBytes < inspection.estimatedBackupBytes * 1.5) {
    throw badInput(`not enough disk for a backup: ${inspection.freeDiskBytes} bytes free, about ${inspection.estimatedBackupBytes} needed`);
  }
  const pendingMigrations = await quick.pendingMigrationsAt(deployment, target.sha, inspection.migrationVersions);
  let downgrade: DowngradeFacts | undefined;
  if (patched(DOWNGRADE_REFUSED)) {
    const facts = await quick.downgradeFacts(deployment, target.sha, inspection.current.sha, inspection.migrationVersions);
    if (facts.targetIsAncestor || facts.unknownMigrations.length) {
      if (!opts.allowDowngrade) throw refusedDowngrade(deployment, inspection.current, target, facts);
      downgrade = facts;
    }
  }
  const releaseNotes = await quick.releaseNotesBetween(deployment, target.sha, inspection.current.tag, target.tag);
  let baselineSmoke: SmokeReport | undefined;
  if (opts.baselineSmoke) {
    baselineSmoke = await long.runSmokeChecks(deployment, undefined, { readOnly: true });
    if (!baselineSmoke.passed) {
      const failed = baselineSmoke.checks.filter((c) => !c.passed).map((c) => `${c.name}: ${c.reason}`);
      throw badInput(`the running version fails its smoke checks before any change (${failed.join('; ')}); fix the install before upgrading`);
    }
  }
  const assemble = inspection.model === 'release' ? ' and assemble its OTP release (mix release)' : '';
  const build = inspection.layout === 'releases'
    ? [`build the target in its own release dir${assemble} while the old version serves`, 'stop the old runtime']
    : ['stop the old runtime', `check out and build the target in place${assemble}`];
  const plan: UpgradePlan = {
    deployment,
    layout: inspection.layout,
    model: inspection.model,
    from: inspection.current,
    to: target,
    database: inspection.database,
    pendingMigrations,
    ...(downgrade ? { downgrade } : {}),
    releaseNotes,
    requiredActions: releaseNotes.flatMap((n) => n.requiredActions.map((a) => `${n.version}: ${a}`)),
    estimatedBackupBytes: inspection.estimatedBackupBytes,
    steps: [
      ...build,
      'back up the database (pg_dump)',
      `migrate (${pendingMigrations.length} pending${inspection.model === 'release' ? ', through the release: eval DecisionGraph.Store.Release.migrate()' : ''})`,
      `start the new runtime (${inspection.model === 'release' ? 'bin/<release> start' : 'mix phx.server'})`,
      'smoke checks',
    ],
    ...(inspection.warnings?.length ? { warnings: inspection.warnings } : {}),
    // Pure data from the recorded inspection (no command): older runs' inspections have none.
    ...(inspection.checks?.length && patched(PLAN_LISTS_CHECKS) ? { checks: inspection.checks } : {}),
  };
  return { inspection, target, plan, baselineSmoke };
}
