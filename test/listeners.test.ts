import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import {
  decodeProcAddress,
  isInside,
  isInTreeOf,
  listenerServesHost,
  listenSocketsOn,
  appClientPorts,
  parseListenSockets,
  parseProcStat,
  parsePpid,
  parseTcpSockets,
  pidsHoldingSockets,
  processFacts,
  runsFrom,
  socketInodeOfLink,
} from '../src/activities/listeners.js';

// Lines as the kernel prints them (x86-64, little-endian), header included.
const TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 93535 1 00000000b2df2be7 100 0 0 10 0
   1: 00000000:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4027 1 00000000ced9edd1 100 0 0 10 0
   2: 0100007F:1F90 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000  1000        0 77001 1 00000000d4bf1f0a 20 4 30 10 -1
   3: 0500000A:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 77002 1 00000000d66484d2 100 0 0 10 0
`;
const TCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5994 1 000000008356e93d 100 0 0 10 0
   1: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5995 1 000000007ddaffa7 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5996 1 000000007ddaffa8 100 0 0 10 0
   3: B80D0120000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5997 1 000000007ddaffa9 100 0 0 10 0
`;

test('decodes /proc/net/tcp addresses: IPv4 and IPv6 words in host byte order, port big-endian', () => {
  assert.deepEqual(decodeProcAddress('0100007F:1F90', 'LE'), { address: '127.0.0.1', port: 8080 });
  assert.deepEqual(decodeProcAddress('7F000001:1F90', 'BE'), { address: '127.0.0.1', port: 8080 });
  assert.deepEqual(decodeProcAddress('00000000:0050', 'LE'), { address: '0.0.0.0', port: 80 });
  assert.deepEqual(decodeProcAddress('00000000000000000000000001000000:1F90', 'LE'), { address: '::1', port: 8080 });
  assert.deepEqual(decodeProcAddress('00000000000000000000000000000000:1F90', 'LE'), { address: '::', port: 8080 });
  assert.deepEqual(decodeProcAddress('0000000000000000FFFF00000100007F:FFFF', 'LE'), { address: '::ffff:127.0.0.1', port: 65535 });
  assert.deepEqual(decodeProcAddress('B80D0120000000000000000001000000:0016', 'LE'), { address: '2001:db8::1', port: 22 });
  assert.equal(decodeProcAddress('0100007F', 'LE'), undefined);
  assert.equal(decodeProcAddress('zz00007F:1F90', 'LE'), undefined);
});

test('finds the LISTEN sockets of one port, with their inodes; skips the header, other states and other ports', () => {
  assert.deepEqual(parseListenSockets(TCP, 8080, 'LE'), [
    { address: '127.0.0.1', port: 8080, inode: 93535 },
    { address: '10.0.0.5', port: 8080, inode: 77002 },
  ]);
  assert.deepEqual(parseListenSockets(TCP, 8081, 'LE'), [{ address: '0.0.0.0', port: 8081, inode: 4027 }]);
  assert.deepEqual(parseListenSockets(TCP, 9999, 'LE'), []);
  assert.deepEqual(
    parseListenSockets(TCP6, 8080, 'LE').map((s) => [s.address, s.inode]),
    [['::1', 5994], ['::', 5995], ['::ffff:127.0.0.1', 5996], ['2001:db8::1', 5997]],
  );
  assert.deepEqual(parseListenSockets('', 8080, 'LE'), []);
});

test('reads every socket with its state, and the fields of /proc/<pid>/stat after a command name with spaces and parentheses', () => {
  assert.deepEqual(
    parseTcpSockets(TCP, 'LE').map((s) => [s.port, s.state, s.inode]),
    [[8080, '0A', 93535], [8081, '0A', 4027], [8080, '01', 77001], [8080, '0A', 77002]],
  );
  const stat = '4242 (my (odd) app) S 4000 4242 4100 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1000 10';
  assert.deepEqual(parseProcStat(stat), { state: 'S', ppid: 4000, session: 4100, startTime: '987654' });
  assert.equal(parseProcStat('1 (x) S 0'), undefined);
});

test("the app's client ports: the local ports of the connections held by the process tree that listens on the app's port", async () => {
  // Stands in for the database: both the "app" and this test connect to it.
  const db = net.createServer((sock) => sock.on('error', () => {}));
  db.listen(0, '127.0.0.1');
  await once(db, 'listening');
  const dbPort = (db.address() as AddressInfo).port;
  const app = spawn(process.execPath, ['-e', `
    const net = require('node:net');
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const c = net.connect(${dbPort}, '127.0.0.1', () => console.log(JSON.stringify({ port: s.address().port, client: c.localPort })));
    });`], { detached: true, stdio: ['ignore', 'pipe', 'inherit'] });
  let port = 0;
  try {
    const [line] = (await once(app.stdout!, 'data')) as [Buffer];
    const { port: appPort, client } = JSON.parse(line.toString()) as { port: number; client: number };
    port = appPort;
    const ours = net.connect(dbPort, '127.0.0.1');
    await once(ours, 'connect');
    const found = appClientPorts(port);
    assert.equal(found.listening, true);
    assert.ok(found.ports?.has(client), `the app's connection (local port ${client}) is in ${[...(found.ports ?? [])]}`);
    assert.ok(!found.ports?.has(ours.localPort!), "this process's own connection is not the app's");
    ours.destroy();
  } finally {
    const exited = once(app, 'exit');
    app.kill('SIGKILL');
    await exited;
    db.close();
  }
  assert.equal(appClientPorts(port).listening, false, 'nothing listens once the app is gone');
});

test('a listener takes connections to the host when it is the wildcard or the same (or IPv4-mapped) address', () => {
  assert.equal(listenerServesHost('127.0.0.1', '127.0.0.1'), true);
  assert.equal(listenerServesHost('0.0.0.0', '127.0.0.1'), true);
  assert.equal(listenerServesHost('::', '127.0.0.1'), true);
  assert.equal(listenerServesHost('::ffff:127.0.0.1', '127.0.0.1'), true);
  assert.equal(listenerServesHost('10.0.0.5', '127.0.0.1'), false);
  assert.equal(listenerServesHost('::1', '[::1]'), true);
  assert.equal(listenerServesHost('127.0.0.1', '::1'), false);
  assert.equal(listenerServesHost('10.0.0.5', 'app.internal'), true, 'a host name is not resolved: every listener counts');
});

test('parses PPid from /proc/<pid>/status and socket inodes from fd links', () => {
  assert.equal(parsePpid('Name:\tbeam.smp\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\nNgid:\t0\nPid:\t4242\nPPid:\t4200\nTracerPid:\t0\n'), 4200);
  assert.equal(parsePpid('Name:\tx\n'), undefined);
  assert.equal(socketInodeOfLink('socket:[93535]'), 93535);
  assert.equal(socketInodeOfLink('pipe:[93535]'), undefined);
  assert.equal(socketInodeOfLink('/dev/null'), undefined);
});

test('runs from the deployed dir: its cwd, or an absolute path among its arguments, inside the root', () => {
  const root = '/srv/dg-releases/abc/beam/_build/prod/rel/decisiongraph_beam';
  assert.equal(isInside(`${root}/releases/0.1.0/start`, root), true);
  assert.equal(isInside(root, root), true);
  assert.equal(isInside('/srv/dg-releases/abcd/beam', '/srv/dg-releases/abc'), false);
  assert.equal(isInside('/srv/dg-releases/..x', '/srv/dg-releases'), true, 'a name starting with two dots is inside');
  assert.match(runsFrom({ cwd: root, args: ['node'] }, [root]) ?? '', /working directory/);
  // A daemonized BEAM release: cwd "/" (run_erl), the root named by -root/-boot arguments.
  const beam = ['/x/erts-15/bin/beam.smp', '--', '-root', root, '-boot', `${root}/releases/0.1.0/start`, '-boot_var', 'RELEASE_LIB', `${root}/lib`];
  assert.match(runsFrom({ cwd: '/', args: beam }, [root]) ?? '', /command-line argument/);
  assert.match(runsFrom({ cwd: '/', args: ['x', `--erl-config=${root}/releases/0.1.0/sys`] }, [root]) ?? '', /--erl-config=/);
  assert.equal(runsFrom({ cwd: '/srv/dg-releases/old/beam', args: ['node', '-e', 'listen()'] }, [root]), undefined);
  assert.equal(runsFrom({ cwd: undefined, args: [] }, [root]), undefined);
});

test('the cwd is compared through symlinks: a root given through a link matches the resolved cwd', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dgu-listeners-'));
  try {
    const link = path.join(dir, 'current');
    symlinkSync(dir, link);
    // A command-line argument through the link resolves to the real dir.
    assert.ok(runsFrom({ cwd: '/', args: [path.join(link, '.')] }, [dir]));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('live /proc: the socket this process listens on is found, with this pid as its holder; a child is in its tree', async () => {
  const server = http.createServer((_req, res) => res.end('ok'));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)'], { stdio: 'ignore' });
  try {
    const { port } = server.address() as AddressInfo;
    const sockets = listenSocketsOn(port, '127.0.0.1');
    assert.equal(sockets.length, 1, JSON.stringify(sockets));
    assert.equal(sockets[0]!.address, '127.0.0.1');
    const holders = pidsHoldingSockets(sockets.map((s) => s.inode));
    assert.deepEqual(holders.get(sockets[0]!.inode), [process.pid]);
    assert.deepEqual(listenSocketsOn(port, '10.1.2.3'), [], 'a listener on 127.0.0.1 does not take connections to another address');
    const facts = processFacts(process.pid);
    assert.equal(facts.cwd, process.cwd());
    assert.equal(facts.args[0], process.execPath);
    await once(child, 'spawn');
    assert.equal(isInTreeOf(child.pid!, process.pid), true);
    assert.equal(isInTreeOf(child.pid!, child.pid!), true);
    assert.equal(isInTreeOf(process.pid, child.pid!), false);
  } finally {
    child.kill('SIGKILL');
    server.close();
  }
});
