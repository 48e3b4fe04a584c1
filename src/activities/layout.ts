import { existsSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { ownerOnlyDir } from '../config/ownerOnlyFiles.js';
import { releasesDirOf, type ResolvedDeployment } from '../config/profile.js';

/**
 * Where each version lives on the node. `in-place`: the repository itself. `releases`: one git
 * worktree per SHA under the releases dir, and a `current` link to the one that serves; before
 * the first upgrade, the repository itself is current.
 */
export function releaseDirFor(d: ResolvedDeployment, sha: string): string {
  return d.profile.layout === 'in-place' ? d.profile.repoPath : path.join(releasesDirOf(d), sha);
}

export function currentLinkOf(d: ResolvedDeployment): string {
  return path.join(releasesDirOf(d), 'current');
}

export function currentDirOf(d: ResolvedDeployment): string {
  if (d.profile.layout === 'in-place') return d.profile.repoPath;
  const link = currentLinkOf(d);
  if (!existsSync(link)) return d.profile.repoPath;
  return path.resolve(path.dirname(link), readlinkSync(link));
}

export function beamDirOf(d: ResolvedDeployment, dir: string): string {
  return path.join(dir, d.profile.beamDir);
}

/**
 * A directory of the state dir that dg-upgrade writes into, created or tightened owner-only (0700)
 * together with its parents up to the state dir: step logs quote the app's output.
 */
function ownerOnlyStateDir(d: ResolvedDeployment, ...parts: string[]): string {
  const dir = path.join(d.stateDir, ...parts);
  ownerOnlyDir(dir, d.stateDir);
  return dir;
}

/** Pidfiles of the long commands of a deployment (see runCommand's `exclusive`); created owner-only. */
export function commandPidDirOf(d: ResolvedDeployment): string {
  return ownerOnlyStateDir(d, 'commands', d.name);
}

/** The packaged release `mix release` builds inside a version's dir. */
export function otpReleaseDirOf(d: ResolvedDeployment, dir: string): string {
  return path.join(beamDirOf(d, dir), '_build', 'prod', 'rel', d.profile.releaseName);
}

export function otpReleaseBinOf(d: ResolvedDeployment, dir: string): string {
  return path.join(otpReleaseDirOf(d, dir), 'bin', d.profile.releaseName);
}

/** The step logs of a deployment (build.log, backup.log, ...); created owner-only. */
export function logDirOf(d: ResolvedDeployment): string {
  return ownerOnlyStateDir(d, 'logs', d.name);
}
