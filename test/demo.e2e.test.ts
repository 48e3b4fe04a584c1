import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { databaseUrlFor, dropDatabasesWithPrefix } from './support/postgres.js';
import { PROJECT_ROOT } from './support/e2e.js';
import { freePort } from './support/ports.js';
import { assertConfirmedWritesAccountedFor, describeTraffic, startTraffic, type Traffic } from './support/traffic.js';

/** Processes whose command line or working directory mentions `marker`. */
function processesMentioning(marker: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      const environ = readFileSync(`/proc/${pid}/environ`, 'utf8');
      if (cmdline.includes(marker) || environ.includes(marker)) found.push(`${pid}: ${cmdline}`);
    } catch {
      /* exited meanwhile */
    }
  }
  return found;
}

test('the demo upgrades the sample target under 50 writes/s, serves the UI and the app, and Ctrl-C stops everything it started', async (t) => {
  const stateDir = mkdtempSync(path.join(os.tmpdir(), 'dgu-demo-'));
  const database = `dgu_demo_${Date.now().toString(36)}`;
  const [temporalPort, uiPort, appPort] = [await freePort(), await freePort(), await freePort()];
  const child = spawn(process.execPath, [path.join(PROJECT_ROOT, 'dist/src/demo/main.js')], {
    env: { ...process.env, DG_UPGRADE_STATE_DIR: stateDir, DG_DEMO_TEMPORAL_PORT: String(temporalPort), DG_DEMO_UI_PORT: String(uiPort), DG_DEMO_APP_PORT: String(appPort), DG_DEMO_DATABASE: database },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (c) => (output += c));
  child.stderr.on('data', (c) => (output += c));
  // Writes through the app's API from the moment v0.1.0 serves, as an install in use would get them.
  let traffic: Traffic | undefined;
  const tokenFile = path.join(stateDir, 'demo', 'secrets', 'admin-token');
  child.stdout.on('data', () => {
    if (traffic || !output.includes('v0.1.0 serves on') || !existsSync(tokenFile)) return;
    traffic = startTraffic({ port: appPort, databaseUrl: databaseUrlFor(database), secrets: { adminToken: readFileSync(tokenFile, 'utf8').trim() } }, { rate: 50 });
  });
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`demo did not finish its upgrade in 180 s:\n${output}`)), 180_000);
      const check = () => {
        if (output.includes('press Ctrl-C')) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout.on('data', check);
      child.once('exit', (code) => reject(new Error(`demo exited early (${code}):\n${output}`)));
    });
    assert.match(output, /demo: upgrade succeeded/);
    assert.match(output, new RegExp(`Temporal UI: +http://127\\.0\\.0\\.1:${uiPort}/namespaces/default/workflows/dg-upgrade-sample`));
    const ui = await fetch(`http://127.0.0.1:${uiPort}/`);
    assert.equal(ui.status, 200, 'Temporal UI reachable');
    const health = await fetch(`http://127.0.0.1:${appPort}/api/healthz`);
    assert.equal(health.status, 200);
    assert.equal(((await health.json()) as { version: string }).version, '0.2.0');
    assert.ok(processesMentioning(stateDir).length >= 3, 'dev server, worker and app run');
    assert.ok(traffic, 'the writes started when v0.1.0 served');
    const written = await traffic.stop();
    traffic = undefined;
    const accounted = await assertConfirmedWritesAccountedFor(written, databaseUrlFor(database));
    assert.ok(accounted.live > 0 && accounted.setAside === 0, `every confirmed write is live: ${describeTraffic(written)}`);
    t.diagnostic(`traffic ${describeTraffic(written)}`);

    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGINT');
    await exited;
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(processesMentioning(stateDir), [], 'no stray processes after Ctrl-C');
    await assert.rejects(fetch(`http://127.0.0.1:${appPort}/api/healthz`), 'the app is stopped');
    await assert.rejects(fetch(`http://127.0.0.1:${uiPort}/`), 'the UI is stopped');
  } finally {
    await traffic?.stop();
    if (child.exitCode === null) child.kill('SIGKILL');
    await dropDatabasesWithPrefix(database);
    rmSync(stateDir, { recursive: true, force: true });
  }
});
