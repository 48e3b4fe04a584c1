import { spawn } from 'node:child_process';
import { closeSync, existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import { heartbeat, sleep } from './heartbeat.js';
import { durationMs, runDirOf, type ResolvedDeployment } from '../config/profile.js';
import { ownerOnlyDir, openOwnerOnly } from '../config/ownerOnlyFiles.js';
import { redactSecrets } from '../config/secrets.js';
import { writePrivateFile } from '../database/postgres.js';
import { deploymentOf, runtimeEnv, secretValues } from './deployment.js';
import { runCommand } from './exec.js';
import { failpoint } from './failpoints.js';
import { beamDirOf, currentDirOf, currentLinkOf, otpReleaseBinOf, otpReleaseDirOf } from './layout.js';
import { isInTreeOf, listenSocketsOn, pidsHoldingSockets, processFacts, procStat, rootForms, runsFrom, type ProcessFacts } from './listeners.js';

/** What the process adapter records about the runtime it started. */
interface RuntimeRecord {
  pid: number;
  /**
   * The kernel's start time of the process (field 22 of /proc/<pid>/stat, clock ticks since
   * boot), read right after the fork. pid + start time names one process for ever: a reused pid
   * has another start time. Unlike the environment, it is set at fork, so it cannot be read
   * half-written while the child is still exec'ing.
   */
  procStart?: string;
  dir: string;
  startedAt: string;
  logFile: string;
}

export interface RuntimeProbe {
  /** A dg-upgrade-started process (process adapter) or the status command (command adapter) says running. */
  running: boolean;
  pid?: number;
  dir?: string;
  /** Something answers /api/healthz on the deployment's port. */
  answering: boolean;
  healthStatus?: number;
  version?: string;
  /** After a start: how dg-upgrade proved that the runtime it started answers (docs/decisions.md, "Started means ours answers"). */
  servedBy?: string;
}

const MARKER = 'DG_UPGRADE_RUNTIME';

function pidfileOf(d: ResolvedDeployment): string {
  return path.join(runDirOf(d), 'runtime.json');
}

function readRecord(d: ResolvedDeployment): RuntimeRecord | undefined {
  try {
    return JSON.parse(readFileSync(pidfileOf(d), 'utf8')) as RuntimeRecord;
  } catch {
    return undefined;
  }
}

/** Alive (not a zombie) and really the process dg-upgrade started: the pid may have been reused since. */
function isOurProcess(d: ResolvedDeployment, record: RuntimeRecord): boolean {
  const stat = procStat(record.pid);
  if (!stat || stat.state === 'Z' || stat.state === 'X') return false;
  if (record.procStart !== undefined) return stat.startTime === record.procStart;
  // A record written by an older dg-upgrade: fall back to the environment marker.
  try {
    return readFileSync(`/proc/${record.pid}/environ`, 'utf8').split('\0').includes(`${MARKER}=${d.name}`);
  } catch {
    return false;
  }
}

function logTail(d: ResolvedDeployment, file: string, lines = 12): string {
  try {
    return redactSecrets(readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n'), secretValues(d));
  } catch {
    return '(no log)';
  }
}

export function baseUrlOf(d: ResolvedDeployment): string {
  return `http://${d.profile.host}:${d.profile.port}`;
}

async function healthz(d: ResolvedDeployment): Promise<{ status: number; body: any } | undefined> {
  try {
    const res = await fetch(`${baseUrlOf(d)}/api/healthz`, { signal: AbortSignal.timeout(2000) });
    const text = await res.text();
    let body: unknown;
    try { body = JSON.parse(text); } catch { body = undefined; }
    return { status: res.status, body };
  } catch {
    return undefined;
  }
}

/**
 * Where and with what the command adapter's status and stop run: like start, in the serving
 * version's beam dir with the runtime's environment. A real `bin/<release> stop` reaches the node
 * through distribution and needs the node name and cookie it was started with.
 */
function commandContext(d: ResolvedDeployment) {
  return { cwd: beamDirOf(d, currentDirOf(d)), env: { ...runtimeEnv(d), [MARKER]: d.name }, secrets: secretValues(d) };
}

async function commandSaysRunning(d: ResolvedDeployment): Promise<boolean> {
  const rt = d.profile.runtime;
  if (rt.adapter !== 'command') return false;
  try {
    await runCommand(rt.status[0]!, rt.status.slice(1), commandContext(d));
    return true;
  } catch {
    return false;
  }
}

export async function probeRuntime(deployment: string): Promise<RuntimeProbe> {
  const d = deploymentOf(deployment);
  const health = await healthz(d);
  const base = { answering: health !== undefined, healthStatus: health?.status, version: health?.body?.version as string | undefined };
  if (d.profile.runtime.adapter === 'command') return { running: await commandSaysRunning(d), ...base };
  const record = readRecord(d);
  const running = record !== undefined && isOurProcess(d, record);
  return { running, pid: running ? record!.pid : undefined, dir: running ? record!.dir : undefined, ...base };
}

/** Whether anything answers /api/healthz on the deployment's port (no status command run). */
export async function runtimeAnswers(deployment: string): Promise<boolean> {
  return (await healthz(deploymentOf(deployment))) !== undefined;
}

/** A process as named in a failure: pid, command line (secrets redacted, cut at 300 chars), cwd. */
function describeProcess(d: ResolvedDeployment, f: ProcessFacts): string {
  let cmd = redactSecrets(f.cmdline || '(command line not readable)', secretValues(d));
  if (cmd.length > 300) cmd = `${cmd.slice(0, 300)}…`;
  return `pid ${f.pid} (\`${cmd}\`${f.cwd ? `, cwd ${f.cwd}` : ''})`;
}

/** Where the runtime deployed from `dir` runs: the release root (release model) or the version's beam dir, also as reached through the `current` link. */
function deployedRootsOf(d: ResolvedDeployment, dir: string): string[] {
  const rootIn = (version: string) => (d.profile.model === 'release' ? otpReleaseDirOf(d, version) : beamDirOf(d, version));
  const roots = rootForms(rootIn(dir));
  if (d.profile.layout === 'releases' && currentDirOf(d) === path.resolve(dir)) roots.push(rootIn(currentLinkOf(d)));
  return [...new Set(roots)];
}

type Identity =
  | { ok: true; servedBy: string }
  | { ok: false; problem: string; foreign: ProcessFacts[] };

/**
 * Proves that the runtime dg-upgrade started from `dir` is what listens on the app's port (the
 * rule "Started means ours answers", docs/decisions.md): every LISTEN socket on the port (that
 * takes connections to the profile's host) is held by the spawned process or a descendant of it
 * (process adapter), and that process runs from the deployed version's dir (its cwd or a path
 * among its arguments). The command adapter's start daemonizes (the server is re-parented), so
 * there a listener running from inside the deployed release root is accepted.
 */
function proveIdentity(d: ResolvedDeployment, dir: string, record: RuntimeRecord | undefined): Identity {
  const port = d.profile.port;
  const sockets = listenSocketsOn(port, d.profile.host);
  if (sockets.length === 0) {
    return {
      ok: false,
      foreign: [],
      problem: `something answers ${baseUrlOf(d)}, but no socket listening on port ${port} is visible in this worker's /proc/net/tcp or tcp6: the app runs in another network namespace (a container?) than the worker, so which process answers cannot be proven; run the worker in the app's network namespace`,
    };
  }
  const holders = pidsHoldingSockets(sockets.map((s) => s.inode));
  const roots = deployedRootsOf(d, dir);
  const ours = d.profile.runtime.adapter === 'process' && record !== undefined && isOurProcess(d, record) ? record : undefined;
  const proofs: string[] = [];
  for (const socket of sockets) {
    const where = `${socket.address.includes(':') ? `[${socket.address}]` : socket.address}:${port}`;
    const facts = (holders.get(socket.inode) ?? []).map(processFacts);
    if (facts.length === 0) {
      return {
        ok: false,
        foreign: [],
        problem: `port ${port} is held by a socket (${where}, inode ${socket.inode}) whose process this worker cannot see (another user's process: its /proc/<pid>/fd is not readable), so it cannot be proven to be the runtime dg-upgrade started; run the worker as the app's user (or root)`,
      };
    }
    if (d.profile.runtime.adapter === 'process') {
      const inTree = ours ? facts.filter((f) => isInTreeOf(f.pid, ours.pid)) : [];
      const spawned = record ? `the runtime dg-upgrade started (pid ${record.pid}${ours ? '' : ', no longer running'})` : 'the runtime dg-upgrade started (no pidfile)';
      if (inTree.length === 0) {
        return { ok: false, foreign: facts, problem: `port ${port} (${where}) is held by ${facts.map((f) => describeProcess(d, f)).join(', ')}, not by ${spawned} nor a process of its tree` };
      }
      const from = inTree.map((f) => ({ f, from: runsFrom(f, roots) })).find((x) => x.from);
      if (!from) {
        return {
          ok: false,
          foreign: [],
          problem: `port ${port} (${where}) is held by ${inTree.map((f) => describeProcess(d, f)).join(', ')} of the runtime dg-upgrade started, but it does not run from the deployed ${roots[0]} (neither its cwd nor its command line is inside it): the version deployed is not proven to serve`,
        };
      }
      proofs.push(`${where} is held by pid ${from.f.pid} (${from.f.pid === ours!.pid ? 'the spawned process' : `a descendant of the spawned pid ${ours!.pid}`}), running from ${from.from}`);
    } else {
      const from = facts.map((f) => ({ f, from: runsFrom(f, roots) })).find((x) => x.from);
      if (!from) {
        return {
          ok: false,
          foreign: facts,
          problem: `port ${port} (${where}) is held by ${facts.map((f) => describeProcess(d, f)).join(', ')}, which does not run from the deployed release ${roots[0]} (neither its cwd nor its command line is inside it): not the runtime the start command (${d.profile.runtime.start.join(' ')}) started`,
        };
      }
      proofs.push(`${where} is held by pid ${from.f.pid}, running from ${from.from}, inside the deployed ${roots[0]} (command adapter: the start command daemonizes, so the process is re-parented and its tree is not followed; the release root is the proof)`);
    }
  }
  return { ok: true, servedBy: proofs.join('; ') };
}

/** Who holds the app's port, when that is not the runtime dg-upgrade started: '' when nobody does or it cannot be told. */
function foreignHolderNote(d: ResolvedDeployment, dir: string): string {
  const port = d.profile.port;
  const sockets = listenSocketsOn(port, d.profile.host);
  if (sockets.length === 0) return '';
  const identity = proveIdentity(d, dir, readRecord(d));
  if (identity.ok || identity.foreign.length === 0) return '';
  const pids = identity.foreign.map((f) => f.pid).join(', ');
  return `; ${identity.problem}: that process took the port (dg-upgrade never stops a process it did not start); stop pid ${pids} or move it off port ${port}, then retry`;
}

/** Short polls: every poll interval spent after the state changed is downtime. */
const POLL_MS = 50;

async function waitUntil(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    heartbeat(what);
    await sleep(POLL_MS);
  }
  return check();
}

/**
 * Starts the runtime from `dir` and waits for healthz 200. The process is detached (own session,
 * output to a log file) so that it outlives the worker. Safe to repeat: an already running
 * runtime from the same dir is kept.
 */
export async function startRuntime(deployment: string, dir: string): Promise<RuntimeProbe> {
  const d = deploymentOf(deployment);
  const rt = d.profile.runtime;
  const timeoutMs = durationMs(rt.startTimeout);
  const current = await probeRuntime(deployment);
  if (current.running && rt.adapter === 'process' && current.dir !== dir) {
    throw ApplicationFailure.nonRetryable(`a runtime from ${current.dir} (pid ${current.pid}) is still running; stop it before starting ${dir}`);
  }
  // Set when this attempt spawned the process: its exit is then known at once, not by polling.
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  let exitEvent: Promise<void> | undefined;
  if (!current.running) {
    if (current.answering) {
      throw ApplicationFailure.nonRetryable(
        `port ${d.profile.port} is already answering but not by a runtime dg-upgrade started${holdersOf(d)}; stop that process first`,
      );
    }
    const env = { ...process.env, ...runtimeEnv(d), [MARKER]: d.name };
    if (rt.adapter === 'process') {
      const runDir = runDirOf(d);
      // The pidfile and the app's log are its owner's only (0600, the dir 0700, tightened if an
      // older dg-upgrade left them open): the log quotes the app's output.
      ownerOnlyDir(runDir, d.stateDir);
      const logFile = path.join(runDir, 'runtime.log');
      const out = openOwnerOnly(logFile, 'a');
      // Source model: `mix phx.server` from the checkout; release model: the release in the foreground.
      const [command, args, cwd] =
        d.profile.model === 'release'
          ? [otpReleaseBinOf(d, dir), ['start'], otpReleaseDirOf(d, dir)]
          : [d.profile.toolchain.mix, ['phx.server'], beamDirOf(d, dir)];
      const child = spawn(command, args, { cwd, env, detached: true, stdio: ['ignore', out, out] });
      closeSync(out);
      const pid = await new Promise<number>((resolve, reject) => {
        child.once('spawn', () => resolve(child.pid!));
        child.once('error', reject);
      });
      exitEvent = new Promise((resolve) => child.once('exit', (code, signal) => resolve(void (exited = { code, signal }))));
      child.unref();
      // The pidfile is written only after the spawn succeeded, with the identity read from the
      // kernel (start time), so "ours and alive" never depends on a half-exec'd process.
      const record: RuntimeRecord = { pid, procStart: procStat(pid)?.startTime, dir, startedAt: new Date().toISOString(), logFile };
      writePrivateFile(`${pidfileOf(d)}.tmp`, JSON.stringify(record, null, 2));
      renameSync(`${pidfileOf(d)}.tmp`, pidfileOf(d));
      await failpoint('startRuntime.afterSpawn');
    } else {
      await runCommand(rt.start[0]!, rt.start.slice(1), { cwd: beamDirOf(d, dir), env: { ...runtimeEnv(d), [MARKER]: d.name }, secrets: secretValues(d) });
      await failpoint('startRuntime.afterStart');
    }
  }
  const exitedDuringStart = async () => {
    // The kernel may show the process gone a moment before node reports its exit status.
    if (exitEvent) await Promise.race([exitEvent, sleep(1000)]);
    const how = !exited ? 'exited' : exited.signal ? `was killed by ${exited.signal}` : `exited with code ${exited.code}`;
    const logFile = path.join(runDirOf(d), 'runtime.log');
    return ApplicationFailure.nonRetryable(`the runtime ${how} during start${foreignHolderNote(d, dir)}; last lines of ${logFile}:\n${logTail(d, logFile)}`);
  };
  // "Started" means the runtime dg-upgrade started answers, proven (docs/decisions.md): any 200
  // is not enough, a stranger may hold the port. Unproven, the runtime started is stopped (never
  // the stranger) and the start fails for good.
  let servedBy: string | undefined;
  const proven = async (): Promise<true> => {
    const identity = proveIdentity(d, dir, readRecord(d));
    if (identity.ok) {
      servedBy = identity.servedBy;
      return true;
    }
    const stopped = await stopStartedRuntime(d);
    const left = identity.foreign.length ? ` and left ${identity.foreign.map((f) => `pid ${f.pid}`).join(', ')} alone (dg-upgrade never stops a process it did not start)` : '';
    const todo = identity.foreign.length
      ? `stop ${identity.foreign.map((f) => `pid ${f.pid}`).join(', ')} or move it off port ${d.profile.port}, then retry`
      : 'fix the cause named above, then retry';
    return Promise.reject(
      ApplicationFailure.nonRetryable(`the runtime started from ${dir} is not what answers ${baseUrlOf(d)}: ${identity.problem}. dg-upgrade ${stopped}${left}; ${todo}`),
    );
  };
  // A `daemon` start command returns before the runtime boots; one that never comes up is seen
  // by the status command saying "stopped" for this long after the start, not at the timeout.
  const commandGraceMs = Math.min(10_000, timeoutMs);
  const startedAt = Date.now();
  const ok = await waitUntil('waiting for /api/healthz', timeoutMs, async () => {
    if (exited) throw await exitedDuringStart();
    if (rt.adapter === 'process') {
      const probe = await probeRuntime(deployment);
      if (!probe.running) throw await exitedDuringStart();
      return probe.healthStatus === 200 && proven();
    }
    // The status command boots a BEAM of its own (about a second): it is asked only once the
    // grace period is over, and healthz alone is polled until then.
    if ((await healthz(d))?.status === 200) return proven();
    if (Date.now() - startedAt > commandGraceMs && !(await commandSaysRunning(d))) {
      throw ApplicationFailure.nonRetryable(
        `the start command (${rt.start.join(' ')}) returned, but the status command (${rt.status.join(' ')}) still says stopped ${Math.round(commandGraceMs / 1000)} s later: the runtime did not boot; see the runtime's own log (for an OTP release: tmp/log/ in the release dir)`,
      );
    }
    return false;
  });
  if (!ok) {
    const where = rt.adapter === 'process' ? `its log in ${runDirOf(d)}` : "the runtime's own log (the command adapter writes none)";
    throw ApplicationFailure.nonRetryable(`the runtime did not answer /api/healthz with 200 within ${rt.startTimeout}; see ${where}${foreignHolderNote(d, dir)}`);
  }
  const final = await probeRuntime(deployment);
  if (rt.adapter === 'process' && !final.running) throw await exitedDuringStart();
  return { ...final, servedBy };
}

/** Who answers on the port (for a refusal before anything is started): '' when it cannot be told. */
function holdersOf(d: ResolvedDeployment): string {
  const sockets = listenSocketsOn(d.profile.port, d.profile.host);
  const holders = pidsHoldingSockets(sockets.map((s) => s.inode));
  const facts = [...new Set([...holders.values()].flat())].map(processFacts);
  return facts.length ? ` (it is held by ${facts.map((f) => describeProcess(d, f)).join(', ')})` : '';
}

/**
 * Stops the runtime this start started, when it is not what answers: the process adapter signals
 * the recorded process group only (pid + start time checked; a stranger is never signalled); the
 * command adapter runs the stop command when the status command says running, without waiting for
 * the port to close (the stranger keeps it). Says what it did, for the failure message.
 */
async function stopStartedRuntime(d: ResolvedDeployment): Promise<string> {
  const rt = d.profile.runtime;
  const timeoutMs = durationMs(rt.stopTimeout);
  try {
    if (rt.adapter === 'command') {
      if (!(await commandSaysRunning(d))) return 'found the runtime it started already stopped';
      await runCommand(rt.stop[0]!, rt.stop.slice(1), commandContext(d));
      const stopped = await waitUntil('stopping the runtime that does not answer', timeoutMs, async () => !(await commandSaysRunning(d)));
      return stopped ? `stopped the runtime it started (${rt.stop.join(' ')})` : `ran the stop command (${rt.stop.join(' ')}), but the status command still says running after ${rt.stopTimeout}`;
    }
    const record = readRecord(d);
    if (!record || !isOurProcess(d, record)) {
      rmSync(pidfileOf(d), { force: true });
      return 'found the runtime it started already gone';
    }
    signalGroup(record.pid, 'SIGTERM');
    let gone = await waitUntil('stopping the runtime that does not answer', timeoutMs, async () => !isOurProcess(d, record));
    if (!gone) {
      signalGroup(record.pid, 'SIGKILL');
      gone = await waitUntil('killing the runtime that does not answer', 5000, async () => !isOurProcess(d, record));
    }
    if (gone) rmSync(pidfileOf(d), { force: true });
    return gone ? `stopped the runtime it started (pid ${record.pid})` : `could not stop the runtime it started (pid ${record.pid}, still running)`;
  } catch (err) {
    return `could not stop the runtime it started (${err instanceof Error ? err.message.split('\n')[0] : String(err)})`;
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try { process.kill(pid, signal); } catch { /* gone */ }
  }
}

/** Graceful stop (SIGTERM / stop command), forced after the profile's stop timeout. Safe when already stopped. */
export async function stopRuntime(deployment: string): Promise<{ wasRunning: boolean; forced: boolean }> {
  const d = deploymentOf(deployment);
  const rt = d.profile.runtime;
  const timeoutMs = durationMs(rt.stopTimeout);
  if (rt.adapter === 'command') {
    const wasRunning = await commandSaysRunning(d);
    if (wasRunning) await runCommand(rt.stop[0]!, rt.stop.slice(1), commandContext(d));
    const stopped = await waitUntil('waiting for the runtime to stop', timeoutMs, async () => !(await healthz(d)) && !(await commandSaysRunning(d)));
    if (!stopped) throw ApplicationFailure.nonRetryable(`the stop command ran but the runtime still runs after ${rt.stopTimeout}`);
    return { wasRunning, forced: false };
  }
  const record = readRecord(d);
  let forced = false;
  const wasRunning = record !== undefined && isOurProcess(d, record);
  if (wasRunning) {
    signalGroup(record!.pid, 'SIGTERM');
    const exited = await waitUntil('waiting for graceful stop', timeoutMs, async () => !isOurProcess(d, record!));
    if (!exited) {
      forced = true;
      signalGroup(record!.pid, 'SIGKILL');
      await waitUntil('waiting for forced stop', 5000, async () => !isOurProcess(d, record!));
    }
  }
  if (wasRunning) await failpoint('stopRuntime.afterStop');
  if (existsSync(pidfileOf(d))) rmSync(pidfileOf(d), { force: true });
  const portFree = await waitUntil('waiting for the port to close', 5000, async () => !(await healthz(d)));
  if (!portFree) {
    throw ApplicationFailure.nonRetryable(`port ${d.profile.port} still answers after the stop: a runtime dg-upgrade did not start is running there${holdersOf(d)}; stop that process (dg-upgrade never stops a process it did not start), then retry`);
  }
  return { wasRunning, forced };
}
