import path from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import { FAILURE_TYPES } from '../domain/types.js';
import { deploymentOf, runtimeEnv, secretValues } from './deployment.js';
import { runCommand } from './exec.js';
import { beamDirOf, commandPidDirOf, currentDirOf, logDirOf } from './layout.js';

export const RELEASE_VALIDATE_REFUSAL =
  '`mix dg.release.validate` reseeds a dedicated demo dataset (the release-demo tenant): the guide allows it only on a disposable or dedicated demo install, and it is no substitute for production-safe smoke checks on a live tenant';

/** Runs `mix dg.release.validate` on a profile marked `disposableDemo: true`; refused on any other. */
export async function releaseValidate(deployment: string): Promise<{ reportFile: string }> {
  const d = deploymentOf(deployment);
  if (!d.profile.disposableDemo) {
    throw ApplicationFailure.create({
      message: `refused for deployment ${d.name}: ${RELEASE_VALIDATE_REFUSAL}. Mark a demo install with "disposableDemo": true in its profile; use dg-upgrade's smoke checks on live installs`,
      type: FAILURE_TYPES.refused,
      nonRetryable: true,
    });
  }
  const dir = currentDirOf(d);
  const reportFile = path.join(dir, '.tmp', 'phase10-release-validation.json');
  await runCommand(d.profile.toolchain.mix, ['dg.release.validate', '--output', '../.tmp/phase10-release-validation.json'], {
    cwd: beamDirOf(d, dir),
    env: runtimeEnv(d),
    secrets: secretValues(d),
    logFile: path.join(logDirOf(d), 'release-validate.log'),
    exclusive: { key: `${d.name}-mix`, pidDir: commandPidDirOf(d) },
  });
  return { reportFile };
}
