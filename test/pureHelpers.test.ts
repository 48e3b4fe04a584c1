import assert from 'node:assert/strict';
import { test } from 'node:test';
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
