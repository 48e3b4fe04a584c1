import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { dropDatabasesWithPrefix } from './support/postgres.js';
import { PROJECT_ROOT } from './support/e2e.js';
import { freePort } from './support/ports.js';

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

test('the demo upgrades the sample target, serves the UI and the app, and Ctrl-C stops everything it started', async () => {
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

    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGINT');
    await exited;
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(processesMentioning(stateDir), [], 'no stray processes after Ctrl-C');
    await assert.rejects(fetch(`http://127.0.0.1:${appPort}/api/healthz`), 'the app is stopped');
    await assert.rejects(fetch(`http://127.0.0.1:${uiPort}/`), 'the UI is stopped');
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    await dropDatabasesWithPrefix(database);
    rmSync(stateDir, { recursive: true, force: true });
  }
});
