import { readdirSync, readFileSync, readlinkSync, realpathSync } from 'node:fs';
import { isIP } from 'node:net';
import os from 'node:os';
import path from 'node:path';

/**
 * Who listens on a TCP port, read from Linux's /proc: the LISTEN sockets of the port in
 * /proc/net/tcp and /proc/net/tcp6 (the worker's network namespace), the processes holding
 * their inodes (/proc/<pid>/fd links "socket:[<inode>]"), and those processes' parents, working
 * directory and command line. Used to prove that the runtime dg-upgrade spawned is the one
 * answering on the app's port (docs/decisions.md, "Started means ours answers").
 *
 * The parsing is pure (exported for the unit tests); the rest reads /proc and never throws:
 * whatever cannot be read (another user's process, a process gone meanwhile) is left out.
 */

export interface ListenSocket {
  /** The local address as text: '127.0.0.1', '0.0.0.0', '::', '::1', '::ffff:127.0.0.1'. */
  address: string;
  port: number;
  inode: number;
}

const TCP_LISTEN = '0A';
const TCP_ESTABLISHED = '01';

/**
 * Decodes a /proc/net/tcp{,6} address ("0100007F:1F90"). The kernel prints the address as
 * 32-bit words in host byte order (%08X each), so on a little-endian host each group of 8 hex
 * digits has its bytes reversed; the port is printed big-endian as a plain number.
 */
export function decodeProcAddress(text: string, endianness: 'LE' | 'BE' = os.endianness()): { address: string; port: number } | undefined {
  const m = /^([0-9A-Fa-f]{8}|[0-9A-Fa-f]{32}):([0-9A-Fa-f]{4})$/.exec(text.trim());
  if (!m) return undefined;
  const bytes: number[] = [];
  for (let i = 0; i < m[1]!.length; i += 8) {
    const word = [0, 2, 4, 6].map((j) => parseInt(m[1]!.slice(i + j, i + j + 2), 16));
    bytes.push(...(endianness === 'LE' ? word.reverse() : word));
  }
  const port = parseInt(m[2]!, 16);
  if (bytes.length === 4) return { address: bytes.join('.'), port };
  // IPv4-mapped (::ffff:a.b.c.d) is shown in its usual mixed form.
  if (bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) {
    return { address: `::ffff:${bytes.slice(12).join('.')}`, port };
  }
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return { address: compressIpv6(groups), port };
}

/** RFC 5952 text: the longest run (2 or more) of zero groups becomes "::". */
function compressIpv6(groups: string[]): string {
  let best = { start: -1, len: 0 };
  for (let i = 0; i < groups.length; ) {
    if (groups[i] !== '0') { i++; continue; }
    let j = i;
    while (j < groups.length && groups[j] === '0') j++;
    if (j - i > best.len) best = { start: i, len: j - i };
    i = j;
  }
  if (best.len < 2) return groups.join(':');
  return `${groups.slice(0, best.start).join(':')}::${groups.slice(best.start + best.len).join(':')}`;
}

export interface TcpSocket {
  address: string;
  port: number;
  /** The kernel's state code: '0A' LISTEN, '01' ESTABLISHED. */
  state: string;
  inode: number;
}

/** Every socket in the text of /proc/net/tcp or /proc/net/tcp6 (header line skipped). */
export function parseTcpSockets(text: string, endianness: 'LE' | 'BE' = os.endianness()): TcpSocket[] {
  const found: TcpSocket[] = [];
  for (const line of text.split('\n')) {
    // sl local_address rem_address st tx:rx tr:tm retrnsmt uid timeout inode ...
    const cols = line.trim().split(/\s+/);
    if (cols.length < 10 || !/^\d+:$/.test(cols[0]!)) continue;
    const local = decodeProcAddress(cols[1]!, endianness);
    const inode = Number(cols[9]);
    if (!local || !Number.isInteger(inode) || inode <= 0) continue;
    found.push({ ...local, state: cols[3]!, inode });
  }
  return found;
}

/** The LISTEN sockets on `port` in the text of /proc/net/tcp or /proc/net/tcp6 (header line skipped). */
export function parseListenSockets(text: string, port: number, endianness: 'LE' | 'BE' = os.endianness()): ListenSocket[] {
  return parseTcpSockets(text, endianness)
    .filter((s) => s.state === TCP_LISTEN && s.port === port)
    .map(({ address, port: p, inode }) => ({ address, port: p, inode }));
}

/** The worker's network namespace's TCP sockets, IPv4 and IPv6. */
export function tcpSockets(): TcpSocket[] {
  const sockets: TcpSocket[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    try {
      sockets.push(...parseTcpSockets(readFileSync(file, 'utf8')));
    } catch {
      continue; // no IPv6
    }
  }
  return sockets;
}

/**
 * Whether a socket listening on `address` takes connections made to `host`: the wildcard
 * addresses take every one, an exact (or IPv4-mapped) address its own. A host that is a name,
 * not an IP literal, cannot be compared without resolving it: every listener counts then.
 */
export function listenerServesHost(address: string, host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '');
  if (!isIP(bare)) return true;
  if (address === '0.0.0.0' || address === '::') return true;
  const plain = (a: string) => a.toLowerCase().replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, '$1');
  return plain(address) === plain(bare);
}

/** The parent pid from the text of /proc/<pid>/status ("PPid:\t1234"). */
export function parsePpid(status: string): number | undefined {
  const m = /^PPid:\s*(\d+)\s*$/m.exec(status);
  return m ? Number(m[1]) : undefined;
}

/** The inode of an fd link's target "socket:[12345]". */
export function socketInodeOfLink(link: string): number | undefined {
  const m = /^socket:\[(\d+)\]$/.exec(link);
  return m ? Number(m[1]) : undefined;
}

/** LISTEN sockets on the port that take connections to `host`, as the worker's network namespace sees them. */
export function listenSocketsOn(port: number, host: string): ListenSocket[] {
  return tcpSockets()
    .filter((s) => s.state === TCP_LISTEN && s.port === port && listenerServesHost(s.address, host))
    .map(({ address, port: p, inode }) => ({ address, port: p, inode }));
}

function numericDirs(dir: string): number[] {
  try {
    return readdirSync(dir).filter((e) => /^\d+$/.test(e)).map(Number);
  } catch {
    return [];
  }
}

/** The socket inodes a process holds open (empty when its fds cannot be read). */
export function socketInodesOf(pid: number): number[] {
  const inodes: number[] = [];
  for (const fd of numericDirs(`/proc/${pid}/fd`)) {
    let link: string;
    try {
      link = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue;
    }
    const inode = socketInodeOfLink(link);
    if (inode !== undefined) inodes.push(inode);
  }
  return inodes;
}

/** Pids holding one of the socket inodes open (as far as the worker may read their fds). */
export function pidsHoldingSockets(inodes: Iterable<number>): Map<number, number[]> {
  const wanted = new Set(inodes);
  const holders = new Map<number, number[]>();
  if (wanted.size === 0) return holders;
  for (const pid of numericDirs('/proc')) {
    for (const inode of new Set(socketInodesOf(pid))) {
      if (!wanted.has(inode)) continue;
      holders.set(inode, [...(holders.get(inode) ?? []), pid]);
    }
  }
  return holders;
}

export interface ProcStat {
  /** R, S, D, Z, X, ... */
  state: string;
  ppid: number;
  session: number;
  /** Clock ticks since boot at the process's start: with the pid, it names one process for good. */
  startTime: string;
}

/** The fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses). */
export function parseProcStat(stat: string): ProcStat | undefined {
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  if (f.length < 20) return undefined;
  return { state: f[0]!, ppid: Number(f[1]), session: Number(f[3]), startTime: f[19]! };
}

export function procStat(pid: number): ProcStat | undefined {
  try {
    return parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
}

/**
 * Local TCP ports of the app's connections: the sockets of the processes that listen on the
 * app's port (their session, unless it is this worker's own, else them and their descendants).
 * `listening: false`: nothing listens there (the app is down: every session is another client's).
 * `ports: undefined`: something listens but its processes cannot be read from here.
 */
export function appClientPorts(appPort: number): { listening: boolean; ports?: Set<number> } {
  const sockets = tcpSockets();
  const listenInodes = new Set(sockets.filter((s) => s.state === TCP_LISTEN && s.port === appPort).map((s) => s.inode));
  if (listenInodes.size === 0) return { listening: false };
  const pids = numericDirs('/proc');
  const inodesByPid = new Map(pids.map((p) => [p, socketInodesOf(p)]));
  const listeners = pids.filter((p) => inodesByPid.get(p)!.some((i) => listenInodes.has(i)));
  if (listeners.length === 0) return { listening: true };
  const stats = new Map(pids.map((p) => [p, procStat(p)]));
  const ownSession = procStat(process.pid)?.session;
  const sessions = new Set(listeners.map((p) => stats.get(p)?.session).filter((s): s is number => !!s && s !== ownSession));
  const app = new Set(listeners);
  if (sessions.size) for (const p of pids) if (sessions.has(stats.get(p)?.session ?? -1)) app.add(p);
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of pids) if (!app.has(p) && app.has(stats.get(p)?.ppid ?? -1)) (app.add(p), (grew = true));
  }
  const appInodes = new Set([...app].flatMap((p) => inodesByPid.get(p) ?? []));
  return { listening: true, ports: new Set(sockets.filter((s) => s.state === TCP_ESTABLISHED && appInodes.has(s.inode)).map((s) => s.port)) };
}

export function parentPid(pid: number): number | undefined {
  try {
    return parsePpid(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return undefined;
  }
}

/** `pid` is `ancestor` or one of its descendants (walking PPid up to init). */
export function isInTreeOf(pid: number, ancestor: number): boolean {
  const seen = new Set<number>();
  for (let p: number | undefined = pid; p !== undefined && p > 0 && !seen.has(p); p = parentPid(p)) {
    if (p === ancestor) return true;
    seen.add(p);
  }
  return false;
}

export interface ProcessFacts {
  pid: number;
  /** The command line, arguments joined by spaces ('' when unreadable or a kernel thread). */
  cmdline: string;
  args: string[];
  /** The working directory, resolved by the kernel (undefined when not readable). */
  cwd?: string;
}

export function processFacts(pid: number): ProcessFacts {
  let args: string[] = [];
  let cwd: string | undefined;
  try {
    args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a, i, all) => a !== '' || i < all.length - 1);
  } catch { /* gone or not ours */ }
  try {
    cwd = readlinkSync(`/proc/${pid}/cwd`);
  } catch { /* another user's */ }
  return { pid, cmdline: args.join(' '), args, cwd };
}

/** `p` is `root` or below it (plain path comparison; both absolute). */
export function isInside(p: string, root: string): boolean {
  const rel = path.relative(root, p);
  return rel === '' || (rel.split(path.sep)[0] !== '..' && !path.isAbsolute(rel));
}

/** `root` as given, and with its symlinks resolved (when it exists). */
export function rootForms(root: string): string[] {
  const forms = [path.resolve(root)];
  try {
    const real = realpathSync(root);
    if (!forms.includes(real)) forms.push(real);
  } catch { /* not there */ }
  return forms;
}

/**
 * Where the process runs from, if that is inside one of `roots`: its working directory, or an
 * absolute path among its arguments (a BEAM release's `-root`, `-boot`, `-boot_var RELEASE_LIB`
 * arguments name the release root; `--flag=/path` counts too). Undefined when neither is.
 */
export function runsFrom(facts: Pick<ProcessFacts, 'cwd' | 'args'>, roots: string[]): string | undefined {
  if (facts.cwd && roots.some((r) => isInside(facts.cwd!, r))) return `its working directory ${facts.cwd}`;
  for (const raw of facts.args) {
    const arg = raw.includes('=') && !raw.startsWith('/') ? raw.slice(raw.indexOf('=') + 1) : raw;
    if (!path.isAbsolute(arg)) continue;
    const forms = [path.normalize(arg)];
    try {
      forms.push(realpathSync(arg));
    } catch { /* a boot script name without its extension, or gone */ }
    if (forms.some((f) => roots.some((r) => isInside(f, r)))) return `its command-line argument ${raw}`;
  }
  return undefined;
}
