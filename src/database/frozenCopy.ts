import { existsSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import type pg from 'pg';
import type { ResolvedDeployment } from '../config/profile.js';
import { FAILURE_TYPES, type BackupManifest } from '../domain/types.js';
import { databaseUrl, deploymentOf } from '../activities/deployment.js';
import { failpoint } from '../activities/failpoints.js';
import { heartbeat, keepAlive, sleep } from '../activities/heartbeat.js';
import {
  backupRecords,
  databaseBytes,
  dumpWithFigures,
  type DumpFigures,
  ensurePrivateDir,
  eventLogMark,
  isNoSpace,
  liveDatabaseName,
  manifestPathOf,
  migrationVersions,
  noSpaceForBackup,
  quoteIdent,
  readManifest,
  sha256File,
  tableRowCounts,
  tocEntries,
  urlFor,
  withDatabase,
  writePrivateFile,
  type BackupRequest,
} from './postgres.js';
import { settleOtherSessions } from './sessions.js';
import { bytesNeededForCopy, checkSpace, databaseLocation, mib } from './space.js';
import { sealManifest } from './manifestSeal.js';

/**
 * The frozen-copy backup method: while the app is stopped the database is copied on its own
 * server (CREATE DATABASE ... TEMPLATE ... STRATEGY FILE_COPY copies files, not rows), the new
 * version starts at once, and the portable pg_dump file is written from the copy afterwards.
 * Nobody writes to the copy, so figures counted in it are exact by construction.
 */

/** What the freeze records, before the figures and the dump exist: `<id>.frozen.json` beside the manifests. */
export type FrozenRecord = Pick<
  BackupManifest,
  'id' | 'deployment' | 'kind' | 'createdAt' | 'file' | 'database' | 'gitSha' | 'gitTag' | 'environment' | 'workflowId' | 'otherSessions'
> & { frozenDatabase: string; frozenOid: number };

/** `<live>_frozen_<run key>`, within PostgreSQL's 63 bytes (the live name's start is kept). */
export function frozenDatabaseName(live: string, key: string): string {
  const suffix = `_frozen_${key}`;
  return `${live.slice(0, 63 - suffix.length)}${suffix}`;
}

function frozenComment(id: string, live: string): string {
  return `dg-upgrade: frozen copy ${id} of ${live}`;
}

function recordPathOf(dir: string, id: string): string {
  return path.join(dir, `${id}.frozen.json`);
}

export function readFrozenRecord(d: ResolvedDeployment, id: string): FrozenRecord | undefined {
  try {
    return JSON.parse(readFileSync(recordPathOf(d.profile.backups.dir, id), 'utf8')) as FrozenRecord;
  } catch {
    return undefined;
  }
}

export function listFrozenRecords(d: ResolvedDeployment): FrozenRecord[] {
  return backupRecords(d, '.frozen.json', (file) => JSON.parse(readFileSync(file, 'utf8')) as FrozenRecord);
}

function maintenanceUrl(d: ResolvedDeployment): string {
  return urlFor(databaseUrl(d), 'postgres');
}

async function databaseOid(admin: pg.Client, name: string): Promise<number | undefined> {
  const { rows } = await admin.query('SELECT oid::bigint AS oid FROM pg_database WHERE datname = $1', [name]);
  return rows[0] ? Number(rows[0].oid) : undefined;
}

export interface FrozenCopyPrerequisites {
  method: 'frozen-copy' | 'dump-while-stopped';
  /** Reasons the frozen copy cannot be made: the upgrade refuses before anything changes. */
  problems: string[];
  /** Facts an operator should know (e.g. free space on the database server could not be checked). */
  warnings: string[];
  databaseBytes: number;
  serverFreeBytes?: number;
}

/**
 * Preflight of the frozen-copy method: the role may create databases, and the filesystem of the
 * database's tablespace has room for one more copy of it (checked when that directory is on this
 * machine and readable; otherwise a warning says it could not be checked).
 */
export async function frozenCopyPrerequisites(deployment: string): Promise<FrozenCopyPrerequisites> {
  const d = deploymentOf(deployment);
  const method = d.profile.backups.method;
  return withDatabase(databaseUrl(d), async (client) => {
    const size = Number((await client.query('SELECT pg_database_size(current_database())::bigint AS n')).rows[0].n);
    const result: FrozenCopyPrerequisites = { method, problems: [], warnings: [], databaseBytes: size };
    if (method !== 'frozen-copy') return result;
    const role = (await client.query(`SELECT current_user AS u, rolcreatedb OR rolsuper AS ok FROM pg_roles WHERE rolname = current_user`)).rows[0];
    if (!role?.ok) {
      result.problems.push(`the database role ${role?.u ?? '(unknown)'} lacks CREATEDB, which backups.method "frozen-copy" needs (and a rollback's restore too): ALTER ROLE ${role?.u ?? '<role>'} CREATEDB, or set backups.method to "dump-while-stopped"`);
    }
    const location = await databaseLocation(client, liveDatabaseName(databaseUrl(d)));
    const space = checkSpace(location, bytesNeededForCopy(size), `a frozen copy of the database (1.2x its ${mib(size)} + 256 MiB)`);
    result.serverFreeBytes = space.freeBytes;
    if (space.problem) result.problems.push(`${space.problem}; free space there, or set backups.method to "dump-while-stopped"`);
    if (space.unchecked) result.warnings.push(space.unchecked);
    return result;
  });
}

/**
 * A checkpoint while the old version still serves: CREATE DATABASE ... FILE_COPY starts with a
 * checkpoint of its own, inside the downtime, and it is cheap when this one just flushed the
 * dirty buffers. Needs superuser or pg_checkpoint; skipped (and said so) without.
 */
export async function checkpointBeforeStop(deployment: string): Promise<{ ms: number; skipped?: string }> {
  const d = deploymentOf(deployment);
  const started = Date.now();
  return withDatabase(databaseUrl(d), async (client) => {
    try {
      await keepAlive('checkpoint', () => client.query('CHECKPOINT'));
      return { ms: Date.now() - started };
    } catch (err) {
      return { ms: Date.now() - started, skipped: (err as Error).message };
    }
  });
}

/** A CREATE DATABASE of `name` still running on the server (a killed worker's attempt goes on server-side). */
async function createInProgress(admin: pg.Client, name: string): Promise<boolean> {
  const { rows } = await admin.query(
    `SELECT 1 FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND state = 'active' AND query ILIKE 'CREATE DATABASE ' || $1 || '%'`,
    [quoteIdent(name)],
  );
  return rows.length > 0;
}

/**
 * Copies the stopped app's database on its server. Idempotent: a copy made by an earlier attempt
 * (CREATE DATABASE is atomic: it exists only complete) is reused, one still being made is waited for.
 */
export function freezeDatabase(req: BackupRequest & { key: string }): Promise<FrozenRecord> {
  return keepAlive('frozen copy', () => freeze(req));
}

async function freeze(req: BackupRequest & { key: string }): Promise<FrozenRecord> {
  const d = deploymentOf(req.deployment);
  const dir = d.profile.backups.dir;
  ensurePrivateDir(dir);
  const existing = readFrozenRecord(d, req.id);
  if (existing) return existing;
  const url = databaseUrl(d);
  const live = liveDatabaseName(url);
  const frozen = frozenDatabaseName(live, req.key);
  const record = await withDatabase(maintenanceUrl(d), async (admin) => {
    while (await createInProgress(admin, frozen)) {
      heartbeat('an earlier attempt is still copying');
      await sleep(100);
    }
    let otherSessions: FrozenRecord['otherSessions'];
    if ((await databaseOid(admin, frozen)) === undefined) {
      otherSessions = await settleOtherSessions(d, admin, live, 'the frozen copy');
      try {
        const copying = admin.query(`CREATE DATABASE ${quoteIdent(frozen)} TEMPLATE ${quoteIdent(live)} STRATEGY FILE_COPY`);
        copying.catch(() => {}); // awaited below; a crash test holds the worker here meanwhile
        await failpoint('freeze.duringCopy');
        await copying;
      } catch (err) {
        if (isNoSpace(err)) {
          throw ApplicationFailure.create({
            message: `no space left on the database server for the frozen copy of ${live}: ${(err as Error).message}; the copy was not made and nothing changed. Free space there or set backups.method to "dump-while-stopped"`,
            type: FAILURE_TYPES.noSpace,
            nonRetryable: true,
          });
        }
        throw err;
      }
    }
    await failpoint('freeze.afterCopy');
    await admin.query(`COMMENT ON DATABASE ${quoteIdent(frozen)} IS '${frozenComment(req.id, live).replace(/'/g, "''")}'`);
    const frozenOid = (await databaseOid(admin, frozen))!;
    const r: FrozenRecord = {
      id: req.id,
      deployment: d.name,
      kind: req.kind,
      createdAt: new Date().toISOString(),
      file: path.join(dir, `${req.id}.dump`),
      database: live,
      gitSha: req.gitSha,
      gitTag: req.gitTag,
      environment: d.profile.toolchain.env.DECISION_GRAPH_DEPLOYMENT_ENV ?? d.profile.toolchain.env.MIX_ENV ?? 'prod',
      workflowId: req.workflowId,
      otherSessions,
      frozenDatabase: frozen,
      frozenOid,
    };
    return r;
  });
  const file = recordPathOf(dir, req.id);
  try {
    writePrivateFile(`${file}.tmp`, JSON.stringify(record, null, 2));
  } catch (err) {
    // The app is down: a full backup dir is not retried; the old version is restarted at once.
    if (!isNoSpace(err)) throw err;
    throw await noSpaceForBackup(d, databaseUrl(d), dir, `${file}.tmp`);
  }
  renameSync(`${file}.tmp`, file);
  return record;
}

async function frozenExists(d: ResolvedDeployment, record: FrozenRecord): Promise<boolean> {
  return withDatabase(maintenanceUrl(d), async (admin) => (await databaseOid(admin, record.frozenDatabase)) === record.frozenOid);
}

function writeManifest(d: ResolvedDeployment, manifest: BackupManifest): BackupManifest {
  const file = manifestPathOf(d.profile.backups.dir, manifest.id);
  const sealed = sealManifest(d, manifest);
  writePrivateFile(`${file}.tmp`, JSON.stringify(sealed, null, 2));
  renameSync(`${file}.tmp`, file);
  return sealed;
}

function gone(record: FrozenRecord): ApplicationFailure {
  return ApplicationFailure.create({
    message: `the frozen copy ${record.frozenDatabase} of backup ${record.id} is gone and its pg_dump file was never written: there is no backup ${record.id} to restore`,
    type: FAILURE_TYPES.noBackup,
    nonRetryable: true,
  });
}

/**
 * The manifest of a frozen copy whose dump is not written yet (a rollback before the upgrade's
 * portable backup finished): its figures counted in the copy, no file. Written, so that the
 * rollback's later steps read the same figures after the copy is swapped in.
 */
export async function frozenManifest(d: ResolvedDeployment, record: FrozenRecord): Promise<BackupManifest> {
  if (!(await frozenExists(d, record))) throw gone(record);
  const figures = await keepAlive('counting the frozen copy', () =>
    withDatabase(urlFor(databaseUrl(d), record.frozenDatabase), async (client) => ({
      databaseBytes: await databaseBytes(client),
      migrationVersions: await migrationVersions(client),
      rowCounts: await tableRowCounts(client),
      eventLog: await eventLogMark(client),
    })),
  );
  return writeManifest(d, {
    ...record,
    sizeBytes: 0,
    sha256: '',
    ...figures,
    verified: { at: new Date().toISOString(), tocEntries: 0 },
    method: 'frozen-copy',
    state: 'frozen',
  });
}

/**
 * Writes the portable `pg_dump --format=custom` file from the frozen copy, its manifest (figures
 * from the dump's own snapshot of a database nobody writes to), and verifies it: pg_restore
 * --list, size and sha256 read back. Idempotent: a complete, matching backup is returned as is.
 */
export function dumpFrozenCopy(req: { deployment: string; id: string }): Promise<BackupManifest> {
  return keepAlive('portable backup', async () => {
    try {
      return await dumpFrozen(req);
    } catch (err) {
      // The backup still exists as the frozen copy: give it a manifest (figures counted in the
      // copy, no file), so that `backups` lists it and a rollback can select it.
      const d = deploymentOf(req.deployment);
      const record = readFrozenRecord(d, req.id);
      if (record && !existsSync(manifestPathOf(d.profile.backups.dir, req.id))) await frozenManifest(d, record).catch(() => {});
      throw err;
    }
  });
}

async function dumpFrozen(req: { deployment: string; id: string }): Promise<BackupManifest> {
  const d = deploymentOf(req.deployment);
  const dir = d.profile.backups.dir;
  const record = readFrozenRecord(d, req.id);
  if (!record) throw ApplicationFailure.create({ message: `no frozen copy record ${req.id} in ${dir}`, type: FAILURE_TYPES.noBackup, nonRetryable: true });
  const manifestFile = manifestPathOf(dir, req.id);
  if (existsSync(manifestFile) && existsSync(record.file)) {
    const existing = readManifest(manifestFile);
    if (existing.state === 'complete' && (await sha256File(record.file)) === existing.sha256) return existing;
  }
  if (!(await frozenExists(d, record))) throw gone(record);
  const frozenUrl = urlFor(databaseUrl(d), record.frozenDatabase);
  const partial = `${record.file}.partial`;
  // A dump an earlier attempt renamed into place but never recorded is not trusted: dumped again.
  rmSync(record.file, { force: true });
  let facts: DumpFigures;
  try {
    facts = await dumpWithFigures(d, frozenUrl, partial);
  } catch (err) {
    if (!isNoSpace(err)) throw err;
    throw await noSpaceForBackup(d, frozenUrl, dir, partial);
  }
  await failpoint('portableBackup.afterDump');
  try {
    return await verifyAndRecord(d, record, partial, facts);
  } catch (err) {
    if (!isNoSpace(err)) throw err;
    // The dump fitted, its manifest did not: nothing half-written stays (the copy does).
    rmSync(record.file, { force: true });
    rmSync(`${manifestFile}.tmp`, { force: true });
    throw await noSpaceForBackup(d, frozenUrl, dir, partial);
  }
}

/** The dump renamed into place, read back (size, sha256, pg_restore --list) and its sealed manifest written. */
async function verifyAndRecord(d: ResolvedDeployment, record: FrozenRecord, partial: string, facts: DumpFigures): Promise<BackupManifest> {
  renameSync(partial, record.file);
  heartbeat('verifying the dump');
  const sizeBytes = statSync(record.file).size;
  const sha256 = await sha256File(record.file);
  const entries = await tocEntries(d, record.file);
  // Read back what was written, so a file damaged on its way to disk is not called verified.
  if (statSync(record.file).size !== sizeBytes || (await sha256File(record.file)) !== sha256) {
    throw ApplicationFailure.nonRetryable(`the dump ${record.file} changed while it was verified`);
  }
  return writeManifest(d, {
    ...record,
    sizeBytes,
    sha256,
    databaseBytes: facts.databaseBytes,
    migrationVersions: facts.migrationVersions,
    rowCounts: facts.rowCounts,
    eventLog: facts.eventLog,
    snapshot: facts.snapshot,
    verified: { at: new Date().toISOString(), tocEntries: entries },
    method: 'frozen-copy',
    state: 'complete',
  });
}

/**
 * Drops frozen copies beyond `backups.frozenCopies.keep` (newest first; never `keepId`'s).
 * A copy whose pg_dump file was never written is the only backup of its upgrade: kept, and said so.
 */
export async function pruneFrozenCopies(deployment: string, keepId: string): Promise<{ dropped: string[]; kept: string[]; notes: string[] }> {
  const d = deploymentOf(deployment);
  const live = liveDatabaseName(databaseUrl(d));
  const out = { dropped: [] as string[], kept: [] as string[], notes: [] as string[] };
  await withDatabase(maintenanceUrl(d), async (admin) => {
    const { rows } = await admin.query(
      `SELECT datname, shobj_description(oid, 'pg_database') AS c FROM pg_database WHERE shobj_description(oid, 'pg_database') LIKE 'dg-upgrade: frozen copy % of ' || $1`,
      [live],
    );
    const copies = rows
      .map((r) => ({ name: r.datname as string, id: /frozen copy (\S+) of /.exec(r.c as string)?.[1] ?? '' }))
      .map((c) => ({ ...c, createdAt: readFrozenRecord(d, c.id)?.createdAt ?? '' }))
      .sort((a, b) => b.createdAt.localeCompare(a.createdAt));
    const keep = new Set([keepId, ...copies.slice(0, d.profile.backups.frozenCopies.keep).map((c) => c.id)]);
    for (const c of copies) {
      if (keep.has(c.id)) {
        out.kept.push(c.name);
        continue;
      }
      const manifestFile = manifestPathOf(d.profile.backups.dir, c.id);
      const complete = existsSync(manifestFile) && readManifest(manifestFile).state === 'complete';
      if (!complete && readFrozenRecord(d, c.id)) {
        out.kept.push(c.name);
        out.notes.push(`frozen copy ${c.name} kept: its pg_dump file was never written, it is the only backup ${c.id}`);
        continue;
      }
      await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(c.name)} WITH (FORCE)`);
      out.dropped.push(c.name);
    }
  });
  return out;
}

