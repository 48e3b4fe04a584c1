import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { loadProfileFile, parseProfileFile, ProfileError } from '../src/config/profile.js';
import { redactDatabaseUrl, redactSecrets, resolveSecret } from '../src/config/secrets.js';
import { PROJECT_ROOT } from './support/e2e.js';

const example = path.join(PROJECT_ROOT, 'examples', 'profile.example.json');

test('the example profile in the repo is valid', () => {
  const profile = loadProfileFile(example);
  assert.deepEqual(Object.keys(profile.deployments), ['sample', 'systemd-install']);
  assert.equal(profile.deployments['systemd-install']!.approval.policy, 'required', 'defaults filled in');
});

test('profile errors name the field and what was expected', () => {
  const raw = JSON.parse(readFileSync(example, 'utf8'));
  raw.deployments.sample.port = 'eighty';
  raw.deployments.sample.layout = 'sideways';
  raw.deployments.sample.database.url = { fromVault: 'x' };
  raw.deployments.sample.surprise = true;
  assert.throws(() => parseProfileFile(raw, 'p.json'), (err: ProfileError) => {
    assert.match(err.message, /deployments\.sample\.port: .*expected number/);
    assert.match(err.message, /deployments\.sample\.layout: .*"releases".*"in-place"/);
    assert.match(err.message, /deployments\.sample\.database\.url/);
    assert.match(err.message, /surprise/);
    return true;
  });
});

test('secrets are references resolved on demand, and redacted from text', () => {
  assert.equal(resolveSecret({ fromEnv: 'DGU_TEST_SECRET' }, { DGU_TEST_SECRET: 'hunter22' }), 'hunter22');
  assert.throws(() => resolveSecret({ fromEnv: 'DGU_MISSING' }, {}), /DGU_MISSING is not set/);
  assert.throws(() => resolveSecret({ fromFile: '/nonexistent/secret' }), /cannot be read \(ENOENT\)/);
  assert.equal(redactSecrets('token=hunter22 ok', ['hunter22']), 'token=[REDACTED] ok');
  assert.equal(redactDatabaseUrl('postgres://u:pw@h:5432/db'), 'postgres://u:***@h:5432/db');
});
