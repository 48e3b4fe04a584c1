import { ApplicationFailure } from '@temporalio/activity';
import { DEFAULT_MAINTENANCE, durationMs, modelProblem, type DeploymentProfile } from '../config/profile.js';
import { FAILURE_TYPES, type DeploymentInspection } from '../domain/types.js';
import { appAdmissionChecks, ownershipProblem, tenantsWithProjections } from './appChecks.js';
import { databaseUrl, deploymentOf } from './deployment.js';
import { describeCheckout } from './git.js';
import { currentDirOf, otpReleaseDirOf } from './layout.js';
import { backupDirWarning, freeDiskBytes, inspectDatabase, withDatabase } from '../database/postgres.js';
import { probeRuntime } from './runtime.js';

/** Preflight facts, read-only: what runs now, the database's state, room for a backup. */
export async function inspectDeployment(deployment: string): Promise<DeploymentInspection> {
  const d = deploymentOf(deployment);
  const problem = modelProblem(d, otpReleaseDirOf(d, currentDirOf(d)));
  if (problem) throw ApplicationFailure.create({ message: problem, type: FAILURE_TYPES.invalidProfile, nonRetryable: true });
  const db = await inspectDatabase(d);
  const current = await describeCheckout(currentDirOf(d));
  const runtime = await probeRuntime(deployment);
  const running = runtime.running && runtime.healthStatus === 200;
  // Issue 18: what a run needs later (rename rights for a rollback's swap, the admin token's
  // replay permission for the smoke checks, rebuilds for the narrow path) is checked now, while
  // the old version serves and before anything is stopped; a missing one refuses the plan.
  const narrowPath = d.profile.recovery.onProjectionOnlyFailure === 'rebuild-projections';
  const { ownership, tenants } = await withDatabase(databaseUrl(d), async (c) => ({
    ownership: await ownershipProblem(c),
    tenants: narrowPath ? await tenantsWithProjections(c, d.profile.smoke.tenant) : [],
  }));
  const app = running ? await appAdmissionChecks(d, { narrowPath, tenants }) : { problems: [], checks: [], warnings: [] };
  const problems = [...(ownership.problem ? [ownership.problem] : []), ...app.problems];
  if (problems.length) {
    throw ApplicationFailure.create({
      message: `refused at plan time, nothing was stopped or changed: ${problems.join(' | ')}`,
      type: FAILURE_TYPES.refused,
      nonRetryable: true,
    });
  }
  return {
    deployment,
    node: d.profile.node,
    layout: d.profile.layout,
    model: d.profile.model,
    runtimeAdapter: d.profile.runtime.adapter,
    current,
    running,
    database: { name: db.name, redactedUrl: db.redactedUrl },
    migrationVersions: db.migrationVersions,
    eventLog: db.eventLog,
    freeDiskBytes: freeDiskBytes(d.profile.backups.dir),
    // A custom-format dump is compressed; the database size is a safe upper bound.
    estimatedBackupBytes: db.sizeBytes,
    approval: { policy: d.profile.approval.policy, timeoutMs: durationMs(d.profile.approval.timeout) },
    smokeTimeoutMs: durationMs(d.profile.smoke.timeout),
    onProjectionOnlyFailure: d.profile.recovery.onProjectionOnlyFailure,
    warnings: [backupDirWarning(d.profile.backups.dir), ...app.warnings].filter((w): w is string => w !== undefined),
    checks: [ownership.check, ...app.checks],
    maintenance: maintenanceOf(d.profile.maintenance ?? DEFAULT_MAINTENANCE),
  };
}

function maintenanceOf(m: NonNullable<DeploymentProfile['maintenance']>): NonNullable<DeploymentInspection['maintenance']> {
  return { windows: m.windows, predictedDowntimeMs: durationMs(m.predictedDowntime), whenTooShort: m.whenTooShort };
}
