import { existsSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import { ownerOnlyDir } from '../config/ownerOnlyFiles.js';
import { inRehearsal, type RehearsalView } from '../config/rehearsalView.js';
import { durationMs, type ResolvedDeployment } from '../config/profile.js';
import { writePrivateFile } from '../database/postgres.js';
import { urlFor, liveDatabaseName } from '../database/postgres.js';
import { dropCopy, lowPriority, measureFileCopy, onlineCopy, rehearsalCopies } from '../database/onlineCopy.js';
import { isolationEnv, migrationErrorLine, migrationTimings, rehearsalDatabaseName, type CopyFigures, type MigrationTiming } from '../domain/rehearsal.js';
import type { SmokeReport } from '../domain/types.js';
import { databaseUrl, deploymentOf, runtimeDatabaseUrl, runtimeEnv, secretValues } from './deployment.js';
import { CommandFailed, runCommand } from './exec.js';
import { failpoint } from './failpoints.js';
import { keepAlive } from './heartbeat.js';
import { beamDirOf, logDirOf, otpReleaseBinOf, otpReleaseDirOf } from './layout.js';
import { probeRuntime, startRuntime, stopRuntime } from './runtime.js';
import { runSmokeChecks } from './smoke.js';

export interface RehearsalRef {
  deployment: string;
  /** The rehearsal's key (its run's): names the copy, the run dir and the node name. */
  key: string;
}

/** Where a rehearsal keeps its pidfile, log, port and the copy's URL (0600): `<stateDir>/rehearsals/<deployment>/<key>`. */
export function rehearsalDirOf(d: ResolvedDeployment, key: string): string {
  return path.join(d.stateDir, 'rehearsals', d.name, key);
}

function checkKey(key: string): void {
  if (!/^[a-z0-9]{1,16}$/.test(key)) {
    throw ApplicationFailure.create({ message: `rehearsal key ${JSON.stringify(key)}: lowercase letters and digits, at most 16`, type: 'DgBadInput', nonRetryable: true });
  }
}

/** The rehearsal's view of its deployment (config/rehearsalView.ts); the copy's URL file is written here. */
function viewOf(ref: RehearsalRef): { view: RehearsalView; live: ResolvedDeployment; dir: string } {
  checkKey(ref.key);
  const live = deploymentOf(ref.deployment);
  const dir = rehearsalDirOf(live, ref.key);
  ownerOnlyDir(dir, live.stateDir);
  const urlFile = path.join(dir, 'database-url');
  if (!existsSync(urlFile)) {
    const copy = rehearsalDatabaseName(liveDatabaseName(databaseUrl(live)), ref.key);
    writePrivateFile(urlFile, urlFor(runtimeDatabaseUrl(live), copy));
  }
  const portFile = path.join(dir, 'port');
  const port = existsSync(portFile) ? Number(readFileSync(portFile, 'utf8').trim()) : live.profile.port;
  return {
    live,
    dir,
    view: {
      deployment: ref.deployment,
      name: `${ref.deployment}-rehearsal`,
      port,
      runDir: dir,
      databaseUrlFile: urlFile,
      env: isolationEnv(ref.deployment, ref.key, live.profile.host),
    },
  };
}

function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

/** Step 1: the online copy of the live database, `<db>_rehearsal_<key>` (database/onlineCopy.ts). */
export async function rehearsalCopy(ref: RehearsalRef): Promise<CopyFigures> {
  const { live } = viewOf(ref);
  await failpoint('rehearsal.copy');
  return onlineCopy(live, ref.key);
}

export interface MigrateOutcome {
  ok: boolean;
  migrations: MigrationTiming[];
  ms: number;
  /** The migration tool's own error (its last lines), when it failed. */
  error?: string;
}

/**
 * Step 2: the target's migrations against the copy, with the production environment except the
 * database (and the isolation variables), at low priority, each migration timed from its log.
 */
export async function rehearsalMigrate(ref: RehearsalRef & { releaseDir: string }): Promise<MigrateOutcome> {
  const { view } = viewOf(ref);
  await failpoint('rehearsal.migrate');
  return inRehearsal(view, async () => {
    const d = deploymentOf(ref.deployment);
    const [tool, args, cwd] =
      d.profile.model === 'release'
        ? [otpReleaseBinOf(d, ref.releaseDir), ['eval', 'DecisionGraph.Store.Release.migrate()'], otpReleaseDirOf(d, ref.releaseDir)]
        : [d.profile.toolchain.mix, ['ecto.migrate'], beamDirOf(d, ref.releaseDir)];
    const [file, ...argv] = lowPriority([tool, ...args]);
    const started = Date.now();
    try {
      const output = await runCommand(file!, argv, { cwd, env: runtimeEnv(d), secrets: secretValues(d), logFile: path.join(logDirOf(d), 'migrate.log') });
      return { ok: true, migrations: migrationTimings(output), ms: Date.now() - started };
    } catch (err) {
      if (!(err instanceof CommandFailed)) throw err;
      const ended = Date.now();
      const migrations = migrationTimings(err.outputTail, { startedMs: started, endedMs: ended });
      const failed = migrations.find((m) => m.failed);
      const line = migrationErrorLine(err.outputTail);
      const first = `${failed ? `migration ${failed.version}${failed.name ? ` (${failed.name})` : ''} failed` : 'the migrations failed'}${line ? `: ${line}` : ''}`;
      return { ok: false, migrations, ms: ended - started, error: `${first}\n${err.message}` };
    }
  });
}

export interface StartOutcome {
  port: number;
  pid?: number;
  /** From the spawn to the first proven 200 of /api/healthz. */
  startMs: number;
}

/** Step 3: the target against the copy, on a free port of its own, in its own run dir. */
export async function rehearsalStart(ref: RehearsalRef & { releaseDir: string }): Promise<StartOutcome> {
  const first = viewOf(ref);
  const portFile = path.join(first.dir, 'port');
  if (!existsSync(portFile)) writePrivateFile(portFile, String(await freePort(first.live.profile.host)));
  const { view } = viewOf(ref);
  await failpoint('rehearsal.start');
  return inRehearsal(view, async () => {
    const started = Date.now();
    const probe = await startRuntime(ref.deployment, ref.releaseDir);
    return { port: view.port, pid: probe.pid, startMs: Date.now() - started };
  });
}

/** Step 4: the five smoke checks against the rehearsal instance (replay admission included: it writes to the copy). */
export async function rehearsalSmoke(ref: RehearsalRef): Promise<SmokeReport> {
  const { view } = viewOf(ref);
  await failpoint('rehearsal.smoke');
  return inRehearsal(view, () => runSmokeChecks(ref.deployment, undefined));
}

/** The rehearsal instance's graceful stop, timed (the stop part of the predicted downtime). */
export async function rehearsalStop(ref: RehearsalRef): Promise<{ wasRunning: boolean; stopMs: number }> {
  const { view } = viewOf(ref);
  return inRehearsal(view, async () => {
    const started = Date.now();
    const { wasRunning } = await stopRuntime(ref.deployment);
    return { wasRunning, stopMs: Date.now() - started };
  });
}

/** The frozen copy's cost at this size: a raw FILE_COPY of the copy (-1 when there is no room for it). */
export async function rehearsalFileCopy(ref: RehearsalRef): Promise<number> {
  const { live } = viewOf(ref);
  const copy = rehearsalDatabaseName(liveDatabaseName(databaseUrl(live)), ref.key);
  return keepAlive('measuring a FILE_COPY of the copy', () => measureFileCopy(live, copy));
}

export interface CleanupOutcome {
  stoppedRuntime: boolean;
  dropped?: string;
  kept?: string;
}

/**
 * Leaves nothing of a rehearsal behind: stops its instance (only the one in its own run dir),
 * drops its copy unless asked to keep it, removes its run dir (a kept copy is named in the
 * outcome, its URL is the live one's with the copy's name). Safe to repeat.
 */
export async function rehearsalCleanup(ref: RehearsalRef & { keepCopy?: boolean }): Promise<CleanupOutcome> {
  const { view, live, dir } = viewOf(ref);
  const copy = rehearsalDatabaseName(liveDatabaseName(databaseUrl(live)), ref.key);
  const stoppedRuntime = await keepAlive('stopping the rehearsal instance', () =>
    inRehearsal(view, async () => {
      const probe = await probeRuntime(ref.deployment);
      if (!probe.running) return false;
      await stopRuntime(ref.deployment);
      return true;
    }),
  );
  await failpoint('rehearsal.cleanup');
  const dropped = ref.keepCopy ? false : await dropCopy(live, copy);
  rmSync(dir, { recursive: true, force: true });
  return ref.keepCopy ? { stoppedRuntime, kept: copy } : { stoppedRuntime, dropped: dropped ? copy : undefined };
}

/** The rehearsal copies of a deployment on the database server (tests, `status`). */
export async function listRehearsalCopies(deployment: string): Promise<string[]> {
  return rehearsalCopies(deploymentOf(deployment));
}

export interface RehearsalSettings {
  policy: 'required' | 'advisory' | 'off';
  keepCopyOnFailure: boolean;
  stageTimeoutMs: number;
  backupMethod: 'frozen-copy' | 'dump-while-stopped';
  layout: 'releases' | 'in-place';
}

/** The profile's rehearsal settings, as the worker reads them now. */
export async function rehearsalSettings(deployment: string): Promise<RehearsalSettings> {
  const d = deploymentOf(deployment);
  const r = d.profile.rehearsal ?? { policy: 'off' as const, keepCopyOnFailure: false, stageTimeout: '30m' };
  return { policy: r.policy, keepCopyOnFailure: r.keepCopyOnFailure, stageTimeoutMs: durationMs(r.stageTimeout), backupMethod: d.profile.backups.method, layout: d.profile.layout };
}
