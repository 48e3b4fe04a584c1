import { ApplicationFailure } from '@temporalio/activity';
import { durationMs, modelProblem } from '../config/profile.js';
import { FAILURE_TYPES, type DeploymentInspection } from '../domain/types.js';
import { deploymentOf } from './deployment.js';
import { describeCheckout } from './git.js';
import { currentDirOf } from './layout.js';
import { backupDirWarning, freeDiskBytes, inspectDatabase } from './postgres.js';
import { probeRuntime } from './runtime.js';

/** Preflight facts, read-only: what runs now, the database's state, room for a backup. */
export async function inspectDeployment(deployment: string): Promise<DeploymentInspection> {
  const d = deploymentOf(deployment);
  const problem = modelProblem(d);
  if (problem) throw ApplicationFailure.create({ message: problem, type: FAILURE_TYPES.invalidProfile, nonRetryable: true });
  const db = await inspectDatabase(d);
  const current = await describeCheckout(currentDirOf(d));
  const runtime = await probeRuntime(deployment);
  return {
    deployment,
    node: d.profile.node,
    layout: d.profile.layout,
    model: d.profile.model,
    runtimeAdapter: d.profile.runtime.adapter,
    current,
    running: runtime.running && runtime.healthStatus === 200,
    database: { name: db.name, redactedUrl: db.redactedUrl },
    migrationVersions: db.migrationVersions,
    eventLog: db.eventLog,
    freeDiskBytes: freeDiskBytes(d.profile.backups.dir),
    // A custom-format dump is compressed; the database size is a safe upper bound.
    estimatedBackupBytes: db.sizeBytes,
    approval: { policy: d.profile.approval.policy, timeoutMs: durationMs(d.profile.approval.timeout) },
    smokeTimeoutMs: durationMs(d.profile.smoke.timeout),
    onProjectionOnlyFailure: d.profile.recovery.onProjectionOnlyFailure,
    warnings: [backupDirWarning(d.profile.backups.dir)].filter((w): w is string => w !== undefined),
  };
}
