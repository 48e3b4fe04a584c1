import { appendFileSync, closeSync, readFileSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { CancelledFailure } from '@temporalio/common';
import { execa } from 'execa';
import { ownerOnlyDir, openOwnerOnly } from '../config/ownerOnlyFiles.js';
import { redactSecrets } from '../config/secrets.js';
import { cancellationSignal, heartbeat } from './heartbeat.js';

export interface CommandOptions {
  cwd: string;
  env?: Record<string, string>;
  /** Output is appended here (full, redacted) for operators; the file is owner-only (0600, its dir 0700). */
  logFile?: string;
  /** Values to scrub from the output and from error messages. */
  secrets?: string[];
  timeoutMs?: number;
  /**
   * At most one such command runs at a time: its pid is kept in `<pidDir>/<key>.pid`, and a
   * leftover from a crashed worker (it outlives the worker) is killed with its process group
   * before this one starts, so a retried step never races its own orphan.
   */
  exclusive?: { key: string; pidDir: string };
}

const COMMAND_MARKER = 'DG_UPGRADE_COMMAND';

async function killLeftover(pidFile: string, key: string): Promise<void> {
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile, 'utf8').trim());
  } catch {
    return;
  }
  try {
    const environ = readFileSync(`/proc/${pid}/environ`, 'utf8');
    if (!environ.split('\0').includes(`${COMMAND_MARKER}=${key}`)) return;
  } catch {
    return; // not running any more
  }
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    /* gone */
  }
  for (let i = 0; i < 50; i++) {
    try {
      process.kill(pid, 0);
      await new Promise((r) => setTimeout(r, 100));
    } catch {
      return;
    }
  }
}

function writeOwnerOnly(file: string, flags: 'a' | 'w', text: string): void {
  const fd = openOwnerOnly(file, flags);
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
}

export class CommandFailed extends Error {
  override name = 'CommandFailed';
  constructor(message: string, readonly exitCode: number | undefined, readonly outputTail: string) {
    super(message);
  }
}

/** Why a command could not start, e.g. "ELOOP: too many symbolic links encountered, stat '/srv/repo'". */
function startFailure(message: string, cwd: string): string {
  const line = message.split('\n').map((l) => l.trim()).find((l) => /^E[A-Z]+:/.test(l));
  return line ?? `working directory ${cwd}: ${message.split('\n')[0]}`;
}

/**
 * Runs a command to completion, heartbeating every few seconds with the last output line
 * (so a dead worker is noticed and the UI shows progress), and returns its redacted output.
 */
export async function runCommand(file: string, args: string[], opts: CommandOptions): Promise<string> {
  const secrets = opts.secrets ?? [];
  const label = `${path.basename(file)} ${args.join(' ')}`;
  if (opts.logFile) {
    ownerOnlyDir(path.dirname(opts.logFile));
    writeOwnerOnly(opts.logFile, 'a', `\n$ (cd ${opts.cwd} && ${label})  # ${new Date().toISOString()}\n`);
  }
  let pidFile: string | undefined;
  if (opts.exclusive) {
    ownerOnlyDir(opts.exclusive.pidDir);
    pidFile = path.join(opts.exclusive.pidDir, `${opts.exclusive.key}.pid`);
    await killLeftover(pidFile, opts.exclusive.key);
  }
  const child = execa(file, args, {
    cwd: opts.cwd,
    env: opts.exclusive ? { ...opts.env, [COMMAND_MARKER]: opts.exclusive.key } : opts.env,
    detached: opts.exclusive !== undefined,
    extendEnv: true,
    all: true,
    reject: false,
    timeout: opts.timeoutMs,
    stdin: 'ignore',
    cancelSignal: cancellationSignal(),
  });
  if (pidFile && child.pid) writeOwnerOnly(pidFile, 'w', `${child.pid}\n`);
  let lastLine = '';
  child.all?.on('data', (chunk: Buffer) => {
    const text = redactSecrets(chunk.toString(), secrets);
    if (opts.logFile) appendFileSync(opts.logFile, text, { mode: 0o600 });
    const lines = text.split('\n').filter((l) => l.trim());
    if (lines.length) lastLine = lines[lines.length - 1]!.slice(0, 200);
  });
  const ticker = setInterval(() => heartbeat({ command: label, lastLine }), 1000);
  try {
    const result = await child;
    const output = redactSecrets(result.all ?? '', secrets);
    if (result.isCanceled) throw new CancelledFailure(`\`${label}\` stopped: the activity was cancelled`);
    if (result.failed) {
      const tail = output.split('\n').slice(-15).join('\n');
      // No exit code and no signal: the command never started (its working directory is a
      // symlink loop, missing or not a directory; the program is missing): say the errno and the path.
      const notStarted = result.exitCode === undefined && !result.signal;
      const errno = (result as { code?: string }).code;
      const why = result.timedOut
        ? `timed out after ${opts.timeoutMs} ms`
        : notStarted
          ? `could not be started: ${errno ?? 'unknown error'} (${startFailure(result.originalMessage ?? result.message ?? "", opts.cwd)})`
          : `exited with ${result.exitCode ?? result.signal}`;
      throw new CommandFailed(`\`${label}\` ${why} in ${opts.cwd}:\n${tail}`, result.exitCode, tail);
    }
    return output;
  } finally {
    clearInterval(ticker);
    if (pidFile) rmSync(pidFile, { force: true });
  }
}
