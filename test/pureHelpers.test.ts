import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { runCommand } from '../src/activities/exec.js';
import { EXIT, EXIT_CODE_TABLE } from '../src/client/exitCodes.js';
import { terminalSafe } from '../src/client/terminalText.js';
import { PROJECT_ROOT } from './support/e2e.js';
import { validateRefSyntax } from '../src/activities/git.js';
import { sideDatabaseNames } from '../src/activities/restore.js';
import { canonicalJson, planHash } from '../src/domain/planHash.js';

test('plan hash ignores key order and changes with content', () => {
  assert.equal(planHash({ a: 1, b: [1, 2] }), planHash({ b: [1, 2], a: 1 }));
  assert.notEqual(planHash({ a: 1 }), planHash({ a: 2 }));
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
