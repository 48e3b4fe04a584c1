import { existsSync, statSync } from 'node:fs';
import os from 'node:os';
import { ApplicationFailure } from '@temporalio/activity';
import type pg from 'pg';
import { durationMs, type ResolvedDeployment } from '../config/profile.js';
import { FAILURE_TYPES, type BackupManifest, type DatabaseSession } from '../domain/types.js';
import { databaseUrl, deploymentOf } from './deployment.js';
import { heartbeat, keepAlive, sleep } from './heartbeat.js';
import { liveDatabaseName, sha256File, tocEntries, urlFor, withDatabase } from '../database/postgres.js';
import { findManifest, swapCopiesFrozenCopy } from '../database/restore.js';
import { bytesNeededForCopy, checkSpace, databaseLocation } from '../database/space.js';
import { appClientPorts } from './listeners.js';
import { describeSessions, sessionRows, withoutClients, type SessionRow } from '../database/sessions.js';

/**
 * Issue 20: what a rollback needs is checked while the version it replaces still serves, before
 * anything is stopped. (1) The backup it will use can be restored: its frozen copy is there
 * (same oid), or else its pg_dump file has the manifest's size and sha256 and pg_restore --list
 * reads it. (2) Other clients' sessions on the live database, per database.otherSessions.policy:
 * `refuse` refuses now, `wait` waits up to its timeout now and refuses if they stay, `terminate`
 * only reports them (they are terminated at the swap, as before). The app's own sessions are told
 * apart by their client sockets: they belong to the processes that listen on the app's port.
 */
export interface RollbackReadiness {
  backupId: string;
  /** What the restore will use. */
  source: 'frozen-copy' | 'dump';
  /** Other clients' sessions seen on the live database now (the app's own left out). */
  otherSessions: DatabaseSession[];
  notes: string[];
}

export function checkRollbackReady(req: { deployment: string; backupId: string }): Promise<RollbackReadiness> {
  return keepAlive('rollback pre-stop check', () => check(req));
}

function refuse(message: string, type: string = FAILURE_TYPES.refused): ApplicationFailure {
  return ApplicationFailure.create({ message: `rollback refused before anything was stopped (the running version still serves): ${message}`, type, nonRetryable: true });
}

async function check(req: { deployment: string; backupId: string }): Promise<RollbackReadiness> {
  const d = deploymentOf(req.deployment);
  const manifest = findManifest(d, req.backupId); // refuses a manifest whose seal does not match
  const notes: string[] = [];
  const url = databaseUrl(d);
  const live = liveDatabaseName(url);
  const source = await backupSource(d, manifest, notes);
  await withDatabase(urlFor(url, 'postgres'), (admin) => checkRoomForRestore(admin, manifest, source, live, notes));
  const others = await withDatabase(urlFor(url, 'postgres'), (admin) => settleBeforeStop(d, admin, live, notes));
  return { backupId: manifest.id, source, otherSessions: others, notes };
}

async function backupSource(d: ResolvedDeployment, manifest: BackupManifest, notes: string[]): Promise<'frozen-copy' | 'dump'> {
  let frozenNote = '';
  if (manifest.frozenDatabase && manifest.frozenOid !== undefined) {
    const oid = await withDatabase(urlFor(databaseUrl(d), 'postgres'), async (admin) => {
      const { rows } = await admin.query('SELECT oid::bigint AS oid FROM pg_database WHERE datname = $1', [manifest.frozenDatabase]);
      return rows[0] ? Number(rows[0].oid) : undefined;
    });
    if (oid === manifest.frozenOid) return 'frozen-copy';
    frozenNote = oid === undefined ? `its frozen copy ${manifest.frozenDatabase} is gone` : `the database named ${manifest.frozenDatabase} is not its frozen copy (oid ${oid}, the copy's was ${manifest.frozenOid})`;
    notes.push(`${frozenNote}: the pg_dump file will be restored`);
  }
  const file = manifest.file;
  const what = `backup ${manifest.id}${frozenNote ? ` (${frozenNote})` : ''}`;
  const todo = `nothing was changed. Roll back to another backup (dg-upgrade backups ${d.name} --verify lists them; then --backup <id>), or put the file back from a copy`;
  if (!manifest.sha256 || !existsSync(file)) {
    throw refuse(`${what} cannot be restored: its pg_dump file ${file} ${manifest.sha256 ? 'is missing' : 'was never written'}; ${todo}`, FAILURE_TYPES.noBackup);
  }
  heartbeat('checking the dump');
  const size = statSync(file).size;
  if (size !== manifest.sizeBytes) throw refuse(`${what} cannot be restored: its pg_dump file ${file} has ${size} bytes, its manifest says ${manifest.sizeBytes} (the file was truncated or changed since the backup); ${todo}`, FAILURE_TYPES.noBackup);
  if ((await sha256File(file)) !== manifest.sha256) throw refuse(`${what} cannot be restored: the sha256 of its pg_dump file ${file} differs from its manifest's (the file was damaged or changed since the backup); ${todo}`, FAILURE_TYPES.noBackup);
  try {
    await tocEntries(d, file);
  } catch (err) {
    throw refuse(`${what} cannot be restored: pg_restore --list cannot read its pg_dump file ${file}: ${(err as Error).message}; ${todo}`, FAILURE_TYPES.noBackup);
  }
  return 'dump';
}

/**
 * Room for what the swap or restore writes, on the filesystem of the tablespace it lands in: none
 * when the frozen copy is renamed in, one copy when it must be kept (its dump was never written),
 * the restored database when the dump is restored.
 */
async function checkRoomForRestore(admin: pg.Client, manifest: BackupManifest, source: 'frozen-copy' | 'dump', live: string, notes: string[]): Promise<void> {
  const fromFrozen = source === 'frozen-copy';
  if (fromFrozen && !swapCopiesFrozenCopy(manifest)) return;
  const db = fromFrozen ? manifest.frozenDatabase! : live;
  const bytes = fromFrozen
    ? Number((await admin.query('SELECT pg_database_size($1)::bigint AS n', [db])).rows[0].n)
    : (manifest.databaseBytes ?? statSync(manifest.file).size * 4);
  const what = fromFrozen ? `the copy of the frozen copy ${db} (its pg_dump file was never written, so the copy is kept)` : `the database restored from ${manifest.file}`;
  const space = checkSpace(await databaseLocation(admin, db), bytesNeededForCopy(bytes), what);
  if (space.unchecked) notes.push(space.unchecked);
  if (space.problem) throw refuse(`${space.problem}; nothing was changed. Free space there and start the rollback again`, FAILURE_TYPES.noSpace);
}

// ------------------------------------------------------------------ whose sessions are they

function localAddresses(): Set<string> {
  const addrs = new Set(['127.0.0.1', '::1']);
  for (const list of Object.values(os.networkInterfaces())) for (const a of list ?? []) addrs.add(a.address);
  return addrs;
}

/** The live database's sessions that are not the running app's; `unattributed`: local ones whose owner could not be read. */
export function othersThan(appPort: number, sessions: SessionRow[]): { others: SessionRow[]; unattributed: SessionRow[] } {
  const app = appClientPorts(appPort);
  if (!app.listening) return { others: sessions, unattributed: [] };
  const local = localAddresses();
  const others: SessionRow[] = [];
  const unattributed: SessionRow[] = [];
  for (const s of sessions) {
    const isLocal = s.clientIp === undefined || local.has(s.clientIp) || /^127\./.test(s.clientIp) || s.clientIp.startsWith('::ffff:127.');
    if (!isLocal) others.push(s); // the app runs on this node (the worker's): a remote client is another one
    else if (s.clientPort === undefined || app.ports === undefined) unattributed.push(s);
    else if (!app.ports.has(s.clientPort)) others.push(s);
  }
  return { others, unattributed };
}

async function settleBeforeStop(d: ResolvedDeployment, admin: pg.Client, live: string, notes: string[]): Promise<DatabaseSession[]> {
  const { policy, timeout } = d.profile.database.otherSessions;
  const strip = withoutClients;
  // A session the app's pool opens or closes while we look is listed without its socket (or its
  // socket without the session): it would pass for another client's. Only a session that is
  // another's in two looks a quarter of a second apart counts.
  const look = async () => {
    const first = othersThan(d.profile.port, await sessionRows(admin, live));
    if (first.others.length === 0) return first;
    await sleep(250);
    const again = othersThan(d.profile.port, await sessionRows(admin, live));
    const stillOthers = new Set(again.others.map((s) => s.pid));
    return { others: first.others.filter((s) => stillOthers.has(s.pid)), unattributed: again.unattributed };
  };
  let seen = await look();
  if (seen.unattributed.length) {
    notes.push(`${seen.unattributed.length} local session(s) could not be told apart from the app's (${describeSessions(strip(seen.unattributed))}): checked at the swap`);
  }
  if (seen.others.length === 0) return [];
  const first = strip(seen.others);
  const todo = `stop those clients and start the rollback again, or set database.otherSessions.policy to "terminate" in the profile`;
  if (policy === 'terminate') {
    notes.push(`${first.length} other session(s) on ${live} will be terminated at the swap (policy terminate): ${describeSessions(first)}`);
    return first;
  }
  if (policy === 'refuse') throw refuse(`${first.length} other session(s) connected to database ${live} (policy refuse): ${describeSessions(first)}; ${todo}`);
  const deadline = Date.now() + durationMs(timeout);
  while (seen.others.length) {
    if (Date.now() > deadline) {
      throw refuse(`${seen.others.length} other session(s) still connected to database ${live} after waiting ${timeout} (policy wait): ${describeSessions(strip(seen.others))}; ${todo}`);
    }
    heartbeat(`waiting for other sessions to end before the stop: ${describeSessions(strip(seen.others))}`);
    await sleep(200);
    seen = await look();
  }
  notes.push(`waited for ${first.length} other session(s) to end before the stop: ${describeSessions(first)}`);
  return first;
}
