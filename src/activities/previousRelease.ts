import { existsSync } from 'node:fs';
import path from 'node:path';
import { deploymentOf } from './deployment.js';
import { checkoutRelease, describeCheckout } from './git.js';
import { beamDirOf, otpReleaseBinOf, releaseDirFor } from './layout.js';
import { buildRelease } from './toolchain.js';

/**
 * The code to roll back to. In the `releases` layout the old version's build is normally still
 * there (its worktree, or the repository for the first upgrade) and is reused as is; otherwise it
 * is checked out and rebuilt (`mix deps.get` + `mix compile`), as the guide's rollback does.
 */
export async function preparePreviousRelease(deployment: string, sha: string, knownDir?: string): Promise<{ dir: string; reused: boolean }> {
  const d = deploymentOf(deployment);
  const mixEnv = d.profile.toolchain.env.MIX_ENV ?? 'prod';
  if (d.profile.layout === 'releases') {
    const candidates = [knownDir, releaseDirFor(d, sha), d.profile.repoPath].filter((c): c is string => !!c);
    for (const dir of candidates) {
      if (!existsSync(dir)) continue;
      const head = await describeCheckout(dir).catch(() => undefined);
      const built = d.profile.model === 'release' ? existsSync(otpReleaseBinOf(d, dir)) : existsSync(path.join(beamDirOf(d, dir), '_build', mixEnv));
      if (head?.sha === sha && built) return { dir, reused: true };
    }
  }
  const dir = await checkoutRelease(deployment, sha);
  await buildRelease(deployment, dir);
  return { dir, reused: false };
}
