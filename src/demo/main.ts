import { untilWorkerServes } from '../client/workerStart.js';
import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { Client, Connection } from '@temporalio/client';
import { startDevServer, type DevServer } from '../stack/devServer.js';
import { lockWorkflowId } from '../domain/lock.js';
import { createSampleDeployment, type SampleDeployment } from './sampleDeployment.js';

/**
 * The README's main job: the embedded stack (Temporal dev server with UI on 8233, a worker) and
 * the sample DecisionGraph target serving v0.1.0, then a whole upgrade to v0.2.0 through the
 * CLI. Everything stays up for a look in the UI until Ctrl-C, which stops all it started.
 *   --exit   stop right after the upgrade (exit code = the upgrade's)
 *   --target beam   upgrade the real Elixir target (test/fixtures/beam-target) instead of the Node stand-in
 */
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const cli = path.join(root, 'bin', 'dg-upgrade.js');
const stateDir = process.env.DG_UPGRADE_STATE_DIR || path.join(process.env.XDG_STATE_HOME || path.join(os.homedir(), '.local', 'state'), 'dg-upgrade');
const temporalPort = Number(process.env.DG_DEMO_TEMPORAL_PORT || 7233);
const uiPort = Number(process.env.DG_DEMO_UI_PORT || 8233);
const appPort = Number(process.env.DG_DEMO_APP_PORT || 4100);
const adminUrl = process.env.DG_ADMIN_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
const demoDb = process.env.DG_DEMO_DATABASE || 'dg_upgrade_demo';
const exitAfter = process.argv.includes('--exit');
const targetArg = process.argv.indexOf('--target');
const target = targetArg >= 0 ? process.argv[targetArg + 1] : 'stand-in';
const say = (line: string) => console.log(`demo: ${line}`);

async function recreateDatabase(): Promise<string> {
  const client = new pg.Client({ connectionString: adminUrl });
  try {
    await client.connect();
  } catch (err) {
    throw new Error(`cannot reach PostgreSQL at ${adminUrl} (${(err as Error).message}); start it or set DG_ADMIN_DATABASE_URL`);
  }
  try {
    await client.query(`DROP DATABASE IF EXISTS "${demoDb}" WITH (FORCE)`);
    await client.query(`CREATE DATABASE "${demoDb}"`);
  } finally {
    await client.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${demoDb}`;
  return url.toString();
}

let server: DevServer | undefined;
let worker: ChildProcess | undefined;
let deployment: SampleDeployment | undefined;
let stopping = false;

async function stopAll(code: number): Promise<never> {
  if (stopping) process.exit(code);
  stopping = true;
  say('stopping everything the demo started...');
  if (worker && worker.exitCode === null) {
    const exited = new Promise((r) => worker!.once('exit', r));
    worker.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
    if (worker.exitCode === null) worker.kill('SIGKILL');
  }
  await deployment?.stopRuntime().catch((err) => say(`stopping the app: ${err.message}`));
  await server?.stop();
  say('stopped');
  process.exit(code);
}

async function terminateLeftoverRun(address: string): Promise<void> {
  const connection = await Connection.connect({ address });
  try {
    const handle = new Client({ connection }).workflow.getHandle(lockWorkflowId('sample'));
    const desc = await handle.describe().catch(() => undefined);
    if (desc?.status.name === 'RUNNING') {
      say(`terminating a run left over from an earlier demo (${desc.runId})`);
      await handle.terminate('a new demo started');
    }
  } finally {
    await connection.close();
  }
}

async function main(): Promise<void> {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => void stopAll(130));
  if (target !== 'stand-in' && target !== 'beam') throw new Error(`--target is stand-in or beam, not ${target}`);
  say(`state dir ${stateDir}`);
  server = await startDevServer({ stateDir: path.join(stateDir, 'temporal'), port: temporalPort, uiPort, log: say });
  say(`Temporal dev server ready in ${server.startupMs} ms: frontend ${server.address}, UI ${server.uiUrl}`);
  await terminateLeftoverRun(server.address);

  const databaseUrl = await recreateDatabase();
  const dir = path.join(stateDir, 'demo');
  rmSync(dir, { recursive: true, force: true });
  deployment = await createSampleDeployment({ dir, databaseUrl, port: appPort, name: 'sample', compileMs: 1500, target });
  say(`sample DecisionGraph target (a test fixture${target === 'beam' ? ', real Elixir' : ''}) generated in ${deployment.target.repoDir}`);
  say('building, migrating and starting v0.1.0...');
  await deployment.bootstrap();
  say(`v0.1.0 serves on http://127.0.0.1:${appPort} (GET /api/healthz)`);

  const env = { ...process.env, ...deployment.env, DG_UPGRADE_PROFILE: deployment.profilePath, TEMPORAL_ADDRESS: server.address, TEMPORAL_UI_URL: server.uiUrl };
  worker = spawn(process.execPath, [cli, 'worker'], { env, stdio: ['ignore', 'inherit', 'pipe'] });
  worker.once('exit', (code) => {
    if (!stopping) {
      say(`the worker exited unexpectedly (${code})`);
      void stopAll(1);
    }
  });
  // The upgrade starts once the worker polls: on a slow machine its start can outlast the CLI's
  // "no worker picks it up" check, which would then end the demo's upgrade before it began.
  await untilWorkerServes(worker, 120_000, (chunk) => process.stderr.write(chunk));

  say('upgrading sample v0.1.0 -> v0.2.0 (approved with --yes, followed live):');
  const upgrade = spawn(process.execPath, [cli, 'upgrade', '--deployment', 'sample', '--to', 'v0.2.0', '--yes', '--follow', '--by', 'demo'], { env, stdio: ['ignore', 'inherit', 'inherit'] });
  const code = await new Promise<number>((resolve) => upgrade.once('exit', (c) => resolve(c ?? 1)));
  say(code === 0 ? 'upgrade succeeded' : `upgrade ended with exit code ${code}`);
  say(`Temporal UI:  ${server.uiUrl}/namespaces/default/workflows/${lockWorkflowId('sample')}`);
  say(`The app:      http://127.0.0.1:${appPort}/api/healthz`);
  const envFile = path.join(dir, 'env.sh');
  writeFileSync(envFile, Object.entries({ ...deployment.env, DG_UPGRADE_PROFILE: deployment.profilePath, TEMPORAL_ADDRESS: server.address, TEMPORAL_UI_URL: server.uiUrl }).map(([k, v]) => `export ${k}='${v}'`).join('\n') + '\n', { mode: 0o600 });
  say(`Try:          source ${envFile} && node bin/dg-upgrade.js status sample`);
  if (exitAfter) return void (await stopAll(code));
  say('everything keeps running; press Ctrl-C to stop it all');
}

main().catch(async (err) => {
  console.error(`demo: ${err.message}`);
  await stopAll(1);
});
