import { closeSync, fsyncSync, mkdirSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import { FAILURE_TYPES } from '../domain/types.js';
import { deploymentOf } from './deployment.js';

/**
 * Issue 20: the backup dir is proved writable at plan time, while the old version serves: a
 * read-only filesystem, a file in its path or a symlink loop used to surface only after the stop,
 * retried with the app down. Creates the dir 0700 when missing (as the backup would), then creates,
 * writes, fsyncs and removes a private temp file in it.
 */
export async function checkBackupDir(deployment: string): Promise<{ dir: string; created: boolean }> {
  const d = deploymentOf(deployment);
  const dir = d.profile.backups.dir;
  const problem = backupDirProblem(dir);
  if (typeof problem === 'string') {
    throw ApplicationFailure.create({
      message: `refused at plan time, nothing was stopped or changed: the backup dir ${dir} (backups.dir) is not a writable directory: ${problem}`,
      type: FAILURE_TYPES.refused,
      nonRetryable: true,
    });
  }
  return { dir, created: problem.created };
}

function why(err: unknown, dir: string, doing: string): string {
  const e = err as NodeJS.ErrnoException;
  const at = e.path && e.path !== dir ? ` (at ${e.path})` : '';
  switch (e.code) {
    case 'EROFS':
      return `${doing} failed with EROFS${at}: its filesystem is mounted read-only; remount it read-write, or point backups.dir at a writable filesystem`;
    case 'ENOTDIR':
      return `${doing} failed with ENOTDIR${at}: a component of the path is a file, not a directory; move the file away or point backups.dir elsewhere`;
    case 'ELOOP':
      return `${doing} failed with ELOOP${at}: the path runs into a loop of symbolic links; fix the links or point backups.dir at a real directory`;
    case 'EACCES':
    case 'EPERM':
      return `${doing} failed with ${e.code}${at}: the worker's user (uid ${process.getuid?.() ?? '?'}) may not write there; give it the directory (chown, chmod 700) or point backups.dir elsewhere`;
    case 'ENOSPC':
    case 'EDQUOT':
      return `${doing} failed with ${e.code}${at}: no space left there; free space or point backups.dir at a bigger filesystem`;
    case 'EEXIST':
      return `${doing} failed with EEXIST${at}: the path exists and is not a directory`;
    default:
      return `${doing} failed: ${e.message}`;
  }
}

/**
 * mkdir -p, mode 0700, one component at a time: node's recursive mkdir reports ENOENT where the
 * kernel said EROFS (it retries the parent), and the operator needs the real cause.
 */
function mkdirEach(dir: string): void {
  const parts = path.resolve(dir).split(path.sep).filter(Boolean);
  let at: string = path.sep;
  for (const part of parts) {
    at = path.join(at, part);
    try {
      mkdirSync(at, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      if (!statSync(at).isDirectory()) throw Object.assign(new Error(`ENOTDIR: ${at} is not a directory`), { code: 'ENOTDIR', path: at });
    }
  }
}

/** Why `dir` cannot hold backups, or that it can (and whether it was created now). */
export function backupDirProblem(dir: string): string | { created: boolean } {
  let created = false;
  try {
    const s = statSync(dir);
    if (!s.isDirectory()) return `${dir} exists and is not a directory (ENOTDIR); move it away or point backups.dir elsewhere`;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return why(err, dir, `stat ${dir}`);
    try {
      mkdirEach(dir);
      created = true;
    } catch (mkErr) {
      return why(mkErr, dir, `creating it (mkdir -p, mode 0700)`);
    }
  }
  const probe = path.join(dir, `.dg-upgrade-write-check-${process.pid}-${randomBytes(4).toString('hex')}`);
  let fd: number | undefined;
  try {
    fd = openSync(probe, 'wx', 0o600);
    writeSync(fd, 'dg-upgrade write check\n');
    fsyncSync(fd);
  } catch (err) {
    return why(err, dir, `creating a file in it (${path.basename(probe)})`);
  } finally {
    if (fd !== undefined) closeSync(fd);
    rmSync(probe, { force: true });
  }
  return { created };
}
