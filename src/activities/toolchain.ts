import path from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import { heartbeat } from './heartbeat.js';
import { FAILURE_TYPES } from '../workflows/types.js';
import { deploymentOf, runtimeEnv, secretValues } from './deployment.js';
import { CommandFailed, runCommand } from './exec.js';
import { failpoint } from './failpoints.js';
import { beamDirOf, commandPidDirOf, logDirOf } from './layout.js';

async function mix(deployment: string, dir: string, task: string[], logName: string): Promise<void> {
  const d = deploymentOf(deployment);
  try {
    await runCommand(d.profile.toolchain.mix, task, {
      cwd: beamDirOf(d, dir),
      env: runtimeEnv(d),
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
        message: `mix not found: toolchain.mix is "${d.profile.toolchain.mix}"; set it to the mix executable of the node`,
        type: FAILURE_TYPES.badInput,
        nonRetryable: true,
      });
    }
    throw err;
  }
}

/** `mix deps.get` + `mix compile` in the release dir, with the production environment. Re-running is cheap. */
export async function buildRelease(deployment: string, dir: string): Promise<void> {
  heartbeat('mix deps.get');
  await mix(deployment, dir, ['deps.get'], 'build.log');
  heartbeat('mix compile');
  await failpoint('build.compile');
  await mix(deployment, dir, ['compile'], 'build.log');
}

/** `mix ecto.migrate`; Ecto skips versions already applied, so a second run is harmless. */
export async function migrateDatabase(deployment: string, dir: string): Promise<void> {
  await failpoint('migrate.start');
  await mix(deployment, dir, ['ecto.migrate'], 'migrate.log');
}
