import path from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import { heartbeat } from './heartbeat.js';
import { FAILURE_TYPES } from '../domain/types.js';
import { deploymentOf, runtimeEnv, secretValues } from './deployment.js';
import { CommandFailed, runCommand } from './exec.js';
import { failpoint } from './failpoints.js';
import { beamDirOf, commandPidDirOf, logDirOf, otpReleaseBinOf, otpReleaseDirOf } from './layout.js';
import { placeReleaseAccounts, releaseAccountsToCarry } from './releaseAccounts.js';

function mix(deployment: string, dir: string, task: string[], logName: string, env: Record<string, string> = {}): Promise<void> {
  const d = deploymentOf(deployment);
  return runTool(deployment, d.profile.toolchain.mix, task, beamDirOf(d, dir), logName, env);
}

async function runTool(deployment: string, tool: string, args: string[], cwd: string, logName: string, extraEnv: Record<string, string> = {}): Promise<void> {
  const d = deploymentOf(deployment);
  try {
    await runCommand(tool, args, {
      cwd,
      env: { ...runtimeEnv(d), ...extraEnv },
      secrets: secretValues(d),
      logFile: path.join(logDirOf(d), logName),
      exclusive: { key: `${d.name}-mix`, pidDir: commandPidDirOf(d) },
    });
  } catch (err) {
    if (err instanceof CommandFailed) {
      // A compile error or a failing migration will not pass on a retry: report it now.
      throw ApplicationFailure.create({ message: err.message, type: 'DgToolFailed', nonRetryable: true });
    }
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw ApplicationFailure.create({
        message: tool === d.profile.toolchain.mix ? `mix not found: toolchain.mix is "${tool}"; set it to the mix executable of the node` : `${tool} not found: build the release first`,
        type: FAILURE_TYPES.badInput,
        nonRetryable: true,
      });
    }
    throw err;
  }
}

/**
 * `mix deps.get` + `mix compile` in the version's dir, with the production environment, and for
 * the release model `mix release <name>` (MIX_ENV=prod) into that dir's own `_build`, so the
 * running version's release is never overwritten. Re-running is cheap.
 */
export async function buildRelease(deployment: string, dir: string): Promise<void> {
  const d = deploymentOf(deployment);
  heartbeat('mix deps.get');
  await mix(deployment, dir, ['deps.get'], 'build.log');
  heartbeat('mix compile');
  await failpoint('build.compile');
  await mix(deployment, dir, ['compile'], 'build.log');
  if (d.profile.model === 'release') {
    // Accounts placed in the release root (no _JSON/_FILE in the profile) go into the new release's root too.
    const accounts = releaseAccountsToCarry(d, dir);
    await mix(deployment, dir, ['release', d.profile.releaseName, '--overwrite'], 'build.log', { MIX_ENV: 'prod' });
    if (accounts) placeReleaseAccounts(d, dir, accounts);
  }
}

/**
 * Source model: `mix ecto.migrate`; release model: `bin/<release> eval "DecisionGraph.Store.Release.migrate()"`.
 * Both skip versions already applied, so a second run is harmless.
 */
export async function migrateDatabase(deployment: string, dir: string): Promise<void> {
  const d = deploymentOf(deployment);
  await failpoint('migrate.start');
  if (d.profile.model === 'release') {
    await runTool(deployment, otpReleaseBinOf(d, dir), ['eval', 'DecisionGraph.Store.Release.migrate()'], otpReleaseDirOf(d, dir), 'migrate.log');
    return;
  }
  await mix(deployment, dir, ['ecto.migrate'], 'migrate.log');
}
