import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { TEMPORAL_ENVIRONMENT, WORKER_ENVIRONMENT } from '../src/client/temporalConnection.js';
import { loadProfileFile } from '../src/config/profile.js';
import { SEARCH_ATTRIBUTE_DEFINITIONS } from '../src/config/searchAttributes.js';
import { PROJECT_ROOT } from './support/e2e.js';

// docker-compose.yml describes the production topology; no Docker engine runs here, so this
// checks the file against what the worker really reads and registers.
const compose = parse(readFileSync(path.join(PROJECT_ROOT, 'docker-compose.yml'), 'utf8'));
const services = compose.services as Record<string, any>;

test('compose has Temporal with its database, the UI, the search-attribute setup and the worker', () => {
  for (const name of ['postgresql', 'temporal', 'temporal-ui', 'temporal-setup', 'dg-upgrade-worker']) assert.ok(services[name], `service ${name}`);
  assert.ok(services.temporal.ports.includes('7233:7233'), 'frontend port 7233');
  assert.ok(services['temporal-ui'].ports.includes('8080:8080'), 'UI port 8080');
  assert.equal(services.temporal.environment.POSTGRES_SEEDS, 'postgresql', 'Temporal uses its own PostgreSQL');
  assert.equal(services['temporal-ui'].environment.TEMPORAL_ADDRESS, 'temporal:7233');
  assert.equal(services['dg-upgrade-worker'].build, '.', 'the worker is built from the Dockerfile in the repo');
});

test("the worker's environment uses only names the worker reads, and names the ones it needs", () => {
  const worker = services['dg-upgrade-worker'];
  const profileMount = (worker.volumes as string[]).find((v) => v.endsWith(`:${worker.environment.DG_UPGRADE_PROFILE}:ro`));
  assert.ok(profileMount, 'the profile is mounted where DG_UPGRADE_PROFILE points');
  const profile = loadProfileFile(path.join(PROJECT_ROOT, profileMount!.split(':')[0]!));
  const fromEnv = Object.values(profile.deployments).flatMap((d) =>
    [d.database.url, d.smoke.readerToken, d.smoke.adminToken, ...Object.values(d.toolchain.secretEnv)].flatMap((ref) => ('fromEnv' in ref ? [ref.fromEnv] : [])),
  );
  const known = new Set<string>([...TEMPORAL_ENVIRONMENT, ...WORKER_ENVIRONMENT, ...fromEnv]);
  for (const name of Object.keys(worker.environment)) assert.ok(known.has(name), `${name} is read by the worker or its profile`);
  for (const name of ['TEMPORAL_ADDRESS', 'TEMPORAL_NAMESPACE', 'DG_UPGRADE_PROFILE']) assert.ok(name in worker.environment, `${name} set`);
  assert.equal(worker.environment.TEMPORAL_ADDRESS, 'temporal:7233');
  assert.ok(Object.values(profile.deployments).some((d) => d.node === worker.environment.DG_UPGRADE_NODE), 'the node serves a deployment of the profile');
  assert.equal(worker.pid, 'host', 'the worker sees the app processes it starts and stops');
});

test('the setup job registers exactly the search attributes the workflows set', () => {
  const command = services['temporal-setup'].command.join(' ');
  const listed = /for sa in ([\w ]+);/.exec(command)![1]!.trim().split(/\s+/).sort();
  assert.deepEqual(listed, SEARCH_ATTRIBUTE_DEFINITIONS.map((a) => a.name).sort());
  assert.match(command, /--type Keyword/);
});

test('the Dockerfile builds the worker and runs it', () => {
  const dockerfile = readFileSync(path.join(PROJECT_ROOT, 'Dockerfile'), 'utf8');
  assert.match(dockerfile, /^FROM node:20/m);
  assert.match(dockerfile, /npm ci/);
  assert.match(dockerfile, /ENTRYPOINT \["node", "bin\/dg-upgrade.js"\]/);
  assert.match(dockerfile, /CMD \["worker"\]/);
  assert.match(dockerfile, /postgresql-client/, 'pg_dump and pg_restore for backups');
});
