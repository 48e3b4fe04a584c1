import { existsSync, mkdirSync, renameSync, rmSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import { heartbeat } from './heartbeat.js';
import { releasesDirOf, type ResolvedDeployment } from '../config/profile.js';
import { FAILURE_TYPES, type CheckoutInfo, type DowngradeFacts, type PendingMigration, type ResolvedRef } from '../domain/types.js';
import { deploymentOf } from './deployment.js';
import { CommandFailed, runCommand } from './exec.js';
import { currentDirOf, currentLinkOf, releaseDirFor } from './layout.js';

export const MIGRATIONS_PATH = 'apps/dg_store/priv/repo/migrations';

function git(cwd: string, args: string[]): Promise<string> {
  return runCommand('git', args, { cwd }).then((out) => out.trim());
}

async function tryGit(cwd: string, args: string[]): Promise<string | undefined> {
  try {
    return await git(cwd, args);
  } catch (err) {
    if (err instanceof CommandFailed) return undefined;
    throw err;
  }
}

const SAFE_REF = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$/;

/** Refuses anything git could read as an option, and names outside git's ref grammar. */
export function validateRefSyntax(ref: string): string | undefined {
  if (ref.startsWith('-')) return `ref "${ref}" looks like a command-line option; give a tag, branch or commit SHA`;
  if (!SAFE_REF.test(ref) || ref.includes('..') || ref.endsWith('.lock') || ref.endsWith('/')) {
    return `ref "${ref}" is not a valid tag, branch or commit name (letters, digits, ".", "_", "/", "-")`;
  }
  return undefined;
}

export async function describeCheckout(dir: string): Promise<CheckoutInfo> {
  const sha = await git(dir, ['rev-parse', 'HEAD']);
  const tag = await tryGit(dir, ['describe', '--tags', '--exact-match', 'HEAD']);
  return { sha, tag: tag || undefined, dir };
}

/** The version that serves now (the `current` release, or the repository for in-place). */
export async function currentCheckout(deployment: string): Promise<CheckoutInfo> {
  return describeCheckout(currentDirOf(deploymentOf(deployment)));
}

/** `git fetch --tags`, then resolves the target to a commit; unknown or option-like refs are bad input. */
export async function resolveTargetRef(deployment: string, ref: string): Promise<ResolvedRef> {
  const d = deploymentOf(deployment);
  const syntaxError = validateRefSyntax(ref);
  if (syntaxError) throw ApplicationFailure.create({ message: syntaxError, type: FAILURE_TYPES.badRef, nonRetryable: true });
  const repo = d.profile.repoPath;
  const remotes = await git(repo, ['remote']);
  if (remotes.split('\n').includes('origin')) {
    heartbeat('git fetch --tags');
    await git(repo, ['fetch', '--tags', '--force', '--prune', 'origin']);
  }
  const sha =
    (await tryGit(repo, ['rev-parse', '--verify', '--quiet', '--end-of-options', `refs/tags/${ref}^{commit}`])) ??
    (await tryGit(repo, ['rev-parse', '--verify', '--quiet', '--end-of-options', `refs/remotes/origin/${ref}^{commit}`])) ??
    (await tryGit(repo, ['rev-parse', '--verify', '--quiet', '--end-of-options', `${ref}^{commit}`]));
  if (!sha) {
    const tags = (await git(repo, ['tag', '--sort=-v:refname'])).split('\n').filter(Boolean).slice(0, 8);
    throw ApplicationFailure.create({
      message: `unknown ref "${ref}": no tag, branch or commit of that name in ${repo} after git fetch --tags (recent tags: ${tags.join(', ') || 'none'})`,
      type: FAILURE_TYPES.badRef,
      nonRetryable: true,
    });
  }
  const tag = /^v?\d/.test(ref) && (await tryGit(repo, ['rev-parse', '--verify', '--quiet', `refs/tags/${ref}^{commit}`])) ? ref : await tryGit(repo, ['describe', '--tags', '--exact-match', sha]);
  return { ref, sha, tag: tag || undefined };
}

/** Tracked files modified in the serving checkout mean someone patched the install by hand: refuse. */
export async function checkCleanTree(deployment: string): Promise<void> {
  const d = deploymentOf(deployment);
  const dir = currentDirOf(d);
  const dirty = await git(dir, ['status', '--porcelain', '--untracked-files=no']);
  if (dirty) {
    throw ApplicationFailure.create({
      message: `the checkout ${dir} has local changes (${dirty.split('\n').slice(0, 5).join('; ')}); commit or discard them before upgrading`,
      type: FAILURE_TYPES.badInput,
      nonRetryable: true,
    });
  }
}

/** Migrations present at `sha` whose version is not applied yet. */
export async function pendingMigrationsAt(deployment: string, sha: string, applied: string[]): Promise<PendingMigration[]> {
  const d = deploymentOf(deployment);
  const dir = path.posix.join(d.profile.beamDir, MIGRATIONS_PATH);
  const listing = await git(d.profile.repoPath, ['ls-tree', '--name-only', `${sha}:${dir}`]);
  const appliedSet = new Set(applied);
  return listing
    .split('\n')
    .map((file) => /^(\d+)_(.+)\.\w+$/.exec(file))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ version: m[1]!, name: m[2]! }))
    .filter((m) => !appliedSet.has(m.version))
    .sort((a, b) => a.version.localeCompare(b.version));
}

/**
 * Whether going to `targetSha` goes back: the target is an ancestor of what runs, or the
 * database holds migrations the target does not have (the older code would serve a schema it
 * does not know). Those are named from the running checkout's migration files where present.
 */
export async function downgradeFacts(deployment: string, targetSha: string, currentSha: string, applied: string[]): Promise<DowngradeFacts> {
  const d = deploymentOf(deployment);
  const dir = path.posix.join(d.profile.beamDir, MIGRATIONS_PATH);
  const migrationsAt = async (sha: string) =>
    new Map(
      ((await tryGit(d.profile.repoPath, ['ls-tree', '--name-only', `${sha}:${dir}`])) ?? '')
        .split('\n')
        .map((file) => /^(\d+)_(.+)\.\w+$/.exec(file))
        .filter((m): m is RegExpExecArray => m !== null)
        .map((m) => [m[1]!, m[2]!] as const),
    );
  const atTarget = await migrationsAt(targetSha);
  const atCurrent = await migrationsAt(currentSha);
  const unknownMigrations = applied
    .filter((v) => !atTarget.has(v))
    .sort()
    .map((version) => ({ version, name: atCurrent.get(version) ?? '(not in the running checkout either)' }));
  const ancestor = targetSha !== currentSha && (await tryGit(d.profile.repoPath, ['merge-base', '--is-ancestor', targetSha, currentSha])) !== undefined;
  return { targetIsAncestor: ancestor, unknownMigrations };
}

export async function readFileAtRef(d: ResolvedDeployment, sha: string, file: string): Promise<string | undefined> {
  return tryGit(d.profile.repoPath, ['show', `${sha}:${file}`]);
}

/**
 * Puts the code of `sha` where it will run: a fresh worktree (releases) or a moved checkout
 * (in-place). Safe to repeat: an existing worktree at the right SHA is kept.
 */
export async function checkoutRelease(deployment: string, sha: string): Promise<string> {
  const d = deploymentOf(deployment);
  const dir = releaseDirFor(d, sha);
  if (d.profile.layout === 'in-place') {
    await git(dir, ['checkout', '--quiet', '--detach', sha]);
    return dir;
  }
  if (existsSync(dir)) {
    const head = await tryGit(dir, ['rev-parse', 'HEAD']);
    if (head === sha) return dir;
    rmSync(dir, { recursive: true, force: true }); // half-created by an earlier attempt
  }
  mkdirSync(releasesDirOf(d), { recursive: true });
  await git(d.profile.repoPath, ['worktree', 'prune']);
  await git(d.profile.repoPath, ['worktree', 'add', '--force', '--detach', dir, sha]);
  return dir;
}

/** Points `current` at a release dir (atomic rename of a fresh link). No-op for in-place. */
export async function switchCurrent(deployment: string, dir: string): Promise<void> {
  const d = deploymentOf(deployment);
  if (d.profile.layout === 'in-place') return;
  mkdirSync(releasesDirOf(d), { recursive: true });
  const link = currentLinkOf(d);
  const tmp = `${link}.${process.pid}.tmp`;
  rmSync(tmp, { force: true });
  symlinkSync(path.resolve(dir), tmp);
  renameSync(tmp, link);
}
