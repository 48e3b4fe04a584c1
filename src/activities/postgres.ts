import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, statfsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import { heartbeat } from './heartbeat.js';
import pg from 'pg';
import { redactDatabaseUrl } from '../config/secrets.js';
import type { ResolvedDeployment } from '../config/profile.js';
import { FAILURE_TYPES, type BackupManifest, type EventLogMark } from '../workflows/types.js';
import { databaseUrl, deploymentOf, secretValues } from './deployment.js';
import { runCommand } from './exec.js';
import { failpoint } from './failpoints.js';
import { keepAlive } from './heartbeat.js';
import { commandPidDirOf, logDirOf } from './layout.js';

export async function withDatabase<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
  } catch (err) {
    throw ApplicationFailure.create({
      message: `cannot connect to the database ${redactDatabaseUrl(url)}: ${(err as Error).message}; check database.url in the profile and that PostgreSQL is up`,
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

export async function migrationVersions(client: pg.Client): Promise<string[]> {
  const exists = await client.query(`SELECT to_regclass('public.schema_migrations') AS t`);
  if (!exists.rows[0].t) return [];
  const { rows } = await client.query<{ version: string }>('SELECT version::text AS version FROM schema_migrations ORDER BY version');
  return rows.map((r) => r.version);
}

export async function eventLogMark(client: pg.Client): Promise<EventLogMark & { checksum: string }> {
  const exists = await client.query(`SELECT to_regclass('public.dg_event_log') AS t`);
  if (!exists.rows[0].t) return { maxLogSeq: 0, rowCount: 0, checksum: '' };
  const { rows } = await client.query(
    `SELECT coalesce(max(log_seq), 0)::bigint AS max, count(*)::bigint AS n,
            md5(coalesce(string_agg(t::text, '|' ORDER BY log_seq), '')) AS checksum
       FROM dg_event_log t`,
  );
  return { maxLogSeq: Number(rows[0].max), rowCount: Number(rows[0].n), checksum: rows[0].checksum };
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
    const mark = await eventLogMark(client);
    return {
      name: size.rows[0].name,
      redactedUrl: redactDatabaseUrl(url),
      migrationVersions: await migrationVersions(client),
      eventLog: { maxLogSeq: mark.maxLogSeq, rowCount: mark.rowCount },
      sizeBytes: Number(size.rows[0].size),
    };
  });
}

export function freeDiskBytes(dir: string): number {
  mkdirSync(dir, { recursive: true });
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
}

/** pg tools get the password through PGPASSWORD, never on the command line (ps would show it). */
export function pgToolConnection(url: string): { dbArg: string; env: Record<string, string> } {
  const u = new URL(url);
  const password = decodeURIComponent(u.password);
  u.password = '';
  return { dbArg: u.toString(), env: password ? { PGPASSWORD: password } : {} };
}

function sha256File(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(file)
      .on('data', (c) => hash.update(c))
      .on('end', () => resolve(hash.digest('hex')))
      .on('error', reject);
  });
}

function manifestPathOf(dir: string, id: string): string {
  return path.join(dir, `${id}.manifest.json`);
}

export function readManifest(file: string): BackupManifest {
  return JSON.parse(readFileSync(file, 'utf8')) as BackupManifest;
}

export function listManifests(d: ResolvedDeployment): BackupManifest[] {
  const dir = d.profile.backups.dir;
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.manifest.json'))
    .map((f) => readManifest(path.join(dir, f)))
    .filter((m) => m.deployment === d.name)
    .sort((a, b) => a.createdAt.localeCompare(b.createdAt));
}

async function tocEntries(d: ResolvedDeployment, file: string): Promise<number> {
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

async function takeBackup(req: BackupRequest): Promise<BackupManifest> {
  const d = deploymentOf(req.deployment);
  const dir = d.profile.backups.dir;
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${req.id}.dump`);
  const manifestFile = manifestPathOf(dir, req.id);
  if (existsSync(manifestFile) && existsSync(file)) {
    const existing = readManifest(manifestFile);
    if ((await sha256File(file)) === existing.sha256) return existing;
  }
  rmSync(manifestFile, { force: true });
  const url = databaseUrl(d);
  const { dbArg, env } = pgToolConnection(url);
  const partial = `${file}.partial`;
  heartbeat('pg_dump');
  await runCommand('pg_dump', ['--format=custom', '--no-owner', '--no-privileges', `--file=${partial}`, `--dbname=${dbArg}`], {
    cwd: dir,
    env,
    secrets: secretValues(d),
    logFile: path.join(logDirOf(d), 'backup.log'),
    exclusive: { key: `${d.name}-pg`, pidDir: commandPidDirOf(d) },
  });
  await failpoint('backup.afterDump');
  renameSync(partial, file);
  heartbeat('manifest');
  // Taken with the app stopped, so the counts describe exactly what the dump holds.
  const facts = await withDatabase(url, async (client) => ({
    database: (await client.query('SELECT current_database() AS n')).rows[0].n as string,
    migrationVersions: await migrationVersions(client),
    rowCounts: await tableRowCounts(client),
    eventLog: await eventLogMark(client),
  }));
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
    gitSha: req.gitSha,
    gitTag: req.gitTag,
    environment: d.profile.toolchain.env.DECISION_GRAPH_DEPLOYMENT_ENV ?? d.profile.toolchain.env.MIX_ENV ?? 'prod',
    migrationVersions: facts.migrationVersions,
    rowCounts: facts.rowCounts,
    eventLog: facts.eventLog,
    workflowId: req.workflowId,
    verified: { at: new Date().toISOString(), tocEntries: entries },
  };
  writeFileSync(`${manifestFile}.tmp`, JSON.stringify(manifest, null, 2));
  renameSync(`${manifestFile}.tmp`, manifestFile);
  await failpoint('backup.afterManifest');
  return manifest;
}

export interface BackupVerification {
  id: string;
  ok: boolean;
  problems: string[];
  manifest?: BackupManifest;
}

/** Checks a backup's file against its manifest: present, same size and sha256, readable by pg_restore. */
export async function verifyBackup(deployment: string, id: string): Promise<BackupVerification> {
  const d = deploymentOf(deployment);
  const manifestFile = manifestPathOf(d.profile.backups.dir, id);
  if (!existsSync(manifestFile)) return { id, ok: false, problems: [`no manifest ${manifestFile}`] };
  const manifest = readManifest(manifestFile);
  const problems: string[] = [];
  if (!existsSync(manifest.file)) problems.push(`dump file ${manifest.file} is missing`);
  else {
    if (statSync(manifest.file).size !== manifest.sizeBytes) problems.push('size differs from the manifest');
    if ((await sha256File(manifest.file)) !== manifest.sha256) problems.push('sha256 differs from the manifest');
    try {
      await tocEntries(d, manifest.file);
    } catch (err) {
      problems.push(`pg_restore --list failed: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  return { id, ok: problems.length === 0, problems, manifest };
}

/** Keeps the newest `backups.keep` backups of the deployment; never the one just taken. */
export async function pruneBackups(deployment: string, keepId: string): Promise<string[]> {
  const d = deploymentOf(deployment);
  const manifests = listManifests(d);
  const excess = manifests.slice(0, Math.max(0, manifests.length - d.profile.backups.keep)).filter((m) => m.id !== keepId);
  for (const m of excess) {
    rmSync(m.file, { force: true });
    rmSync(manifestPathOf(d.profile.backups.dir, m.id), { force: true });
  }
  return excess.map((m) => m.id);
}
