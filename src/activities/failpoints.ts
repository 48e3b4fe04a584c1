import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { keepAlive, sleep } from './heartbeat.js';

/**
 * Test-only crash points. With DG_UPGRADE_FAILPOINTS="backup.afterDump,startRuntime.afterSpawn#2"
 * the worker writes a marker file named after the point into DG_UPGRADE_FAILPOINT_DIR when it
 * reaches the point (the n-th time, with #n) and then hangs there, so that a test can SIGKILL
 * it at exactly that place. A ":mark" suffix only writes the marker and goes on; ":hold" writes
 * the marker and waits, heartbeating, until the test writes `<name>.release` next to it (a run
 * held at a point while the test changes the world, then let go); ":delay=<ms>" makes every hit
 * of the point that much slower (a slow step, not a crash). Unset in production: then this is a
 * no-op.
 */
const hits = new Map<string, number>();

export async function failpoint(name: string): Promise<void> {
  const spec = process.env.DG_UPGRADE_FAILPOINTS;
  if (!spec) return;
  for (const raw of spec.split(',')) {
    const slow = /^([\w.]+):delay=(\d+)$/.exec(raw.trim());
    if (slow && slow[1] === name) {
      await new Promise((resolve) => setTimeout(resolve, Number(slow[2])));
      continue;
    }
    const m = /^([\w.]+)(?:#(\d+))?(:mark|:hold)?$/.exec(raw.trim());
    if (!m || m[1] !== name) continue;
    const count = (hits.get(name) ?? 0) + 1;
    hits.set(name, count);
    if (count !== Number(m[2] ?? 1)) return;
    const marker = path.join(process.env.DG_UPGRADE_FAILPOINT_DIR ?? '/tmp', name);
    writeFileSync(marker, `${process.pid}\n`);
    if (m[3] === ':mark') return;
    if (m[3] === ':hold') {
      await keepAlive(`held at failpoint ${name}`, async () => {
        while (!existsSync(`${marker}.release`)) await sleep(100);
      });
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 600_000));
  }
}
