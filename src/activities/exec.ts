import { appendFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { CancelledFailure } from '@temporalio/common';
import { execa } from 'execa';
import { redactSecrets } from '../config/secrets.js';
import { cancellationSignal, heartbeat } from './heartbeat.js';

export interface CommandOptions {
  cwd: string;
  env?: Record<string, string>;
  /** Output is appended here (full, redacted) for operators. */
  logFile?: string;
  /** Values to scrub from the output and from error messages. */
  secrets?: string[];
  timeoutMs?: number;
}

export class CommandFailed extends Error {
  override name = 'CommandFailed';
  constructor(message: string, readonly exitCode: number | undefined, readonly outputTail: string) {
    super(message);
  }
}

/**
 * Runs a command to completion, heartbeating every few seconds with the last output line
 * (so a dead worker is noticed and the UI shows progress), and returns its redacted output.
 */
export async function runCommand(file: string, args: string[], opts: CommandOptions): Promise<string> {
  const secrets = opts.secrets ?? [];
  const label = `${path.basename(file)} ${args.join(' ')}`;
  if (opts.logFile) {
    mkdirSync(path.dirname(opts.logFile), { recursive: true });
    appendFileSync(opts.logFile, `\n$ (cd ${opts.cwd} && ${label})  # ${new Date().toISOString()}\n`);
  }
  const child = execa(file, args, {
    cwd: opts.cwd,
    env: opts.env,
    extendEnv: true,
    all: true,
    reject: false,
    timeout: opts.timeoutMs,
    stdin: 'ignore',
    cancelSignal: cancellationSignal(),
  });
  let lastLine = '';
  child.all?.on('data', (chunk: Buffer) => {
    const text = redactSecrets(chunk.toString(), secrets);
    if (opts.logFile) appendFileSync(opts.logFile, text);
    const lines = text.split('\n').filter((l) => l.trim());
    if (lines.length) lastLine = lines[lines.length - 1]!.slice(0, 200);
  });
  const ticker = setInterval(() => heartbeat({ command: label, lastLine }), 2000);
  try {
    const result = await child;
    const output = redactSecrets(result.all ?? '', secrets);
    if (result.isCanceled) throw new CancelledFailure(`\`${label}\` stopped: the activity was cancelled`);
    if (result.failed) {
      const tail = output.split('\n').slice(-15).join('\n');
      const why = result.timedOut ? `timed out after ${opts.timeoutMs} ms` : `exited with ${result.exitCode ?? result.signal}`;
      throw new CommandFailed(`\`${label}\` ${why} in ${opts.cwd}:\n${tail}`, result.exitCode, tail);
    }
    return output;
  } finally {
    clearInterval(ticker);
  }
}
