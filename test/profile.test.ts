import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import pg from 'pg';
import { databaseUrl, deploymentOf, runtimeEnv, setProfilePath } from '../src/activities/deployment.js';
import { pgToolConnection } from '../src/database/postgres.js';
import { databaseUrlProblem, DatabaseUrlSchema, pgUrl } from '../src/config/databaseUrl.js';
import { duplicateJsonKey, loadProfileFile, parseProfileFile, ProfileError } from '../src/config/profile.js';
import { FAILURE_TYPES } from '../src/domain/types.js';
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

const ACCEPTED = /accepted: ecto:\/\/, postgres:\/\/, postgresql:\/\//;

test("the guide's ecto:// DATABASE_URL is the same database as a postgresql:// URL for pg tools and node pg", () => {
  const guide = 'ecto://decisiongraph:decisiongraph@localhost/decisiongraph_beam_prod';
  assert.equal(databaseUrlProblem(guide), undefined);
  assert.equal(pgUrl(guide), 'postgresql://decisiongraph:decisiongraph@localhost/decisiongraph_beam_prod');
  assert.equal(pgUrl('ECTO://u@h:5433/db'), 'postgresql://u@h:5433/db');
  for (const same of ['postgres://u:pw@h:5432/db', 'postgresql://u:pw@h:5432/db']) assert.equal(pgUrl(same), 'postgresql://u:pw@h:5432/db');
  assert.equal(pgUrl(pgUrl(guide)), pgUrl(guide), 'idempotent');
});

test('a percent-encoded password survives the normalization byte for byte, and reaches pg tools and node pg decoded', () => {
  const url = 'ecto://dg%20user:p%40ss%3Aw%2Frd%25%23x@db.internal:6543/dg_prod';
  const pgForm = pgUrl(url);
  assert.equal(pgForm, 'postgresql://dg%20user:p%40ss%3Aw%2Frd%25%23x@db.internal:6543/dg_prod');
  const client = new pg.Client({ connectionString: pgForm });
  assert.deepEqual([client.user, client.password, client.host, client.port, client.database], ['dg user', 'p@ss:w/rd%#x', 'db.internal', 6543, 'dg_prod']);
  const tool = pgToolConnection(pgForm);
  assert.deepEqual(tool.env, { PGPASSWORD: 'p@ss:w/rd%#x' });
  assert.equal(tool.dbArg, 'postgresql://dg%20user@db.internal:6543/dg_prod', 'no password on the command line');
});

test("Ecto's query params: ssl=true|false becomes sslmode, the repo's own options are left out, libpq's kept", () => {
  assert.equal(pgUrl('ecto://u:pw@h/db?ssl=true&pool_size=10&timeout=15000'), 'postgresql://u:pw@h/db?sslmode=require');
  assert.equal(pgUrl('ecto://u:pw@h/db?ssl=false'), 'postgresql://u:pw@h/db?sslmode=disable');
  assert.equal(pgUrl('postgres://u:pw@h/db?sslmode=verify-full&ssl=true'), 'postgresql://u:pw@h/db?sslmode=verify-full');
  assert.equal(pgUrl('postgres://u:pw@h/db?application_name=x'), 'postgresql://u:pw@h/db?application_name=x');
});

test('the password of an ecto:// URL is redacted like any other', () => {
  assert.equal(redactDatabaseUrl('ecto://decisiongraph:s3cr%40t@localhost/decisiongraph_beam_prod'), 'ecto://decisiongraph:***@localhost/decisiongraph_beam_prod');
  assert.equal(redactDatabaseUrl('ecto://decisiongraph@localhost/db'), 'ecto://decisiongraph@localhost/db');
});

test('another scheme, or no host or database, is refused saying what is accepted, without quoting the password', () => {
  for (const [url, why] of [
    ['mysql://u:hunter22@h/db', /^scheme mysql:\/\/ is not accepted; /],
    ['jdbc:postgresql://h/db', /^scheme jdbc: is not accepted; /],
    ['ecto://u:hunter22@/db', /^not a valid URL \(is the host there\?/],
    ['hunter22', /^not a URL; /],
    ['', /^not a URL; /],
    ['ecto://u:hunter22@h', /^the path must be the database name; /],
    ['ecto://u:hunter22@h/db/extra', /^the path must be the database name; /],
  ] as const) {
    const problem = databaseUrlProblem(url);
    assert.match(problem ?? 'accepted', why, url);
    assert.match(problem!, ACCEPTED);
    assert.doesNotMatch(problem!, /hunter22/);
    assert.throws(() => pgUrl(url), ACCEPTED);
    const parsed = DatabaseUrlSchema.safeParse(url);
    assert.equal(parsed.success, false);
    assert.match(parsed.error!.issues[0]!.message, ACCEPTED);
  }
});

test('the profile refuses a DATABASE_URL in toolchain env or secretEnv: it comes from database.url (and a bad scheme is named)', () => {
  const raw = JSON.parse(readFileSync(example, 'utf8'));
  raw.deployments.sample.toolchain.env.DATABASE_URL = 'mysql://u:hunter22@h/db';
  raw.deployments['systemd-install'].toolchain = { secretEnv: { DATABASE_URL: { fromEnv: 'X' } } };
  assert.throws(() => parseProfileFile(raw, 'p.json'), (err: ProfileError) => {
    assert.match(err.message, /deployments\.sample\.toolchain\.env\.DATABASE_URL: DATABASE_URL is given to the runtime from database\.url.*scheme mysql:\/\/ is not accepted; accepted: ecto:\/\//);
    assert.match(err.message, /deployments\.systemd-install\.toolchain\.secretEnv\.DATABASE_URL: DATABASE_URL is given to the runtime from database\.url/);
    assert.doesNotMatch(err.message, /hunter22/);
    return true;
  });
});

test('activities: the runtime gets database.url as written (ecto://), the database steps get it as postgresql://, a bad scheme is an invalid profile', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dgu-profile-'));
  try {
    const raw = JSON.parse(readFileSync(example, 'utf8'));
    raw.deployments.sample.toolchain.secretEnv = {};
    const file = path.join(dir, 'profile.json');
    writeFileSync(file, JSON.stringify(raw));
    setProfilePath(file);
    process.env.DG_SAMPLE_DATABASE_URL = 'ecto://decisiongraph:p%40ss@localhost/decisiongraph_beam_prod?ssl=true';
    const d = deploymentOf('sample');
    assert.equal(runtimeEnv(d).DATABASE_URL, 'ecto://decisiongraph:p%40ss@localhost/decisiongraph_beam_prod?ssl=true');
    assert.equal(databaseUrl(d), 'postgresql://decisiongraph:p%40ss@localhost/decisiongraph_beam_prod?sslmode=require');
    process.env.DG_SAMPLE_DATABASE_URL = 'mysql://decisiongraph:hunter22@localhost/db';
    for (const call of [() => databaseUrl(d), () => runtimeEnv(d)]) {
      assert.throws(call, (err: ApplicationFailure) => {
        assert.equal(err.type, FAILURE_TYPES.invalidProfile);
        assert.equal(err.nonRetryable, true);
        assert.match(err.message, /^database\.url \(environment variable DG_SAMPLE_DATABASE_URL\): scheme mysql:\/\/ is not accepted; accepted: ecto:\/\//);
        assert.doesNotMatch(err.message, /hunter22/);
        return true;
      });
    }
  } finally {
    delete process.env.DG_SAMPLE_DATABASE_URL;
    rmSync(dir, { recursive: true, force: true });
  }
});

function withProfileText(text: string, fn: (file: string) => void): void {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dgu-profile-'));
  try {
    const file = path.join(dir, 'profile.json');
    writeFileSync(file, text);
    fn(file);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('approval.timeout must be a positive duration: "0s", "0ms" and "0h" are refused, naming the minimum', () => {
  for (const timeout of ['0s', '0ms', '0h', '999ms']) {
    const raw = JSON.parse(readFileSync(example, 'utf8'));
    raw.deployments.sample.approval = { policy: 'required', timeout };
    assert.throws(() => parseProfileFile(raw, 'p.json'), /deployments\.sample\.approval\.timeout: a positive duration, at least "1s"/, timeout);
  }
  const raw = JSON.parse(readFileSync(example, 'utf8'));
  raw.deployments.sample.approval = { policy: 'required', timeout: '1s' };
  assert.equal(parseProfileFile(raw, 'p.json').deployments.sample!.approval.timeout, '1s');
});

test('a key given twice in the profile JSON is refused, naming the key, where it is and the file (JSON.parse would keep the last)', () => {
  const text = readFileSync(example, 'utf8');
  // "port": 4100 of the sample deployment, given again with another value.
  const doubled = text.replace('"port": 4100,', '"port": 4100, "port": 4999,');
  assert.notEqual(doubled, text);
  withProfileText(doubled, (file) => {
    assert.throws(() => loadProfileFile(file), (err: ProfileError) => {
      assert.ok(err instanceof ProfileError);
      assert.match(err.message, /key "port" appears twice in deployments\.sample/);
      assert.ok(err.message.includes(file), err.message);
      return true;
    });
  });
  withProfileText('{"stateDir": "/a", "stateDir": "/b", "deployments": {}}', (file) => assert.throws(() => loadProfileFile(file), /key "stateDir" appears twice in the top level/));
  // The same key in two different objects, escaped keys and strings with braces are no duplicate.
  assert.equal(duplicateJsonKey('{"a": {"x": 1}, "b": {"x": "}{\\"x\\":"}, "c": [{"x": 1}, {"x": 2}], "d\\"": 1, "d": 2}'), undefined);
  assert.deepEqual(duplicateJsonKey('{"a": [{"x": 1, "y": {"z": 1, "z": 2}}]}'), { key: 'z', in: 'a.0.y' });
  assert.deepEqual(duplicateJsonKey('{"\\u0061": 1, "a": 2}'), { key: 'a', in: '' });
  assert.equal(duplicateJsonKey(text), undefined, 'the example has none');
});

test('two deployments of one node sharing a port or a database are refused at profile load', () => {
  const samePort = JSON.parse(readFileSync(example, 'utf8'));
  samePort.deployments['systemd-install'].port = samePort.deployments.sample.port;
  assert.throws(() => parseProfileFile(samePort, 'p.json'), /deployments\.systemd-install\.port: port 4100 on node "local" is already the port of deployment "sample"/);
  const sameDb = JSON.parse(readFileSync(example, 'utf8'));
  sameDb.deployments['systemd-install'].database.url = { ...sameDb.deployments.sample.database.url };
  assert.throws(() => parseProfileFile(sameDb, 'p.json'), /deployments\.systemd-install\.database\.url: the same database reference as deployment "sample"/);
  // On another node, the same port is another machine's.
  const otherNode = JSON.parse(readFileSync(example, 'utf8'));
  otherNode.deployments['systemd-install'].port = otherNode.deployments.sample.port;
  otherNode.deployments['systemd-install'].node = 'app-2';
  assert.doesNotThrow(() => parseProfileFile(otherNode, 'p.json'));
});
