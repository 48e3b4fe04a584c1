import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * The Temporal CLI (which embeds the dev server and its UI) is built from source with
 * `go install`, once per machine, into the user's cache dir: CI runs on fresh clones and
 * the build takes minutes. No other download can work on the machines we run on.
 */
export const TEMPORAL_CLI_VERSION = process.env.DG_TEMPORAL_CLI_VERSION ?? 'v1.5.1';
const MODULE = 'github.com/temporalio/cli/cmd/temporal';

export function cacheRoot(): string {
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'dg-upgrade');
}

export function temporalCliPath(version = TEMPORAL_CLI_VERSION): string {
  return process.env.DG_TEMPORAL_BIN || path.join(cacheRoot(), 'temporal-cli', version, 'temporal');
}

function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; onLine?: (line: string) => void } = {}) {
  return new Promise<{ code: number | null; output: string }>((resolve) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const onData = (chunk: Buffer) => {
      const text = chunk.toString();
      output += text;
      if (opts.onLine) for (const line of text.split('\n')) if (line.trim()) opts.onLine(line);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', (err) => resolve({ code: -1, output: `${output}${err.message}` }));
    child.on('close', (code) => resolve({ code, output }));
  });
}

/** `go install` does not stamp the CLI's version (it reports 0.0.0-DEV), so a stamp file beside it records what was built. */
function stampOf(binary: string): string {
  return `${binary}.built`;
}

/** True when the binary runs and was built from the expected version. */
export async function isUsableTemporalCli(binary: string, version = TEMPORAL_CLI_VERSION): Promise<boolean> {
  if (!existsSync(binary)) return false;
  if (!process.env.DG_TEMPORAL_BIN) {
    try {
      if (readFileSync(stampOf(binary), 'utf8').trim() !== version) return false;
    } catch {
      return false;
    }
  }
  const { code, output } = await run(binary, ['--version']);
  return code === 0 && /Server \d/.test(output);
}

function acquireLock(lockPath: string): () => void {
  for (;;) {
    try {
      const fd = openSync(lockPath, 'wx');
      writeFileSync(fd, String(process.pid));
      closeSync(fd);
      return () => rmSync(lockPath, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number(readFileSync(lockPath, 'utf8') || '0');
      let alive = false;
      try {
        if (holder > 0) process.kill(holder, 0);
        alive = holder > 0;
      } catch {
        alive = false;
      }
      if (!alive) {
        try { unlinkSync(lockPath); } catch { /* raced with another waiter */ }
        continue;
      }
      // Another process is building; wait for it (synchronously sleeping is fine in a setup step).
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2000);
    }
  }
}

/**
 * Returns the path of a working Temporal CLI, building it first when it is missing or broken.
 * Progress goes to `log` while the build runs.
 */
export async function ensureTemporalCli(log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<string> {
  const binary = temporalCliPath();
  if (await isUsableTemporalCli(binary)) return binary;
  if (process.env.DG_TEMPORAL_BIN) {
    throw new Error(`DG_TEMPORAL_BIN=${binary} is not a working Temporal CLI (\`${binary} --version\` failed). Unset it to build one into the cache.`);
  }
  const dir = path.dirname(binary);
  mkdirSync(dir, { recursive: true });
  const release = acquireLock(path.join(dir, '.build.lock'));
  try {
    if (await isUsableTemporalCli(binary)) return binary; // built by whoever held the lock
    const goCheck = await run('go', ['version']);
    if (goCheck.code !== 0) {
      throw new Error('Go is required to build the Temporal CLI (go install) but `go version` failed: install Go 1.25+ and retry.');
    }
    const gobin = path.join(dir, `.gobin-${process.pid}`);
    rmSync(gobin, { recursive: true, force: true });
    mkdirSync(gobin, { recursive: true });
    log(`[temporal] building Temporal CLI ${TEMPORAL_CLI_VERSION} with go install (once per machine; takes a few minutes) into ${dir}`);
    const started = Date.now();
    let modules = 0;
    const ticker = setInterval(() => {
      const downloads = modules ? `, ${modules} modules downloaded` : '';
      log(`[temporal] still building... ${Math.round((Date.now() - started) / 1000)}s elapsed${downloads} (go install compiles the server and the UI)`);
    }, 15_000);
    const result = await run('go', ['install', '-trimpath', `${MODULE}@${TEMPORAL_CLI_VERSION}`], {
      env: { ...process.env, GOBIN: gobin, GOFLAGS: process.env.GOFLAGS ?? '-mod=mod' },
      onLine: (line) => {
        if (line.startsWith('go: downloading')) modules++;
      },
    }).finally(() => clearInterval(ticker));
    if (result.code !== 0) {
      throw new Error(`go install ${MODULE}@${TEMPORAL_CLI_VERSION} failed:\n${result.output.slice(-4000)}`);
    }
    renameSync(path.join(gobin, 'temporal'), binary);
    writeFileSync(stampOf(binary), `${TEMPORAL_CLI_VERSION}\n`);
    rmSync(gobin, { recursive: true, force: true });
    if (!(await isUsableTemporalCli(binary))) throw new Error(`built ${binary} but it does not report ${TEMPORAL_CLI_VERSION}`);
    log(`[temporal] built ${binary} in ${Math.round((Date.now() - started) / 1000)}s`);
    return binary;
  } finally {
    release();
  }
}
