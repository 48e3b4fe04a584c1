import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync } from 'node:fs';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { ownerOnlyDir, openOwnerOnly, tightenIfPresent } from '../config/ownerOnlyFiles.js';
import { SEARCH_ATTRIBUTE_DEFINITIONS } from '../config/searchAttributes.js';
import { ensureTemporalCli } from './temporalCli.js';

export interface DevServerOptions {
  /** Directory for the SQLite file and the server log. */
  stateDir: string;
  ip?: string;
  port?: number;
  uiPort?: number;
  namespace?: string;
  /** Seconds to wait for the frontend and the UI to answer. */
  readyTimeoutSeconds?: number;
  log?: (line: string) => void;
}

export interface DevServer {
  address: string;
  uiUrl: string;
  namespace: string;
  pid: number;
  dbFile: string;
  logFile: string;
  /** Milliseconds from spawn to ready. */
  startupMs: number;
  stop(): Promise<void>;
}

async function waitFor<T>(what: string, timeoutMs: number, child: ChildProcess, attempt: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`Temporal dev server exited (${child.exitCode ?? child.signalCode}) before ${what}`);
    }
    try {
      return await attempt();
    } catch (err) {
      lastError = err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}: ${(lastError as Error)?.message ?? 'no answer'}`);
}

/**
 * Starts `temporal server start-dev` with a persistent SQLite file, the UI and the project's
 * search attributes, and resolves once both the frontend and the UI answer.
 */
export async function startDevServer(options: DevServerOptions): Promise<DevServer> {
  const ip = options.ip ?? '127.0.0.1';
  const port = options.port ?? 7233;
  const uiPort = options.uiPort ?? 8233;
  const namespace = options.namespace ?? 'default';
  const log = options.log ?? (() => {});
  const binary = await ensureTemporalCli(log);
  // The SQLite file holds every run's plan and comments: owner-only, like the log. The CLI
  // creates it (a file made beforehand, even empty and 0600, is taken as an existing database
  // without a schema and the server exits), so the server runs under umask 077: SQLite creates
  // the file and its -wal/-shm/-journal siblings 0600. Files an older dg-upgrade left 0644 are
  // tightened first (SQLite keeps an existing file's mode).
  ownerOnlyDir(options.stateDir);
  const dbFile = path.join(options.stateDir, 'temporal.db');
  const logFile = path.join(options.stateDir, 'temporal-server.log');
  for (const suffix of ['', '-wal', '-shm', '-journal']) tightenIfPresent(`${dbFile}${suffix}`);
  const args = [
    'server', 'start-dev',
    '--db-filename', dbFile,
    '--ip', ip,
    '--port', String(port),
    '--ui-port', String(uiPort),
    '--namespace', namespace,
    '--log-level', 'warn',
    ...SEARCH_ATTRIBUTE_DEFINITIONS.flatMap(({ name, type }) => ['--search-attribute', `${name}=${type}`]),
  ];
  const started = Date.now();
  const out = openOwnerOnly(logFile, 'a');
  // Own process group, so stop() takes down everything the CLI started. The shell execs the CLI
  // (same pid) after setting the umask for it alone.
  const child = spawn('/bin/sh', ['-c', 'umask 077 && exec "$0" "$@"', binary, ...args], { detached: true, stdio: ['ignore', out, out] });
  closeSync(out);
  const address = `${ip}:${port}`;
  const uiUrl = `http://${ip}:${uiPort}`;
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    try { process.kill(-child.pid!, 'SIGTERM'); } catch { /* already gone */ }
    const timer = setTimeout(() => { try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ } }, 10_000);
    await exited;
    clearTimeout(timer);
  };
  try {
    const timeoutMs = (options.readyTimeoutSeconds ?? 60) * 1000;
    await waitFor(`the frontend on ${address}`, timeoutMs, child, async () => {
      const connection = await Connection.connect({ address, connectTimeout: 1000 });
      try {
        await connection.workflowService.describeNamespace({ namespace });
        const attrs = await connection.operatorService.listSearchAttributes({ namespace });
        const missing = SEARCH_ATTRIBUTE_DEFINITIONS.filter(({ name }) => !(name in (attrs.customAttributes ?? {})));
        if (missing.length) throw new Error(`search attributes not registered yet: ${missing.map((m) => m.name).join(', ')}`);
      } finally {
        await connection.close();
      }
    });
    await waitFor(`the UI on ${uiUrl}`, timeoutMs, child, async () => {
      const res = await fetch(uiUrl);
      if (res.status !== 200) throw new Error(`UI answered ${res.status}`);
    });
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message} (server log: ${logFile})`);
  }
  return { address, uiUrl, namespace, pid: child.pid!, dbFile, logFile, startupMs: Date.now() - started, stop };
}
