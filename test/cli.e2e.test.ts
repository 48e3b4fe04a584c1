import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { CLI, createRunningDeployment, databaseFacts, editProfile, getJson, type E2eDeployment } from './support/e2e.js';
import { startTestTemporal, type TestTemporal } from './support/temporal.js';

// Without writes: the CLI's output, exit codes and follow timing are what is tested here, and the
// bad-input case compares row counts with the state before it, which writes would move.
let temporal: TestTemporal;
let d: E2eDeployment;
before(async () => {
  temporal = await startTestTemporal();
  d = await createRunningDeployment(temporal, 'clipolish');
});
after(async () => {
  await d?.dispose();
  await temporal?.dispose();
});

test('--help of the CLI and of every command lists examples and the exit codes', async () => {
  const main = await d.cli(['--help']);
  assert.equal(main.exitCode, 0);
  assert.match(main.stdout, /Examples:/);
  const commands = [...main.stdout.matchAll(/^ {2}([a-z-]+) {2,}/gm)].map((m) => m[1]!).filter((c) => c !== 'dg');
  assert.ok(commands.length >= 12, `commands listed: ${commands.join(', ')}`);
  for (const command of commands) {
    const help = await d.cli([command, '--help']);
    assert.equal(help.exitCode, 0, command);
    assert.match(help.stdout, /Examples:\n {2}dg-upgrade /, `${command} --help has examples`);
    assert.match(help.stdout, /Exit codes/, `${command} --help documents exit codes`);
  }
});

test('ten bad inputs: each a one-line reason and its own documented exit code, and nothing changes', async () => {
  // Reading the workflow inbox writes once (as DecisionGraph's list_inbox: the SLA sweep escalates
  // the overdue item, one dg_workflow_actions row); the preflight's baseline smoke reads it, so the
  // sweep is done before the facts are taken: what is compared is what the bad inputs change.
  const inbox = await getJson(`http://127.0.0.1:${d.port}/api/v1/workflows`, { authorization: `Bearer ${d.secrets.readerToken}`, 'x-tenant-id': 'default' });
  assert.equal(inbox.status, 200);
  const before = await databaseFacts(d.databaseUrl);
  const badJson = path.join(d.dir, 'broken-profile.json');
  writeFileSync(badJson, '{"stateDir": "/tmp", "deployments": {');
  const unreachableDb = path.join(d.dir, 'unreachable-db-url');
  writeFileSync(unreachableDb, 'postgres://postgres:pw@127.0.0.1:1/nowhere');

  // A run waiting for approval, to approve with a stale hash; then a finished one to approve again.
  const waiting = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--json']);
  assert.equal(waiting.exitCode, 0, waiting.stderr);
  const staleApprove = await d.cli(['approve', d.name, '--plan-hash', '000000000000000000000000']);
  assert.equal((await d.cli(['reject', d.name])).exitCode, 0);
  assert.equal((await d.cli(['status', d.name, '--follow'])).exitCode, 3);
  const approveFinished = await d.cli(['approve', d.name]);

  const restoreProfile = editProfile(d, (p) => (p.database.url = { fromFile: unreachableDb }));
  const dbDown = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--yes', '--follow']);
  restoreProfile();

  const cases: Array<[string, { exitCode: number; stdout: string; stderr: string }, RegExp]> = [
    ['unknown deployment', await d.cli(['upgrade', '-d', 'nope', '--to', 'v0.2.0']), /unknown deployment "nope"/],
    ['bad ref', await d.cli(['upgrade', '-d', d.name, '--to', 'v9.9.9', '--yes', '--follow']), /unknown ref "v9\.9\.9"/],
    ['malformed profile', await d.cli(['plan', '-d', d.name, '--to', 'v0.2.0', '--profile', badJson]), /is not valid JSON/],
    ['unreachable Temporal', await d.cli(['status', d.name], { env: { TEMPORAL_ADDRESS: '127.0.0.1:1' } }), /cannot reach Temporal at 127\.0\.0\.1:1/],
    ['unreachable database', dbDown, /cannot connect to the database postgres(ql)?:\/\/postgres:\*\*\*@127\.0\.0\.1:1\/nowhere/],
    ['wrong workflow id', await d.cli(['status', '--workflow-id', 'no-such-run']), /no workflow run with ID no-such-run/],
    ['stale plan hash', staleApprove, /plan hash 000000000000000000000000 is stale/],
    ['approve a finished run', approveFinished, /already finished \(COMPLETED\); nothing to approve/],
    ['rollback with no backup', await d.cli(['rollback', '--deployment', d.name]), /has no pre-upgrade backup/],
    ['unknown flag', await d.cli(['upgrade', '--frobnicate']), /Unknown option '--frobnicate'/],
  ];
  const codes = new Map<number, string>();
  const { EXIT_CODE_HELP } = await import('../src/client/exitCodes.js');
  for (const [name, r, reason] of cases) {
    const errorLines = r.stderr.split('\n').filter((l) => l.startsWith('dg-upgrade:'));
    assert.equal(errorLines.length, 1, `${name}: one error line, got: ${r.stderr}`);
    assert.match(errorLines[0]!, reason, name);
    assert.notEqual(r.exitCode, 0, name);
    assert.ok(!codes.has(r.exitCode), `${name} shares exit code ${r.exitCode} with ${codes.get(r.exitCode)}`);
    codes.set(r.exitCode, name);
    assert.match(EXIT_CODE_HELP, new RegExp(`^ *${r.exitCode} `, 'm'), `exit code ${r.exitCode} (${name}) is documented`);
  }

  assert.equal((await getJson(`http://127.0.0.1:${d.port}/api/healthz`)).body.version, '0.1.0');
  const after = await databaseFacts(d.databaseUrl);
  assert.deepEqual(after.versions, before.versions);
  assert.deepEqual(after.rowCounts, before.rowCounts);
});

test('status --follow shows each step state change within 2 s of it happening', async () => {
  editProfile(d, (p) => (p.toolchain.env.DG_FIXTURE_COMPILE_MS = '1500'));
  const started = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--yes']);
  assert.equal(started.exitCode, 0, started.stderr);
  const follower = spawn(process.execPath, [CLI, 'status', d.name, '--follow'], {
    env: { ...process.env, ...d.temporalEnv, DG_UPGRADE_PROFILE: d.profilePath, ...d.env },
  });
  const seen = new Map<string, number>();
  let buffer = '';
  follower.stdout.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    for (const m of buffer.matchAll(/[✓✗…] (\w+) (running|succeeded|failed)/g)) {
      const key = `${m[1]}:${m[2]}`;
      if (!seen.has(key)) seen.set(key, Date.now());
    }
  });
  const code = await new Promise<number | null>((resolve) => follower.once('exit', resolve));
  assert.equal(code, 0, buffer);
  const status = JSON.parse((await d.cli(['status', d.name, '--json'])).stdout);
  for (const step of status.steps.filter((s: any) => ['build', 'stopOld', 'backup', 'migrate', 'startNew', 'smoke'].includes(s.name))) {
    const shown = seen.get(`${step.name}:succeeded`);
    assert.ok(shown, `${step.name} succeeded was shown: ${buffer}`);
    const lag = shown! - Date.parse(step.endedAt);
    assert.ok(lag < 2000, `${step.name} shown ${lag} ms after it happened`);
  }
  assert.match(buffer, /\[ *[\d.]+m?s\]/, 'lines carry the elapsed time');
  assert.match(buffer, /phase succeeded/);
  const shown = await d.cli(['status', d.name]);
  assert.match(shown.stdout, new RegExp(`commit: deployed ${status.plan.to.sha} \\(v0\\.2\\.0 when planned\\)`), 'status names the commit deployed');
});

test('a failed run followed with --json: the error is JSON on stdout and the documented line on stderr', async () => {
  const r = await d.cli(['plan', '-d', d.name, '--to', 'v9.9.9', '--json']);
  assert.equal(r.exitCode, 11, r.stderr);
  assert.match(r.stderr, /^dg-upgrade: error: unknown ref "v9\.9\.9"/);
  assert.match(r.stderr, /^ {2}cause: activity resolveTargetRef failed <- DgBadRef/m, 'plan shows where the failure came from');
  assert.match(JSON.parse(r.stdout).error, /unknown ref "v9\.9\.9"/);
  const followed = await d.cli(['upgrade', '-d', d.name, '--to', 'v9.9.8', '--yes', '--follow', '--json']);
  assert.equal(followed.exitCode, 11, followed.stderr);
  assert.match(followed.stderr, /^dg-upgrade: error: .*unknown ref "v9\.9\.8"/);
  assert.match(JSON.parse(followed.stdout).error, /unknown ref "v9\.9\.8"/);
});

test('status says when the tag a plan resolved moved, and that the planned commit is deployed', async () => {
  const { renderStatus } = await import('../src/client/render.js');
  const plan = { to: { ref: 'v0.2.0', tag: 'v0.2.0', sha: 'a'.repeat(40) } };
  const text = renderStatus({
    workflowId: 'dg-upgrade-x', operation: 'upgrade', deployment: 'x', targetRef: 'v0.2.0', phase: 'succeeded', outcome: 'succeeded', steps: [], ignoredSignals: [], summary: 'x: upgraded',
    plan, tagMoved: { tag: 'v0.2.0', plannedSha: 'a'.repeat(40), currentSha: 'b'.repeat(40) },
  } as any);
  assert.match(text, /commit: deployed a{40} \(v0\.2\.0 when planned\)/);
  assert.match(text, /tag v0\.2\.0 moved after the plan: it now points at b{12}; the planned commit a{12} is the one deployed/);
});
