import { ApplicationFailure } from '@temporalio/activity';
import { FAILURE_TYPES } from '../domain/types.js';
import { appAdmissionChecks, tenantsWithProjections } from './appChecks.js';
import { databaseUrl, deploymentOf } from './deployment.js';
import { withDatabase } from '../database/postgres.js';
import { probeRuntime } from './runtime.js';

/**
 * Before the standalone `rebuild-projections` stops anything: asks the serving app whether the
 * smoke admin token may rebuild every tenant with projections (the `projection_rebuild`
 * permission, the app's compile-time `allow_rebuild`), with the same side-effect-free probe as the
 * plan-time checks (appAdmissionChecks). Refused (DgRefused) when the app would refuse a rebuild,
 * so the app keeps serving. An app that is not serving cannot be asked: the result says so and the
 * rebuild goes on (its own admission reports a refusal, as before).
 */
export async function checkRebuildAdmission(deployment: string): Promise<{ checks: string[]; warnings: string[] }> {
  const d = deploymentOf(deployment);
  const runtime = await probeRuntime(deployment);
  if (!(runtime.running && runtime.healthStatus === 200)) {
    return { checks: [], warnings: [`the app is not serving: could not check before the stop that it allows projection rebuilds`] };
  }
  const tenants = await withDatabase(databaseUrl(d), (c) => tenantsWithProjections(c, d.profile.smoke.tenant));
  const app = await appAdmissionChecks(d, {
    narrowPath: true,
    tenants,
    replay: false,
    rebuildFor: `dg-upgrade rebuild-projections rebuilds every tenant with projections`,
    otherwise: `or use the restore-based rollback: dg-upgrade rollback --deployment ${deployment}`,
  });
  if (app.problems.length) {
    throw ApplicationFailure.create({
      message: `projection rebuild refused before anything was stopped: ${app.problems.join(' | ')}`,
      type: FAILURE_TYPES.refused,
      nonRetryable: true,
    });
  }
  return { checks: app.checks, warnings: app.warnings };
}
