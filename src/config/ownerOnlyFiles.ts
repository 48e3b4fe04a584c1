import { chmodSync, fchmodSync, mkdirSync, openSync, statSync } from 'node:fs';
import path from 'node:path';

/**
 * What dg-upgrade keeps on the node (runtime pidfile and log, step logs, the dev server's SQLite
 * file with plans and comments) is for its owner only: files 0600, their directories 0700. The
 * umask is usually 022, and an older dg-upgrade left these files 0644, so existing files and
 * directories are tightened too, not only created with the mode. (Backups and keys: see
 * src/database/postgres.ts and manifestSeal.ts.)
 */

function tighten(p: string): void {
  const st = statSync(p);
  // A shared sticky directory (/tmp) is never ours to close.
  if (st.isDirectory() && st.mode & 0o1000) return;
  if (st.mode & 0o077) chmodSync(p, st.mode & 0o7700);
}

/**
 * `mkdir -p` with mode 0700, then `dir` and each of its ancestors up to `root` (inclusive; only
 * when `dir` is inside it) that group or others may enter is tightened to its owner's bits.
 */
export function ownerOnlyDir(dir: string, root: string = dir): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const rel = path.relative(root, dir);
  const top = rel.startsWith('..') || path.isAbsolute(rel) ? dir : root;
  for (let at = dir; ; at = path.dirname(at)) {
    tighten(at);
    if (at === top || at === path.dirname(at)) break;
  }
}

/** Tightens `file` to 0600-style bits if it exists (a file an older dg-upgrade left readable). */
export function tightenIfPresent(file: string): void {
  try {
    tighten(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** Opens `file` (created 0600; an existing one is tightened through its descriptor). */
export function openOwnerOnly(file: string, flags: 'a' | 'w'): number {
  const fd = openSync(file, flags, 0o600);
  try {
    fchmodSync(fd, 0o600);
  } catch (err) {
    // Not our file (another owner's log we may append to): leave its mode alone.
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
  }
  return fd;
}
