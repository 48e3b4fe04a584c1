import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { createE2eDeployment, editProfile, getJson, listDatabases, waitCaughtUp, type CliResult, type E2eDeployment } from './support/e2e.js';
import { withAdmin } from './support/postgres.js';
import { startTestTemporal, type TestTemporal } from './support/temporal.js';

// Issue 20, item 5: a database that lives in a tablespace of its own, on a filesystem of its own.
// Free space is checked where its copies land (that tablespace), before anything is stopped, and
// a database restored from a dump is created in it, not in pg_default.

let temporal: TestTemporal;
let d: E2eDeployment;
let mount: string;
const tablespace = `dgu_ts_${process.pid}`;
const FS_MIB = 600;

const tablespaceOf = (db: string) =>
  withAdmin(async (c) => (await c.query('SELECT t.spcname FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace WHERE d.datname = $1', [db])).rows[0]?.spcname as string);

/** Leaves about `freeMiB` free on the tablespace's filesystem; returns the undo. */
function fillTo(freeMiB: number): () => void {
  const filler = path.join(mount, 'filler');
  const freeNow = Number(execFileSync('df', ['--output=avail', '-k', mount]).toString().split('\n')[1]) / 1024;
  const fill = Math.max(0, Math.floor(freeNow - freeMiB));
  execFileSync('fallocate', ['-l', `${fill}M`, filler]);
  return () => rmSync(filler, { force: true });
}

function all(r: CliResult): string {
  return `${r.stdout}\n${r.stderr}`;
}

before(async () => {
  temporal = await startTestTemporal();
  mount = mkdtempSync(path.join(os.tmpdir(), 'dgu-tblsp-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${FS_MIB}m,mode=0700`, 'tmpfs', mount]);
  execFileSync('chown', ['postgres:postgres', mount]);
  await withAdmin((c) => c.query(`CREATE TABLESPACE ${tablespace} LOCATION '${mount}'`));
  d = await createE2eDeployment(temporal, 'tblsp');
  await withAdmin((c) => c.query(`ALTER DATABASE "${d.db.name}" SET TABLESPACE ${tablespace}`));
  await d.bootstrap();
  await waitCaughtUp(d);
  await d.startWorker();
});

after(async () => {
  await d?.dispose();
  await temporal?.dispose();
  // Every database in the tablespace goes first (dispose drops the deployment's own).
  await withAdmin(async (c) => {
    const { rows } = await c.query('SELECT datname FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace WHERE t.spcname = $1', [tablespace]);
    for (const r of rows) await c.query(`DROP DATABASE IF EXISTS "${r.datname}" WITH (FORCE)`);
    await c.query(`DROP TABLESPACE IF EXISTS ${tablespace}`);
  }).catch((err) => process.stderr.write(`tablespace cleanup: ${(err as Error).message}\n`));
  if (mount) {
    execFileSync('umount', ['-l', mount]);
    rmSync(mount, { recursive: true, force: true });
  }
});

test('the frozen copy needs room in the database\'s tablespace, not in the data directory: the plan is refused naming it, nothing stopped', async () => {
  assert.equal(await tablespaceOf(d.db.name), tablespace);
  const undo = fillTo(100); // the data directory has gigabytes free; the tablespace 100 MiB
  try {
    const r = await d.cli(['plan', '-d', d.name, '--to', 'v0.2.0']);
    assert.notEqual(r.exitCode, 0, all(r));
    assert.match(all(r), /not enough space on the database server for a frozen copy/);
    assert.ok(all(r).includes(`${mount} (tablespace ${tablespace})`), `names the tablespace's directory: ${all(r)}`);
    assert.match(all(r), /dump-while-stopped/);
    assert.equal((await getJson(`http://127.0.0.1:${d.port}/api/healthz`)).body.version, '0.1.0', 'the old version still serves');
  } finally {
    undo();
  }
});

test('a rollback restored from the dump creates the database in the live database\'s tablespace; a later rollback without room there is refused before the stop', async () => {
  const restore = editProfile(d, (x) => (x.backups.method = 'dump-while-stopped'));
  try {
    const up = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.3.0', '--yes', '--follow']);
    assert.match(all(up), /rolled back/, all(up));
    assert.equal(await tablespaceOf(d.db.name), tablespace, 'the restored database is in the tablespace the live one was in');
    assert.equal((await getJson(`http://127.0.0.1:${d.port}/api/healthz`)).body.version, '0.1.0');

    const to = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--yes', '--follow']);
    assert.equal(to.exitCode, 0, all(to));
    const databases = await listDatabases(d.db.name);
    const undo = fillTo(100);
    try {
      const r = await d.cli(['rollback', '-d', d.name, '--follow']);
      assert.notEqual(r.exitCode, 0, all(r));
      assert.match(all(r), /rollback refused before anything was stopped/);
      assert.match(all(r), /not enough space on the database server for the database restored from/);
      assert.ok(all(r).includes(`${mount} (tablespace ${tablespace})`), `names the tablespace's directory: ${all(r)}`);
      assert.match(all(r), /MiB free .* about \d+ MiB needed/);
      assert.equal((await getJson(`http://127.0.0.1:${d.port}/api/healthz`)).body.version, '0.2.0', 'the upgraded version still serves');
      assert.deepEqual(await listDatabases(d.db.name), databases, 'no database created or renamed');
    } finally {
      undo();
    }
  } finally {
    restore();
  }
});
