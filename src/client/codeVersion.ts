import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { WorkflowHandle } from '@temporalio/client';

/** Which workflow code (worker build ID) ran a run's workflow tasks, from its history. */
export interface RunCode {
  /** The build ID of the worker that completed the run's first workflow task. */
  startedOn?: string;
  /** The build ID of the worker that completed its latest workflow task: the code the run is on now. */
  current?: string;
  /** Each build that completed workflow tasks, in order, with how many it completed. */
  builds: Array<{ buildId: string; workflowTasks: number }>;
}

type TaskCompleted = {
  binaryChecksum?: string | null;
  workerVersion?: { buildId?: string | null } | null;
  deploymentVersion?: { buildId?: string | null } | null;
};

function buildIdOf(attrs: TaskCompleted): string {
  return attrs.deploymentVersion?.buildId || attrs.workerVersion?.buildId || attrs.binaryChecksum || 'unknown';
}

export async function runCode(handle: WorkflowHandle): Promise<RunCode> {
  return runCodeOfHistory(await handle.fetchHistory());
}

export function runCodeOfHistory(history: { events?: Array<{ workflowTaskCompletedEventAttributes?: unknown }> | null }): RunCode {
  const builds: RunCode['builds'] = [];
  for (const event of history.events ?? []) {
    const attrs = event.workflowTaskCompletedEventAttributes as TaskCompleted | null | undefined;
    if (!attrs) continue;
    const buildId = buildIdOf(attrs);
    const last = builds[builds.length - 1];
    if (last?.buildId === buildId) last.workflowTasks++;
    else builds.push({ buildId, workflowTasks: 1 });
  }
  return { startedOn: builds[0]?.buildId, current: builds[builds.length - 1]?.buildId, builds };
}

export function renderRunCode(code: RunCode): string {
  if (!code.current) return 'Code: no workflow task completed yet';
  if (code.builds.length === 1) return `Code: ${code.current}`;
  return `Code: ${code.current} (started on ${code.startedOn}; builds in order: ${code.builds.map((b) => `${b.buildId} x${b.workflowTasks}`).join(', ')})`;
}

/**
 * What code this dg-upgrade is: the package version names a release, but two builds of different
 * code (a patched checkout, the next commit before its release) share it. The git commit of the
 * checkout ("-dirty" with uncommitted changes to tracked files) and a hash of the compiled code
 * that runs (dist/src) tell them apart; the hash does even without git (an image, a tarball).
 */
export interface CodeIdentity {
  version: string;
  /** The checkout's commit (12 hex digits), when the code runs from a git checkout. */
  commit?: string;
  /** Tracked files differ from the commit. */
  dirty?: boolean;
  /** sha256 (12 hex digits) of every compiled .js file under dist/src, path and content, in path order. */
  codeHash: string;
}

const PACKAGE_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

function jsFilesUnder(dir: string): string[] {
  const files: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) files.push(...jsFilesUnder(full));
    else if (entry.name.endsWith('.js')) files.push(full);
  }
  return files;
}

/** The hash of the compiled code under `distSrc` (each file's relative path and content). */
export function codeHashOf(distSrc: string): string {
  const hash = createHash('sha256');
  for (const file of jsFilesUnder(distSrc).sort()) {
    hash.update(`${path.relative(distSrc, file)}\0`);
    hash.update(readFileSync(file));
    hash.update('\0');
  }
  return hash.digest('hex').slice(0, 12);
}

function git(root: string, args: string[]): string | undefined {
  try {
    return execFileSync('git', ['-C', root, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).trim();
  } catch {
    return undefined;
  }
}

export function codeIdentity(root = PACKAGE_ROOT): CodeIdentity {
  const version = (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }).version;
  const sha = git(root, ['rev-parse', 'HEAD']);
  const commit = sha && /^[0-9a-f]{40}$/.test(sha) ? sha.slice(0, 12) : undefined;
  const changes = commit ? git(root, ['status', '--porcelain', '--untracked-files=no']) : undefined;
  const dirty = changes === undefined ? undefined : changes !== '';
  return { version, ...(commit ? { commit } : {}), ...(dirty !== undefined ? { dirty } : {}), codeHash: codeHashOf(path.join(root, 'dist', 'src')) };
}

/** "dg-upgrade 0.2.0 (commit 928e0dc1a2b3-dirty, code 5f0e1d2c3b4a)". */
export function codeVersionText(id: CodeIdentity): string {
  return `dg-upgrade ${id.version} (${id.commit ? `commit ${id.commit}${id.dirty ? '-dirty' : ''}, ` : 'no git checkout, '}code ${id.codeHash})`;
}

/** The same in one word, for a worker's identity: "0.2.0+928e0dc1a2b3-dirty.5f0e1d2c3b4a". */
export function codeVersionTag(id: CodeIdentity): string {
  return `${id.version}+${id.commit ? `${id.commit}${id.dirty ? '-dirty' : ''}.` : ''}${id.codeHash}`;
}
