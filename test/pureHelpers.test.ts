import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { runCommand } from '../src/activities/exec.js';
import { EXIT, EXIT_CODE_TABLE } from '../src/client/exitCodes.js';
import { terminalSafe } from '../src/client/terminalText.js';
import { checkOperatorFields, pushIgnored, quoted, SIGNAL_LIMITS } from '../src/workflows/signalFields.js';
import { PROJECT_ROOT } from './support/e2e.js';
import { validateRefSyntax } from '../src/activities/git.js';
import { sideDatabaseNames } from '../src/database/restore.js';
import { sha256File } from '../src/database/postgres.js';
import { approvedPart, canonicalJson, planHash } from '../src/domain/planHash.js';

test('plan hash ignores key order and changes with content', () => {
  assert.equal(planHash({ a: 1, b: [1, 2] }), planHash({ b: [1, 2], a: 1 }));
  assert.notEqual(planHash({ a: 1 }), planHash({ a: 2 }));
  // The size estimate moves with every write: not part of what approval acknowledges.
  assert.equal(planHash(approvedPart({ to: 'v0.2.0', estimatedBackupBytes: 1 })), planHash(approvedPart({ to: 'v0.2.0', estimatedBackupBytes: 2 })));
  assert.notEqual(planHash(approvedPart({ to: 'v0.2.0', estimatedBackupBytes: 1 })), planHash(approvedPart({ to: 'v0.3.0', estimatedBackupBytes: 1 })));
  assert.equal(canonicalJson({ b: 1, a: undefined, c: { z: 1, y: 2 } }), '{"b":1,"c":{"y":2,"z":1}}');
  assert.match(planHash({}), /^[0-9a-f]{24}$/);
});

test('refs that git could read as options, or outside ref grammar, are refused', () => {
  for (const bad of ['--upload-pack=x', '-b', 'a..b', 'v1 2', 'x.lock', '', 'tag/', '$(rm)']) {
    assert.ok(validateRefSyntax(bad), `${JSON.stringify(bad)} refused`);
  }
  for (const good of ['v0.2.0', 'main', 'release/2026-11', '8bf9c006a8d7603791182ccb6107dd6df67199af']) {
    assert.equal(validateRefSyntax(good), undefined, `${good} accepted`);
  }
});

test('side database names stay within PostgreSQL 63 bytes and say what they are', () => {
  const long = 'x'.repeat(63);
  const { restored, aside } = sideDatabaseNames(long, 'abcd1234', '20261125t1051');
  assert.ok(restored.length <= 63 && aside.length <= 63);
  assert.match(aside, /_upgraded_20261125t1051_abcd1234$/);
  const short = sideDatabaseNames('prod', 'abcd1234', '20261125t1051');
  assert.equal(short.aside, 'prod_upgraded_20261125t1051_abcd1234');
});

test('a command whose working directory is a symlink loop says ELOOP and the path, not "exited with undefined"', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dgu-loop-'));
  try {
    symlinkSync(path.join(dir, 'b'), path.join(dir, 'a'));
    symlinkSync(path.join(dir, 'a'), path.join(dir, 'b'));
    await assert.rejects(runCommand('git', ['remote'], { cwd: path.join(dir, 'a') }), (err: Error) => {
      assert.doesNotMatch(err.message, /undefined/);
      assert.match(err.message, /`git remote` could not be started: ELOOP/);
      assert.ok(err.message.includes(path.join(dir, 'a')), err.message);
      return true;
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('terminal text: C0, C1, DEL, ESC and bidi overrides are escaped; a field cannot start a line; JSON stays JSON', () => {
  const evil = 'a\u001b[2J\u001b]0;owned\u0007b\rc\u009b31md\u007fe\u202ef';
  const safe = terminalSafe(evil);
  assert.doesNotMatch(safe, /[\u0000-\u001f\u007f-\u009f\u202e]/);
  assert.equal(safe, 'a\\u001b[2J\\u001b]0;owned\\u0007b\\u000dc\\u009b31md\\u007fe\\u202ef');
  assert.equal(terminalSafe('one\ntwo\tx'), 'one\\u000atwo\\u0009x');
  assert.equal(terminalSafe('one\ntwo\tx', { keepNewlines: true }), 'one\ntwo\tx');
  const line = JSON.stringify({ by: evil });
  assert.deepEqual(JSON.parse(terminalSafe(line, { keepNewlines: true })), { by: evil }, 'escaping a JSON line keeps its value');
  assert.equal(terminalSafe('plain ✓ text · ünïcode'), 'plain ✓ text · ünïcode');
});

test("--help's exit-code table is the README's, row by row", () => {
  const readme = readFileSync(path.join(PROJECT_ROOT, 'README.md'), 'utf8');
  const table = readme.slice(readme.indexOf('| code | meaning |'));
  const rows = [...table.slice(0, table.indexOf('\n\n')).matchAll(/^\| (\d+) \| (.*) \|$/gm)].map((m) => [Number(m[1]), m[2]!] as const);
  assert.deepEqual(rows, EXIT_CODE_TABLE.map(([code, meaning]) => [code, meaning]));
  assert.deepEqual(rows.map(([code]) => code), [...new Set(Object.values(EXIT))].sort((a, b) => a - b), 'every exit code has a row');
  const help = spawnSync(process.execPath, [path.join(PROJECT_ROOT, 'bin', 'dg-upgrade.js'), '--help'], { encoding: 'utf8' });
  assert.equal(help.status, 0);
  const helpRows = [...help.stdout.slice(help.stdout.indexOf('Exit codes')).matchAll(/^ *(\d+) {2}(.*)$/gm)].map((m) => [Number(m[1]), m[2]!]);
  assert.deepEqual(helpRows, rows.map(([code, meaning]) => [code, meaning.replace(/`/g, '')]));
});

test('per-command help lists its options; `help upgrade` is the upgrade help', () => {
  const run = (...args: string[]) => spawnSync(process.execPath, [path.join(PROJECT_ROOT, 'bin', 'dg-upgrade.js'), ...args], { encoding: 'utf8' });
  const viaFlag = run('upgrade', '--help');
  const viaHelp = run('help', 'upgrade');
  assert.equal(viaHelp.status, 0, viaHelp.stderr);
  assert.equal(viaHelp.stdout, viaFlag.stdout);
  assert.match(viaHelp.stdout, /^dg-upgrade upgrade: /);
  for (const option of ['-d, --deployment VALUE', '--to VALUE', '-y, --yes', '-f, --follow', '--by VALUE', '--comment VALUE', '--profile VALUE', '--json']) {
    assert.ok(viaHelp.stdout.includes(option), `upgrade --help lists ${option}:\n${viaHelp.stdout}`);
  }
  for (const [command, option] of [['list', '--limit VALUE'], ['accept-data-loss', '--events VALUE'], ['approve', '--plan-hash VALUE'], ['backups', '--verify']]) {
    assert.ok(run(command!, '--help').stdout.includes(option!), `${command} --help lists ${option}`);
  }
  const unknown = run('help', 'upgrad');
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /^dg-upgrade: error: unknown command "upgrad"/);
});

test('signal fields: `by` required and at most 100 characters, comment cut to 2000 with a note, reasons and the ignored list bounded', () => {
  assert.deepEqual(checkOperatorFields('approve', { by: 'alice', planHash: 'x', comment: 'ok' }), { by: 'alice', comment: 'ok' });
  for (const missing of [{ planHash: 'x' }, { by: '' }, { by: '   ' }, { by: 12 }, { by: null }]) {
    assert.match(checkOperatorFields('approve', missing).ignored ?? 'accepted', /^approve without "by"/, JSON.stringify(missing));
  }
  assert.match(checkOperatorFields('reject', null).ignored ?? '', /^reject: the payload null is not a JSON object/);
  assert.match(checkOperatorFields('approve', { undecodablePayload: 'encoding binary/protobuf: x' }).ignored ?? '', /could not be decoded .*json\/plain/);
  const longBy = checkOperatorFields('reject', { by: 'm'.repeat(101) }).ignored ?? '';
  assert.match(longBy, /"by" is 101 characters, at most 100/);
  assert.ok(longBy.length < 200);
  assert.equal(checkOperatorFields('reject', { by: 'b'.repeat(100) }).ignored, undefined);
  const huge = 'x'.repeat(1_900_000);
  const cut = checkOperatorFields('reject', { by: 'alice', comment: huge });
  assert.equal(cut.ignored, undefined);
  assert.ok(cut.ignored === undefined && cut.comment!.length < SIGNAL_LIMITS.comment + 100);
  assert.match(cut.ignored === undefined ? cut.comment! : '', /… \[comment truncated: 1900000 characters, the first 2000 kept\]$/);
  assert.match(checkOperatorFields('retry', { by: 'a', comment: { x: 1 } }).ignored ?? '', /"comment" must be text/);
  assert.equal(quoted('y'.repeat(1000)).length < 100, true);
  const list: string[] = [];
  for (let i = 0; i < 500; i++) pushIgnored(list, `approve by m${i}: ${'z'.repeat(5000)}`);
  assert.equal(list.length, SIGNAL_LIMITS.ignoredSignals);
  assert.ok(list.every((e) => e.length <= SIGNAL_LIMITS.ignoredEntry + 40));
  assert.match(list.at(-1)!, /^\.\.\. and 451 more ignored signals \(not listed; the last: approve by m499/);
});

test('the CLI refuses a --by the workflow would ignore (over 100 characters) before sending anything', () => {
  const r = spawnSync(process.execPath, [path.join(PROJECT_ROOT, 'bin', 'dg-upgrade.js'), 'reject', 'prod', '--by', 'b'.repeat(101)], { encoding: 'utf8', env: { ...process.env, TEMPORAL_ADDRESS: '127.0.0.1:1' } });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /^dg-upgrade: error: --by is 101 characters, at most 100/);
});

test('a workflow task failing after a signal blames the signal payload only when the failure is about decoding', async () => {
  const { workflowTaskTrouble } = await import('../src/client/operations.js');
  const troubleAfterSignal = (failure: string) => {
    const events = [
      { workflowTaskCompletedEventAttributes: {} },
      { workflowExecutionSignaledEventAttributes: { signalName: 'reject', identity: 'ui' } },
      { workflowTaskFailedEventAttributes: { failure: { message: failure } } },
    ];
    const handle = { fetchHistory: async () => ({ events }) } as never;
    const desc = { status: { name: 'RUNNING' }, raw: { pendingWorkflowTask: { attempt: 3 } } } as never;
    return workflowTaskTrouble(handle, desc);
  };
  const tooLarge = await troubleAfterSignal('Complete result exceeds size limit.');
  assert.match(tooLarge!.message, /^Complete result exceeds size limit\. \(after the signal "reject" from ui\)$/);
  const undecodable = await troubleAfterSignal('Failed to decode payload: Unexpected token x in JSON at position 0');
  assert.match(undecodable!.message, /a signal payload the worker cannot decode wedges the run/);
});

test('sha256File reads through one buffer and hashes every byte: files across its 1 MiB boundary, and an empty one', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dgu-sha-'));
  try {
    for (const size of [0, 1, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 2.5 * (1 << 20)]) {
      const file = path.join(dir, `f${size}`);
      const bytes = randomBytes(size);
      writeFileSync(file, bytes);
      assert.equal(await sha256File(file), createHash('sha256').update(bytes).digest('hex'), `${size} bytes`);
    }
    await assert.rejects(sha256File(path.join(dir, 'missing')), /ENOENT/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
