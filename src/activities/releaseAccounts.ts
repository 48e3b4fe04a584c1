import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import { RELEASE_ROOT_ACCOUNTS_FILE, usesReleaseRootAccounts, type ResolvedDeployment } from '../config/profile.js';
import { FAILURE_TYPES } from '../domain/types.js';
import { currentDirOf, otpReleaseDirOf } from './layout.js';

/**
 * Service accounts placed in the packaged release's root. DecisionGraph's runtime.exs
 * (aliuyar1234/DecisionGraph ef99e58) reads DECISION_GRAPH_SERVICE_ACCOUNTS_JSON, else
 * DECISION_GRAPH_SERVICE_ACCOUNTS_FILE, else `$RELEASE_ROOT/config/service-accounts.json`, and
 * SELF_HOSTED_INSTALL.md tells operators of a packaged release to put the bootstrap file there.
 * dg-upgrade builds every version into its own release root, which does not have that file: the
 * new release would boot without accounts and every smoke call would answer 401 after cutover (a
 * false rollback). So, when the profile names neither setting, the build copies the serving
 * release's file into the new release root (same bytes, same mode) before anything is stopped.
 */
export interface ReleaseAccounts {
  from: string;
  content: Buffer;
  mode: number;
}

export function releaseAccountsFileOf(d: ResolvedDeployment, dir: string): string {
  return path.join(otpReleaseDirOf(d, dir), RELEASE_ROOT_ACCOUNTS_FILE);
}

/**
 * What the build of `dir` must place in its release root afterwards: the file of the release
 * being built (an in-place rebuild, which `mix release` may replace) or else the serving one's.
 * Read before `mix release` runs. Undefined when the profile names the accounts itself.
 */
export function releaseAccountsToCarry(d: ResolvedDeployment, dir: string): ReleaseAccounts | undefined {
  if (!usesReleaseRootAccounts(d)) return undefined;
  const candidates = [releaseAccountsFileOf(d, dir), releaseAccountsFileOf(d, currentDirOf(d))];
  for (const from of candidates) {
    if (!existsSync(from)) continue;
    return { from, content: readFileSync(from), mode: statSync(from).mode & 0o777 };
  }
  // Building the serving version itself (install, in-place): nothing to carry, as before.
  if (path.resolve(dir) === path.resolve(currentDirOf(d))) return undefined;
  throw ApplicationFailure.create({
    message:
      `the new release would boot without service accounts: the profile sets neither DECISION_GRAPH_SERVICE_ACCOUNTS_JSON nor DECISION_GRAPH_SERVICE_ACCOUNTS_FILE, ` +
      `and the serving release has no ${candidates[1]} to copy into ${candidates[0]}. Place the bootstrap file there (mix dg.accounts.bootstrap) or set one of the two in toolchain.secretEnv`,
    type: FAILURE_TYPES.invalidProfile,
    nonRetryable: true,
  });
}

/** Writes the carried file into the release root of `dir` (the one `mix release` just built), unless it already holds those bytes. */
export function placeReleaseAccounts(d: ResolvedDeployment, dir: string, accounts: ReleaseAccounts): void {
  const to = releaseAccountsFileOf(d, dir);
  if (existsSync(to) && readFileSync(to).equals(accounts.content)) return;
  mkdirSync(path.dirname(to), { recursive: true });
  writeFileSync(to, accounts.content, { mode: accounts.mode });
  chmodSync(to, accounts.mode);
}
