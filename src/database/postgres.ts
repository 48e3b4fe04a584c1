import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, statfsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import { heartbeat, keepAlive, withByteProgress } from '../activities/heartbeat.js';
import pg from 'pg';
import { redactDatabaseUrl } from '../config/secrets.js';
import type { ResolvedDeployment } from '../config/profile.js';
import { FAILURE_TYPES, type BackupManifest, type EventLogMark } from '../domain/types.js';
import { databaseUrl, deploymentOf, secretValues } from '../activities/deployment.js';
import { runCommand } from '../activities/exec.js';
import { failpoint } from '../activities/failpoints.js';
import { settleOtherSessions } from './sessions.js';
import { eventLogDigest } from './eventLogDigest.js';
import { commandPidDirOf, logDirOf } from '../activities/layout.js';
import { checkSeal, sealManifest } from './manifestSeal.js';
import { verifyManifestAgainstDump } from './manifestCheck.js';

export async function withDatabase<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000, application_name: 'dg-upgrade' });
  try {
    await client.connect();
  } catch (err) {
    const held = (err as { code?: string }).code === '3D000' ? await heldAsideAs(url) : undefined;
    throw ApplicationFailure.create({
      message: held
        ? `the database ${held.live} does not exist: a rollback holds it aside as ${held.aside} while its data-loss gate asks again; answer that rollback (dg-upgrade status <deployment>), or if that run is gone, rename it back: ALTER DATABASE "${held.aside}" RENAME TO "${held.live}"`
        : `cannot connect to the database ${redactDatabaseUrl(url)}: ${(err as Error).message}; check database.url in the profile and that PostgreSQL is up`,
      type: FAILURE_TYPES.databaseUnreachable,
      nonRetryable: true,
    });
  }
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** Same server and credentials, another database: the maintenance db for CREATE/RENAME, or a sibling. */
export function urlFor(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
}

export function liveDatabaseName(url: string): string {
  return decodeURIComponent(new URL(url).pathname.replace(/^\//, ''));
}

/** How a rollback marks the live database it holds aside while its data-loss gate asks again. */
export function heldAsideComment(live: string, count: number): string {
  return `${heldAsidePrefix(live)} while the operator approves discarding ${count} events; abandoning the rollback renames it back (by hand: ALTER DATABASE <this> RENAME TO ${live})`;
}

function heldAsidePrefix(live: string): string {
  return `dg-upgrade: live database ${live} held aside by a rollback`;
}

/** The database a rollback holds aside under another name (its comment says so), when `url`'s database is missing. */
async function heldAsideAs(url: string): Promise<{ live: string; aside: string } | undefined> {
  const live = liveDatabaseName(url);
  if (live === 'postgres') return undefined; // the maintenance database itself is missing: nothing to look in
  try {
    return await withDatabase(urlFor(url, 'postgres'), async (admin) => {
      const { rows } = await admin.query(
        `SELECT d.datname FROM pg_database d JOIN pg_shdescription s ON s.objoid = d.oid AND s.classoid = 'pg_database'::regclass
          WHERE s.description LIKE $1 ORDER BY d.oid DESC LIMIT 1`,
        [`${heldAsidePrefix(live).replace(/[\\%_]/g, '\\$&')}%`],
      );
      return rows[0] ? { live, aside: rows[0].datname as string } : undefined;
    });
  } catch {
    return undefined;
  }
}

export async function migrationVersions(client: pg.Client): Promise<string[]> {
  const exists = await client.query(`SELECT to_regclass('public.schema_migrations') AS t`);
  if (!exists.rows[0].t) return [];
  const { rows } = await client.query<{ version: string }>('SELECT version::text AS version FROM schema_migrations ORDER BY version');
  return rows.map((r) => r.version);
}

/**
 * High-water mark, row count and digest of the event log, or of its rows up to `upToLogSeq`, in
 * chunks (bounded memory at any size), heartbeating with its progress. `like`: an earlier
 * checksum (a manifest's) whose scheme this one must use to compare.
 */
export async function eventLogMark(
  client: pg.Client,
  upToLogSeq?: number,
  opts: { like?: string; inSnapshot?: boolean; failpoint?: string } = {},
): Promise<EventLogMark & { checksum: string }> {
  const { chunks: _chunks, ...mark } = await eventLogDigest(client, {
    upTo: upToLogSeq,
    like: opts.like,
    inSnapshot: opts.inSnapshot,
    onChunk: async (p) => {
      heartbeat({ step: 'event-log digest', rows: p.rows, ofRows: p.estimatedRows, lastLogSeq: p.lastLogSeq });
      await failpoint(opts.failpoint ?? 'digest.chunk');
    },
  });
  return mark;
}

/** High-water mark and row count without the checksum (a read of the whole event log): what preflight shows. */
export async function eventLogHead(client: pg.Client): Promise<EventLogMark> {
  const exists = await client.query(`SELECT to_regclass('public.dg_event_log') AS t`);
  if (!exists.rows[0].t) return { maxLogSeq: 0, rowCount: 0 };
  const { rows } = await client.query(`SELECT coalesce(max(log_seq), 0)::bigint AS max, count(*)::bigint AS n FROM dg_event_log`);
  return { maxLogSeq: Number(rows[0].max), rowCount: Number(rows[0].n) };
}

export async function databaseBytes(client: pg.Client): Promise<number> {
  return Number((await client.query('SELECT pg_database_size(current_database())::bigint AS n')).rows[0].n);
}

/** Exact row count of every table in the public schema. */
export async function tableRowCounts(client: pg.Client): Promise<Record<string, number>> {
  const { rows } = await client.query<{ tablename: string }>(`SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`);
  const counts: Record<string, number> = {};
  for (const { tablename } of rows) {
    const r = await client.query(`SELECT count(*)::bigint AS n FROM "${tablename.replace(/"/g, '""')}"`);
    counts[tablename] = Number(r.rows[0].n);
  }
  return counts;
}

export interface DatabaseInspection {
  name: string;
  redactedUrl: string;
  migrationVersions: string[];
  eventLog: EventLogMark;
  sizeBytes: number;
}

export async function inspectDatabase(d: ResolvedDeployment): Promise<DatabaseInspection> {
  const url = databaseUrl(d);
  return withDatabase(url, async (client) => {
    const size = await client.query(`SELECT current_database() AS name, pg_database_size(current_database())::bigint AS size`);
    const mark = await eventLogHead(client);
    return {
      name: size.rows[0].name,
      redactedUrl: redactDatabaseUrl(url),
      migrationVersions: await migrationVersions(client),
      eventLog: { maxLogSeq: mark.maxLogSeq, rowCount: mark.rowCount },
      sizeBytes: Number(size.rows[0].size),
    };
  });
}

/** Free bytes on the filesystem that holds (or will hold) `dir`; creates nothing. */
export function freeDiskBytes(dir: string): number {
  let existing = dir;
  while (!existsSync(existing) && path.dirname(existing) !== existing) existing = path.dirname(existing);
  const s = statfsSync(existing);
  return s.bavail * s.bsize;
}

/** pg tools get the password through PGPASSWORD, never on the command line (ps would show it). */
export function pgToolConnection(url: string): { dbArg: string; env: Record<string, string> } {
  const u = new URL(url);
  const password = decodeURIComponent(u.password);
  u.password = '';
  return { dbArg: u.toString(), env: password ? { PGPASSWORD: password } : {} };
}

/**
 * The sha256 of a file, read through one reused 1 MiB buffer: a read stream allocates a new
 * 64 KiB Buffer per chunk, and over a dump of gigabytes that churn alone raised the worker's
 * peak RSS by about 36 MB (1 GiB file; 3 MB this way, and a quarter faster).
 */
export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  const handle = await open(file, 'r');
  const buffer = Buffer.allocUnsafeSlow(1 << 20);
  try {
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
    }
  } finally {
    await handle.close();
  }
  return hash.digest('hex');
}

export function manifestPathOf(dir: string, id: string): string {
  return path.join(dir, `${id}.manifest.json`);
}

/** A manifest file's content; an unreadable or malformed one is reported with its path. */
export function readManifest(file: string): BackupManifest {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read the backup manifest ${file}: ${(err as Error).message}`);
  }
  let m: BackupManifest;
  try {
    m = JSON.parse(text) as BackupManifest;
  } catch (err) {
    throw new Error(`the backup manifest ${file} is not valid JSON (${(err as Error).message}); restore it from a copy, or remove it with its dump if the backup is not needed`);
  }
  const missing = manifestShapeProblems(m);
  if (missing.length) throw new Error(`the backup manifest ${file} is malformed: ${missing.join(', ')}`);
  return m;
}

/** The fields every reader relies on, with their types. */
function manifestShapeProblems(m: unknown): string[] {
  if (!m || typeof m !== 'object' || Array.isArray(m)) return ['not a JSON object'];
  const o = m as Record<string, unknown>;
  const problems: string[] = [];
  for (const f of ['id', 'deployment', 'kind', 'createdAt', 'file', 'sha256', 'gitSha']) if (typeof o[f] !== 'string') problems.push(`"${f}" is not a string`);
  if (typeof o.sizeBytes !== 'number') problems.push('"sizeBytes" is not a number');
  if (!Array.isArray(o.migrationVersions)) problems.push('"migrationVersions" is not an array');
  if (!o.rowCounts || typeof o.rowCounts !== 'object') problems.push('"rowCounts" is not an object');
  const ev = o.eventLog as Record<string, unknown> | undefined;
  if (!ev || typeof ev.maxLogSeq !== 'number' || typeof ev.rowCount !== 'number') problems.push('"eventLog" lacks numeric maxLogSeq/rowCount');
  return problems;
}

/** The records of this deployment in its backups dir: the files ending in `suffix`, read by `read`. */
export function backupRecords<T extends { deployment: string }>(d: ResolvedDeployment, suffix: string, read: (file: string) => T): T[] {
  const dir = d.profile.backups.dir;
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith(suffix))
    .map((f) => read(path.join(dir, f)))
    .filter((r) => r.deployment === d.name);
}

export function listManifests(d: ResolvedDeployment): BackupManifest[] {
  return backupRecords(d, '.manifest.json', readManifest).sort((a, b) => a.createdAt.localeCompare(b.createdAt));
}

export async function tocEntries(d: ResolvedDeployment, file: string): Promise<number> {
  const listing = await runCommand('pg_restore', ['--list', file], { cwd: path.dirname(file), secrets: secretValues(d) });
  const tables = listing.split('\n').filter((l) => / TABLE DATA /.test(l));
  if (tables.length === 0) throw new Error(`pg_restore --list ${file} lists no table data`);
  return listing.split('\n').filter((l) => /^\d+;/.test(l)).length;
}

export interface BackupRequest {
  deployment: string;
  /** Stable per workflow run, so a retried or re-run activity finds the backup it already made. */
  id: string;
  workflowId: string;
  gitSha: string;
  gitTag?: string;
  kind: BackupManifest['kind'];
}

/**
 * `pg_dump --format=custom` into the backup dir, a manifest beside it, verified with
 * `pg_restore --list`. Idempotent: a complete backup with this id is verified and reused; a
 * half-written one (no manifest) is removed and taken again.
 */
export function backupDatabase(req: BackupRequest): Promise<BackupManifest> {
  return keepAlive('backup', () => takeBackup(req));
}

/** Backups hold the whole database: only their owner may read them. */
export function ensurePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
}

/** Other local users can read this dir (an older dg-upgrade, or a hand-made dir): worth a warning. */
export function backupDirWarning(dir: string): string | undefined {
  try {
    const mode = statSync(dir).mode & 0o777;
    if (mode & 0o077) return `backup dir ${dir} is readable by group or others (mode ${mode.toString(8)}); backups hold the whole database: chmod 700 ${dir} and chmod 600 the files in it`;
  } catch {
    /* not there yet: created 0700 */
  }
  return undefined;
}

/** Writes a file that only its owner can read, created with that mode (never chmod'ed after). */
export function writePrivateFile(file: string, data: string): void {
  rmSync(file, { force: true });
  writeFileSync(file, data, { mode: 0o600, flag: 'wx' });
}

export function isNoSpace(err: unknown): boolean {
  return /No space left on device|ENOSPC|could not extend file|disk full/i.test((err as Error)?.message ?? '');
}

/** Which filesystem holds `dir`: the mount point from /proc/self/mountinfo (longest matching prefix). */
function mountPointOf(dir: string): string {
  try {
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]).filter((m): m is string => !!m);
    return mounts.filter((m) => dir === m || dir.startsWith(m.endsWith('/') ? m : `${m}/`)).sort((a, b) => b.length - a.length)[0] ?? '/';
  } catch {
    return '/';
  }
}

export type DumpFigures = Pick<BackupManifest, 'database' | 'databaseBytes' | 'migrationVersions' | 'rowCounts' | 'eventLog' | 'snapshot'>;

/**
 * `pg_dump --format=custom` of the database at `url` into `partial` (created 0600 first), and
 * the manifest's figures counted in the dump's own exported snapshot: they describe exactly what
 * the dump holds, whatever other clients write meanwhile.
 */
export async function dumpWithFigures(d: ResolvedDeployment, url: string, partial: string): Promise<DumpFigures> {
  const dir = path.dirname(partial);
  const { dbArg, env } = pgToolConnection(url);
  // Created 0600 before pg_dump opens it: pg_dump truncates it and keeps the mode.
  writePrivateFile(partial, '');
  return withDatabase(url, async (client) => {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const snapshot = (await client.query('SELECT pg_export_snapshot() AS s')).rows[0].s as string;
    const size = await databaseBytes(client);
    const dump = withByteProgress('pg_dump', () => statSync(partial).size, size, () => runCommand('pg_dump', ['--format=custom', '--no-owner', '--no-privileges', `--snapshot=${snapshot}`, `--file=${partial}`, `--dbname=${dbArg}`], {
      cwd: dir,
      env,
      secrets: secretValues(d),
      logFile: path.join(logDirOf(d), 'backup.log'),
      exclusive: { key: `${d.name}-pg`, pidDir: commandPidDirOf(d) },
    }));
    const counted = (async () => ({
      snapshot,
      database: (await client.query('SELECT current_database() AS n')).rows[0].n as string,
      databaseBytes: size,
      migrationVersions: await migrationVersions(client),
      rowCounts: await tableRowCounts(client),
      eventLog: await eventLogMark(client, undefined, { inSnapshot: true }),
    }))();
    const [dumped, figures] = await Promise.allSettled([dump, counted]);
    await client.query('COMMIT').catch(() => {});
    if (dumped.status === 'rejected') throw dumped.reason;
    if (figures.status === 'rejected') throw figures.reason;
    return figures.value;
  });
}

/** The no-space failure of a backup: names the filesystem, removes the partial dump, not retryable. */
export async function noSpaceForBackup(d: ResolvedDeployment, url: string, dir: string, partial: string): Promise<ApplicationFailure> {
  rmSync(partial, { force: true });
  const needed = await withDatabase(url, async (c) => Number((await c.query('SELECT pg_database_size(current_database())::bigint AS n')).rows[0].n));
  return ApplicationFailure.create({
    message: `no space left for the backup on the filesystem ${mountPointOf(dir)} (backup dir ${dir}): ${freeDiskBytes(dir)} bytes free, up to ${needed} needed (the database's size); the partial dump was removed. Free space there or point backups.dir at a bigger filesystem`,
    type: FAILURE_TYPES.noSpace,
    nonRetryable: true,
  });
}

async function takeBackup(req: BackupRequest): Promise<BackupManifest> {
  const d = deploymentOf(req.deployment);
  const dir = d.profile.backups.dir;
  ensurePrivateDir(dir);
  const file = path.join(dir, `${req.id}.dump`);
  const manifestFile = manifestPathOf(dir, req.id);
  if (existsSync(manifestFile) && existsSync(file)) {
    const existing = readManifest(manifestFile);
    if ((await sha256File(file)) === existing.sha256) return existing;
  }
  rmSync(manifestFile, { force: true });
  const url = databaseUrl(d);
  const live = decodeURIComponent(new URL(url).pathname.replace(/^\//, ''));
  const maintenanceUrl = (() => { const u = new URL(url); u.pathname = '/postgres'; return u.toString(); })();
  heartbeat('other sessions');
  const otherSessions = await withDatabase(maintenanceUrl, (admin) => settleOtherSessions(d, admin, live, 'the backup'));
  const partial = `${file}.partial`;
  let facts: DumpFigures;
  try {
    facts = await dumpWithFigures(d, url, partial);
  } catch (err) {
    if (!isNoSpace(err)) throw err;
    throw await noSpaceForBackup(d, url, dir, partial);
  }
  await failpoint('backup.afterDump');
  renameSync(partial, file);
  heartbeat('manifest');
  const sizeBytes = statSync(file).size;
  const sha256 = await sha256File(file);
  const entries = await tocEntries(d, file);
  const manifest: BackupManifest = {
    id: req.id,
    deployment: d.name,
    kind: req.kind,
    createdAt: new Date().toISOString(),
    file,
    sizeBytes,
    sha256,
    database: facts.database,
    databaseBytes: facts.databaseBytes,
    gitSha: req.gitSha,
    gitTag: req.gitTag,
    environment: d.profile.toolchain.env.DECISION_GRAPH_DEPLOYMENT_ENV ?? d.profile.toolchain.env.MIX_ENV ?? 'prod',
    migrationVersions: facts.migrationVersions,
    rowCounts: facts.rowCounts,
    eventLog: facts.eventLog,
    workflowId: req.workflowId,
    verified: { at: new Date().toISOString(), tocEntries: entries },
    snapshot: facts.snapshot,
    otherSessions,
  };
  const sealed = sealManifest(d, manifest);
  writePrivateFile(`${manifestFile}.tmp`, JSON.stringify(sealed, null, 2));
  renameSync(`${manifestFile}.tmp`, manifestFile);
  await failpoint('backup.afterManifest');
  return sealed;
}

export interface BackupVerification {
  id: string;
  ok: boolean;
  problems: string[];
  manifest?: BackupManifest;
  /** `sealed`: the manifest's seal matches (VERIFIED); `unsealed`: an older manifest, its figures cross-checked with the dump; `bad`: edited, or its seal cannot be checked. */
  seal?: 'sealed' | 'unsealed' | 'bad';
  /** What could not be checked (e.g. an unsealed manifest's gitSha). */
  notes?: string[];
}

/**
 * Checks a backup against its manifest: the manifest's seal (or, for an older unsealed one, its
 * figures against what the dump holds), the file present with the same size and sha256, readable
 * by pg_restore with the TOC the manifest recorded. Every problem names the file or the field.
 */
export async function verifyBackup(deployment: string, id: string): Promise<BackupVerification> {
  const d = deploymentOf(deployment);
  const manifestFile = manifestPathOf(d.profile.backups.dir, id);
  if (!existsSync(manifestFile)) return { id, ok: false, problems: [`no manifest ${manifestFile}`] };
  let manifest: BackupManifest;
  try {
    manifest = readManifest(manifestFile);
  } catch (err) {
    return { id, ok: false, problems: [(err as Error).message], seal: 'bad' };
  }
  const problems: string[] = [];
  const notes: string[] = [];
  const seal = checkSeal(d, manifest, manifestFile);
  if (seal.state === 'bad') problems.push(seal.problem);
  if (seal.state === 'unsealed') notes.push(seal.note);
  if (!existsSync(manifest.file)) problems.push(`dump file ${manifest.file} is missing`);
  else {
    if (statSync(manifest.file).size !== manifest.sizeBytes) problems.push(`${manifest.file}: size ${statSync(manifest.file).size} differs from the manifest's sizeBytes ${manifest.sizeBytes}`);
    if ((await sha256File(manifest.file)) !== manifest.sha256) problems.push(`${manifest.file}: sha256 differs from the manifest's (the file changed since the backup)`);
    try {
      const entries = await tocEntries(d, manifest.file);
      if (manifest.verified?.tocEntries && entries !== manifest.verified.tocEntries) problems.push(`${manifest.file}: pg_restore --list lists ${entries} entries, the manifest's verified.tocEntries says ${manifest.verified.tocEntries}`);
      if (seal.state === 'unsealed') {
        const cross = await verifyManifestAgainstDump(d, manifest);
        problems.push(...cross.problems.map((p) => `${manifestFile}: ${p}`));
        notes.push(...cross.notes);
      }
    } catch (err) {
      problems.push(`pg_restore --list ${manifest.file} failed: ${(err as Error).message}`);
    }
  }
  return { id, ok: problems.length === 0, problems, manifest, seal: seal.state === 'bad' ? 'bad' : seal.state, notes };
}

/** Keeps the newest `backups.keep` backups of the deployment; never the one just taken. */
export async function pruneBackups(deployment: string, keepId: string): Promise<string[]> {
  const d = deploymentOf(deployment);
  const manifests = listManifests(d);
  const excess = manifests.slice(0, Math.max(0, manifests.length - d.profile.backups.keep)).filter((m) => m.id !== keepId);
  for (const m of excess) {
    rmSync(m.file, { force: true });
    rmSync(manifestPathOf(d.profile.backups.dir, m.id), { force: true });
    rmSync(path.join(d.profile.backups.dir, `${m.id}.frozen.json`), { force: true });
  }
  return excess.map((m) => m.id);
}
