import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

// Ports for the servers tests start come from below the kernel's ephemeral range (32768+), so
// that the random ports other processes bind meanwhile (the Temporal dev server binds several)
// cannot take them between our check and the bind. A lock file per port keeps concurrent test
// processes from picking the same one.
const RANGE = { from: 20000, to: 32000 };
const LOCK_DIR = path.join(os.tmpdir(), 'dgu-test-ports');

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

function claim(port: number): boolean {
  mkdirSync(LOCK_DIR, { recursive: true });
  const file = path.join(LOCK_DIR, String(port));
  try {
    const fd = openSync(file, 'wx');
    writeSync(fd, String(process.pid));
    closeSync(fd);
    return true;
  } catch {
    try {
      process.kill(Number(readFileSync(file, 'utf8')), 0);
      return false; // held by a live test process
    } catch {
      rmSync(file, { force: true }); // stale
      return false;
    }
  }
}

/** A free TCP port on 127.0.0.1, reserved for this process. */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = RANGE.from + Math.floor(Math.random() * (RANGE.to - RANGE.from));
    if (claim(port) && (await canBind(port))) return port;
  }
  throw new Error(`no free port found in ${RANGE.from}-${RANGE.to}`);
}
