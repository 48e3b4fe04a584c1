/**
 * Records the workflow histories that test/replay.test.ts replays: runs the end-to-end
 * scenarios against a checkout of dg-upgrade (its own worker, CLI and test helpers, on a
 * Temporal dev server of its own) and writes every run's history as JSON into
 * test/fixtures/histories/<release>/, with an index.json that says what each one is.
 *
 *   npm run record-histories -- [--checkout DIR] [--release NAME] [--only a,b]
 *
 * --checkout defaults to this checkout. Before a release, record from the release's own
 * commit (a `git worktree` of it, built with `npx tsc -p . && node dist/src/worker/bundle.js`),
 * so that the histories are the ones its runs leave behind. See docs/workflow-changes.md.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { Client, Connection } from '@temporalio/client';
import { temporalCliPath } from '../src/stack/temporalCli.js';

type E2eModule = typeof import('../test/support/e2e.js');
type TemporalModule = typeof import('../test/support/temporal.js');
type E2eDeployment = import('../test/support/e2e.js').E2eDeployment;
type TestTemporal = import('../test/support/temporal.js').TestTemporal;

const THIS_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

interface Helpers {
  e2e: E2eModule;
  temporal: TemporalModule;
}

interface Scenario {
  name: string;
  description: string;
  run(h: Helpers, temporal: TestTemporal): Promise<E2eDeployment>;
}

function check(ok: boolean, what: string, detail: unknown): void {
  if (!ok) throw new Error(`${what}: ${typeof detail === 'string' ? detail : JSON.stringify(detail)}`);
}

async function cliOk(d: E2eDeployment, args: string[], expectedExit = 0): Promise<string> {
  const r = await d.cli(args);
  check(r.exitCode === expectedExit, `dg-upgrade ${args.join(' ')} exited ${r.exitCode}, expected ${expectedExit}`, r.stdout + r.stderr);
  return r.stdout;
}

/** Approves the plan the run waits on (after `inspect` has looked at it), then follows the run to its end. */
async function approveAndFollow(e2e: E2eModule, d: E2eDeployment, inspect?: (waiting: any) => void): Promise<void> {
  const waiting = await e2e.waitForStatus(d, (s) => s.phase === 'awaiting-approval', 'the approval gate', 240_000);
  inspect?.(waiting);
  await cliOk(d, ['approve', d.name, '--plan-hash', waiting.planHash, '--by', 'recorder']);
  await cliOk(d, ['status', d.name, '--follow']);
}

async function insertLateEvents(d: E2eDeployment): Promise<void> {
  const client = new pg.Client({ connectionString: d.databaseUrl });
  await client.connect();
  try {
    await client.query(`INSERT INTO dg_event_log (tenant_id, trace_id, event_type, payload) VALUES ('default', 'trace-late', 'trace.started', '{}'), ('default', 'trace-late', 'trace.annotated', '{}')`);
  } finally {
    await client.end();
  }
}

/** `$D` in a scenario's command stands for the deployment's name. */
type Command = [args: string[], expectedExit?: number];

/** A scenario that is a fresh running deployment and CLI commands run in order, each with its expected exit code. */
function cliScenario(
  name: string,
  description: string,
  label: string,
  commands: Command[],
  options?: Parameters<E2eModule['createRunningDeployment']>[2],
  prepare?: (e2e: E2eModule, d: E2eDeployment) => void,
): Scenario {
  return {
    name,
    description,
    async run({ e2e }, temporal) {
      const d = await e2e.createRunningDeployment(temporal, label, options);
      prepare?.(e2e, d);
      for (const [args, exit] of commands) await cliOk(d, args.map((a) => (a === '$D' ? d.name : a)), exit);
      return d;
    },
  };
}

const SCENARIOS: Scenario[] = [
  {
    name: 'approved',
    description: 'upgrade v0.1.0 -> v0.2.0 waits for approval, is approved, succeeds',
    async run({ e2e }, temporal) {
      const d = await e2e.createRunningDeployment(temporal, 'h-approved');
      await cliOk(d, ['upgrade', '-d', d.name, '--to', 'v0.2.0']);
      const waiting = await e2e.waitForStatus(d, (s) => s.phase === 'awaiting-approval', 'the approval gate');
      await cliOk(d, ['approve', d.name, '--plan-hash', waiting.planHash, '--comment', 'recorded']);
      await cliOk(d, ['status', d.name, '--follow']);
      return d;
    },
  },
  cliScenario('rejected', 'upgrade to v0.2.0 is rejected at the approval gate; nothing changed', 'h-rejected', [
    [['upgrade', '-d', '$D', '--to', 'v0.2.0']],
    [['reject', '$D', '--comment', 'not today']],
    [['status', '$D', '--follow'], 3],
  ]),
  cliScenario('approval-timed-out', 'no approval within the 2 s approval timeout; nothing changed', 'h-timeout', [[['upgrade', '-d', '$D', '--to', 'v0.2.0', '--follow'], 3]], { approvalTimeout: '2s' }),
  cliScenario(
    'smoke-fails-rollback',
    'v0.3.0 fails its smoke checks; the upgrade starts a child rollback that restores v0.1.0 (parent and child history)',
    'h-smokefail',
    [[['upgrade', '-d', '$D', '--to', 'v0.3.0', '--yes', '--follow'], 1]],
  ),
  cliScenario(
    'migration-fails-rollback',
    'v0.2.1 fails half-way through its migrations; the child rollback restores v0.1.0 (parent and child history)',
    'h-halfmig',
    [[['upgrade', '-d', '$D', '--to', 'v0.2.1', '--yes', '--follow'], 1]],
  ),
  {
    name: 'data-loss-accepted',
    description: 'v0.3.0 fails smoke after events were written past the backup; the rollback waits at the data-loss gate, a wrong count is refused, the right one accepted',
    async run({ e2e }, temporal) {
      const d = await e2e.createRunningDeployment(temporal, 'h-dataloss');
      await cliOk(d, ['upgrade', '-d', d.name, '--to', 'v0.3.0', '--yes']);
      await e2e.waitForStatus(d, (s) => s.steps.some((st: any) => st.name === 'backup' && st.state === 'succeeded'), 'the backup');
      await insertLateEvents(d);
      const upgrading = await e2e.waitForStatus(d, (s) => !!s.rollbackWorkflowId, 'the rollback to start');
      await e2e.waitForStatus(d, (s) => s.phase === 'awaiting-data-loss-approval', 'the data-loss gate', 120_000, ['--workflow-id', upgrading.rollbackWorkflowId]);
      await cliOk(d, ['accept-data-loss', d.name, '--events', '5'], 7);
      await cliOk(d, ['accept-data-loss', d.name, '--events', '2', '--by', 'recorder']);
      await cliOk(d, ['status', d.name, '--follow'], 1);
      return d;
    },
  },
  {
    name: 'rollback-blocked-retry',
    description: 'the child rollback fails at startOld (port taken), blocks, an early retry fails again, a retry after the port is freed finishes it',
    async run({ e2e }, temporal) {
      const d = await e2e.createE2eDeployment(temporal, 'h-rbretry');
      await d.bootstrap();
      await e2e.waitCaughtUp(d);
      const failDir = mkdtempSync(path.join(d.dir, 'failpoints-')); // removed with the deployment's dir
      await d.startWorker({ DG_UPGRADE_FAILPOINTS: 'restore.beforeSwap:mark', DG_UPGRADE_FAILPOINT_DIR: failDir });
      await cliOk(d, ['upgrade', '-d', d.name, '--to', 'v0.3.0', '--yes']);
      const marker = path.join(failDir, 'restore.beforeSwap');
      for (let i = 0; i < 2400 && !existsSync(marker); i++) await new Promise((r) => setTimeout(r, 50));
      check(existsSync(marker), 'the rollback reached its restore', marker);
      const squatter = http.createServer((_req, res) => res.end('{"squatter": true}')).listen(d.port, '127.0.0.1');
      try {
        const upgrading = await e2e.waitForStatus(d, (s) => !!s.rollbackWorkflowId, 'the rollback to start');
        const id = ['--workflow-id', upgrading.rollbackWorkflowId];
        await e2e.waitForStatus(d, (s) => s.phase === 'rollback-blocked', 'the rollback to block', 120_000, id);
        await cliOk(d, ['retry', d.name, '--comment', 'too early']);
        await e2e.waitForStatus(d, (s) => s.phase === 'rollback-blocked' && /retrying|failed/.test(s.summary), 'the retry to fail again', 60_000, id);
      } finally {
        await new Promise((r) => squatter.close(r));
      }
      await cliOk(d, ['retry', d.name, '--by', 'recorder', '--comment', 'port freed']);
      await cliOk(d, ['status', d.name, '--follow'], 1);
      return d;
    },
  },
  cliScenario(
    'projection-rebuild',
    'v0.2.2 (projection bug, no migration) fails smoke; the narrow path rebuilds projections on v0.1.0 without a restore (parent and rebuildProjections child); then `dg-upgrade rebuild-projections` of trace_summary on its own',
    'h-projbug',
    [
      [['upgrade', '-d', '$D', '--to', 'v0.2.2', '--yes', '--follow'], 1],
      [['rebuild-projections', '--deployment', '$D', '--projections', 'trace_summary', '--follow']],
    ],
  ),
  cliScenario('release-model', 'release-model install (mix release) upgraded v0.1.0 -> v0.2.0 without approval', 'h-relmodel', [[['upgrade', '-d', '$D', '--to', 'v0.2.0', '--yes', '--follow']]], { model: 'release' }),
  {
    name: 'cancel-before-cutover',
    description: 'upgrade cancelled by the operator during the (slowed) build; nothing changed',
    async run({ e2e }, temporal) {
      const d = await e2e.createRunningDeployment(temporal, 'h-cancel');
      const restore = e2e.editProfile(d, (p) => (p.toolchain.env.DG_FIXTURE_COMPILE_MS = '8000'));
      try {
        await cliOk(d, ['upgrade', '-d', d.name, '--to', 'v0.2.0', '--yes']);
        await e2e.waitForStatus(d, (s) => s.phase === 'building' || s.steps?.some((st: any) => st.name === 'build' && st.state === 'running'), 'the build', 60_000);
        await cliOk(d, ['cancel', d.name]);
        await cliOk(d, ['status', d.name, '--follow'], 3);
      } finally {
        restore();
      }
      return d;
    },
  },
  {
    name: 'rehearsed-approved',
    description: 'rehearsal.policy advisory: the upgrade to v0.2.0 builds and rehearses on a copy before its approval, is approved, succeeds (0.3.0)',
    async run({ e2e }, temporal) {
      const d = await e2e.createRunningDeployment(temporal, 'h-rehearsed');
      e2e.editProfile(d, (p) => (p.rehearsal = { policy: 'advisory' }));
      await cliOk(d, ['upgrade', '-d', d.name, '--to', 'v0.2.0']);
      await approveAndFollow(e2e, d, (waiting) => check(!!waiting.plan?.rehearsal, 'the plan carries the rehearsal', waiting.plan));
      return d;
    },
  },
  cliScenario(
    'rehearsal-refused',
    'rehearsal.policy required: v0.2.1 fails its migration on the rehearsal copy; the run ends before the approval, nothing stopped (0.3.0)',
    'h-rehfail',
    [[['upgrade', '-d', '$D', '--to', 'v0.2.1', '--follow'], 15]],
    undefined,
    (e2e, d) => e2e.editProfile(d, (p) => (p.rehearsal = { policy: 'required' })),
  ),
  {
    name: 'window-wait-notified',
    description: 'approved before a --not-before window 15 s ahead: waits durably for it, then upgrades; a webhook whose receiver is down is tried for each event and fails without failing the run (0.3.0)',
    async run({ e2e }, temporal) {
      const d = await e2e.createRunningDeployment(temporal, 'h-window');
      const urlFile = path.join(d.dir, 'webhook-url');
      // A port nobody listens on: every delivery is refused, the run goes on.
      const closed = await new Promise<number>((resolve) => {
        const probe = http.createServer().listen(0, '127.0.0.1', () => {
          const port = (probe.address() as { port: number }).port;
          probe.close(() => resolve(port));
        });
      });
      writeFileSync(urlFile, `http://127.0.0.1:${closed}/hooks/recorded-token`, { mode: 0o600 });
      e2e.editProfile(d, (p) => {
        p.maintenance = { predictedDowntime: '1m' };
        p.notifications = { webhooks: [{ name: 'ops-chat', url: { fromFile: urlFile }, events: ['awaiting-approval', 'window-waiting', 'window-opened', 'succeeded'], timeout: '2s' }] };
      });
      const notBefore = new Date(Date.now() + 15_000).toISOString().replace('Z', '+00:00');
      await cliOk(d, ['upgrade', '-d', d.name, '--to', 'v0.2.0', '--not-before', notBefore, '--window-length', '10m']);
      await approveAndFollow(e2e, d);
      return d;
    },
  },
  cliScenario(
    'manual-rollback',
    'a good upgrade to v0.2.0, then `dg-upgrade rollback` (a standalone rollback run) back to v0.1.0',
    'h-manualrb',
    [
      [['upgrade', '-d', '$D', '--to', 'v0.2.0', '--yes', '--follow']],
      [['rollback', '--deployment', '$D', '--follow']],
    ],
  ),
];

export interface HistoryIndexEntry {
  file: string;
  scenario: string;
  description: string;
  workflowType: string;
  workflowId: string;
  /** Which run of the scenario this is: "main" (the first run the CLI started), "child" (started by another run), or "then" (a later run the CLI started). */
  role: 'main' | 'child' | 'then';
}

export interface HistoryIndex {
  release: string;
  recordedFrom: { commit: string; version: string };
  recordedAt: string;
  histories: HistoryIndexEntry[];
}

async function exportHistories(temporal: TestTemporal, d: E2eDeployment, scenario: Scenario, outDir: string): Promise<HistoryIndexEntry[]> {
  const connection = await Connection.connect({ address: temporal.address });
  try {
    const client = new Client({ connection, namespace: temporal.namespace });
    const entries: HistoryIndexEntry[] = [];
    const runs = [];
    for await (const wf of client.workflow.list({ query: `WorkflowId STARTS_WITH "dg-upgrade-${d.name}"` })) runs.push(wf);
    runs.sort((a, b) => a.startTime.getTime() - b.startTime.getTime());
    check(runs.length > 0, `scenario ${scenario.name} left no run`, d.name);
    for (const wf of runs) {
      check(wf.status.name !== 'RUNNING', `scenario ${scenario.name}: run ${wf.workflowId} is still running`, wf.status.name);
      const role = wf.parentExecution ? 'child' : entries.some((e) => e.role === 'main') ? 'then' : 'main';
      const file = role === 'main' ? `${scenario.name}.json` : role === 'child' ? `${scenario.name}.${wf.type}.json` : `${scenario.name}.then-${wf.type}.json`;
      check(!entries.some((e) => e.file === file), `scenario ${scenario.name}: two runs would share ${file}`, entries);
      // The CLI writes the JSON form every Temporal tool reads (historyFromJSON, runReplayHistory).
      const json = execFileSync(
        temporalCliPath(),
        ['workflow', 'show', '--address', temporal.address, '--namespace', temporal.namespace, '--workflow-id', wf.workflowId, '--run-id', wf.runId, '--output', 'json'],
        { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 },
      );
      writeFileSync(path.join(outDir, file), json.endsWith('\n') ? json : `${json}\n`);
      entries.push({ file, scenario: scenario.name, description: scenario.description, workflowType: wf.type, workflowId: wf.workflowId, role });
    }
    return entries;
  } finally {
    await connection.close();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { checkout: { type: 'string' }, release: { type: 'string' }, only: { type: 'string' } } });
  const checkout = path.resolve(values.checkout ?? THIS_ROOT);
  const e2ePath = path.join(checkout, 'dist/test/support/e2e.js');
  if (!existsSync(e2ePath) || !existsSync(path.join(checkout, 'dist/workflow-bundle.js'))) {
    throw new Error(`${checkout} is not built: run \`npx tsc -p . && node dist/src/worker/bundle.js\` there first`);
  }
  const commit = execFileSync('git', ['-C', checkout, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  const version = JSON.parse(readFileSync(path.join(checkout, 'package.json'), 'utf8')).version as string;
  const release = values.release ?? `${version}-${commit}`;
  const outDir = path.join(THIS_ROOT, 'test/fixtures/histories', release);
  const only = values.only?.split(',');
  if (!only) rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  const scenarios = SCENARIOS.filter((s) => !only || only.includes(s.name));

  const e2e: E2eModule = await import(pathToFileURL(e2ePath).href);
  // Every deployment a scenario creates is disposed of, also when the scenario fails half-way.
  const created: E2eDeployment[] = [];
  const helpers: Helpers = {
    e2e: {
      ...e2e,
      createE2eDeployment: async (...args) => created[created.push(await e2e.createE2eDeployment(...args)) - 1]!,
      createRunningDeployment: async (...args) => created[created.push(await e2e.createRunningDeployment(...args)) - 1]!,
    },
    temporal: await import(pathToFileURL(path.join(checkout, 'dist/test/support/temporal.js')).href),
  };
  const indexPath = path.join(outDir, 'index.json');
  const previous: HistoryIndex | undefined = existsSync(indexPath) ? JSON.parse(readFileSync(indexPath, 'utf8')) : undefined;
  const kept = (previous?.histories ?? []).filter((h) => !scenarios.some((s) => s.name === h.scenario));
  const recorded: HistoryIndexEntry[] = [];
  const writeIndex = () => {
    const index: HistoryIndex = {
      release,
      recordedFrom: { commit, version },
      recordedAt: new Date().toISOString(),
      histories: [...kept, ...recorded].sort((a, b) => a.file.localeCompare(b.file)),
    };
    writeFileSync(indexPath, `${JSON.stringify(index, null, 2)}\n`);
  };
  const temporal = await helpers.temporal.startTestTemporal();
  try {
    for (const scenario of scenarios) {
      const started = Date.now();
      process.stderr.write(`record: ${scenario.name} (code of ${checkout} at ${commit})\n`);
      try {
        const d = await scenario.run(helpers, temporal);
        const entries = await exportHistories(temporal, d, scenario, outDir);
        recorded.push(...entries);
        writeIndex();
        process.stderr.write(`record: ${scenario.name}: ${entries.map((e) => e.file).join(', ')} in ${Math.round((Date.now() - started) / 1000)} s\n`);
      } finally {
        for (const d of created.splice(0)) await d.dispose();
      }
    }
  } finally {
    await temporal.dispose();
  }
  process.stderr.write(`record: ${recorded.length} histories written to ${outDir}\n`);
}

main().catch((err) => {
  process.stderr.write(`record-histories: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
