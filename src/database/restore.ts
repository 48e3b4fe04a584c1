import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import type pg from 'pg';
import type { ResolvedDeployment } from '../config/profile.js';
import { FAILURE_TYPES, type BackupManifest } from '../domain/types.js';
import { databaseUrl, deploymentOf, secretValues } from '../activities/deployment.js';
import { runCommand } from '../activities/exec.js';
import { failpoint } from '../activities/failpoints.js';
import { heartbeat, keepAlive, withByteProgress } from '../activities/heartbeat.js';
import { commandPidDirOf, logDirOf } from '../activities/layout.js';
import { settleOtherSessions } from './sessions.js';
import {
  eventLogMark,
  heldAsideComment,
  isNoSpace,
  listManifests,
  liveDatabaseName,
  manifestPathOf,
  migrationVersions,
  pgToolConnection,
  quoteIdent,
  readManifest,
  tableRowCounts,
  urlFor,
  withDatabase,
} from './postgres.js';
import { frozenManifest, listFrozenRecords } from './frozenCopy.js';
import { checkSeal } from './manifestSeal.js';
import { databaseLocation, mib, tablespaceClause } from './space.js';

const RESTORE_DONE = 'dg-upgrade: restore complete';

/** PostgreSQL names stop at 63 bytes: keep the live name's start, then what/when/which run. */
export function sideDatabaseNames(live: string, key: string, stamp: string): { restored: string; aside: string } {
  const base = live.slice(0, 63 - `_upgraded_${stamp}_${key}`.length);
  return { restored: `${base}_restore_${key}`.slice(0, 63), aside: `${base}_upgraded_${stamp}_${key}` };
}

async function databaseExists(admin: pg.Client, name: string): Promise<boolean> {
  const { rows } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
  return rows.length > 0;
}

async function databaseComment(admin: pg.Client, name: string): Promise<string | undefined> {
  const { rows } = await admin.query(`SELECT shobj_description(oid, 'pg_database') AS c FROM pg_database WHERE datname = $1`, [name]);
  return rows[0]?.c ?? undefined;
}

async function terminateConnections(admin: pg.Client, name: string): Promise<void> {
  await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [name]);
}

export function findManifest(d: ResolvedDeployment, backupId?: string): BackupManifest {
  const manifests = listManifests(d);
  const manifest = backupId ? manifests.find((m) => m.id === backupId) : manifests.filter((m) => m.kind === 'pre-upgrade').at(-1);
  if (!manifest) {
    throw ApplicationFailure.create({
      message: backupId
        ? `no backup "${backupId}" for deployment ${d.name} in ${d.profile.backups.dir}; list them with: dg-upgrade backups ${d.name}`
        : `deployment ${d.name} has no pre-upgrade backup in ${d.profile.backups.dir}: nothing to roll back to`,
      type: FAILURE_TYPES.noBackup,
      nonRetryable: true,
    });
  }
  // The rollback acts on the manifest's figures (data-loss count, the version it goes back to):
  // an edited one is refused, naming the file (an older, unsealed one is accepted).
  const sealFile = manifestPathOf(d.profile.backups.dir, manifest.id);
  const seal = checkSeal(d, manifest, sealFile);
  if (seal.state === 'bad') {
    throw ApplicationFailure.create({
      message: `backup ${manifest.id} cannot be trusted: ${seal.problem}; check it with dg-upgrade backups ${d.name} --verify, and roll back to another backup (--backup <id>) or restore the manifest from a copy`,
      type: FAILURE_TYPES.noBackup,
      nonRetryable: true,
    });
  }
  return manifest;
}

/**
 * The backup a rollback would restore, by id or the newest pre-upgrade one, frozen copies whose
 * pg_dump file is not written yet included: their manifest is written here, with the figures
 * counted in the copy (while the upgraded version still serves, outside the downtime).
 */
export async function selectBackup(deployment: string, backupId?: string): Promise<BackupManifest> {
  const d = deploymentOf(deployment);
  const manifests = listManifests(d);
  const records = listFrozenRecords(d).filter((r) => !manifests.some((m) => m.id === r.id));
  const record = backupId
    ? records.find((r) => r.id === backupId)
    : records.filter((r) => r.kind === 'pre-upgrade' && r.createdAt > (manifests.filter((m) => m.kind === 'pre-upgrade').at(-1)?.createdAt ?? '')).sort((a, b) => a.createdAt.localeCompare(b.createdAt)).at(-1);
  if (record) return keepAlive('frozen copy figures', () => frozenManifest(d, record));
  return findManifest(d, backupId);
}

export interface DiscardCount {
  count: number;
  /** Highest log_seq in the database counted (the live one, or the one set aside). */
  maxLogSeq: number;
  backupMaxLogSeq: number;
}

/**
 * Events in `client`'s event log that the backup does not hold. The event log is append-only.
 * A frozen copy was made with no session on the source (CREATE DATABASE ... TEMPLATE refuses
 * otherwise), so no transaction was in flight: every row up to its high-water mark is in it,
 * and the rows it lacks are exactly those above it, counted by the primary key's range (as
 * many rows as were discarded, not the whole log, inside the rollback's window). A pg_dump's
 * snapshot may have missed a row whose log_seq was taken before it and committed after: there
 * the backup's row count, from the dump's own snapshot, is subtracted from the whole count.
 */
async function eventsNotInBackup(client: pg.Client, manifest: BackupManifest): Promise<DiscardCount> {
  if (manifest.method === 'frozen-copy') {
    const { rows } = await client.query(
      `SELECT count(*)::bigint AS n, coalesce(max(log_seq), $1::bigint) AS max FROM dg_event_log WHERE log_seq > $1::bigint`,
      [manifest.eventLog.maxLogSeq],
    );
    return { count: Number(rows[0].n), maxLogSeq: Number(rows[0].max), backupMaxLogSeq: manifest.eventLog.maxLogSeq };
  }
  const { rows } = await client.query(`SELECT count(*)::bigint AS n, coalesce(max(log_seq), 0)::bigint AS max FROM dg_event_log`);
  return { count: Number(rows[0].n) - manifest.eventLog.rowCount, maxLogSeq: Number(rows[0].max), backupMaxLogSeq: manifest.eventLog.maxLogSeq };
}

/** Events a restore would discard: in the live event log but not in the backup. */
export async function eventsAfterBackup(deployment: string, backupId: string): Promise<DiscardCount> {
  const d = deploymentOf(deployment);
  const manifest = findManifest(d, backupId);
  return withDatabase(databaseUrl(d), (client) => eventsNotInBackup(client, manifest));
}

export interface RestoreResult {
  database: string;
  asideDatabase: string;
  backupId: string;
  /** Events only the set-aside database holds, counted there at the swap. */
  discarded?: DiscardCount;
  /** Sessions of other clients found on the live database at the swap, and what was done. */
  otherSessions?: BackupManifest['otherSessions'];
}

/**
 * Restores the backup into a fresh database and swaps it in by rename; the upgraded database is
 * kept under a name that says when and why. Each stage is recognisable afterwards, so a re-run
 * after a crash continues where the first run stopped and never restores twice over a swap.
 */
export function restoreBackup(req: RestoreRequest): Promise<RestoreResult> {
  return keepAlive('restore', () => restoreAndSwap(req));
}

export interface RestoreRequest {
  deployment: string;
  backupId: string;
  /** Stable per rollback run: names the restored and the set-aside databases. */
  key: string;
  stamp: string;
  /**
   * The number of discarded events the operator accepted. The swap counts them again in the
   * database it sets aside, and undoes itself with a DgDataLossGrew failure when there are more.
   * Absent (runs started before this check existed): no recount.
   */
  acceptedEvents?: number;
  /**
   * When the count grew: keep the live database renamed aside while the operator is asked again,
   * so that no client can write to it and the next count is final (undone by
   * returnAsideDatabase on abandon). Absent (runs started before this existed): renamed back.
   */
  holdAsideOnGrowth?: boolean;
}

export function dataLossGrew(accepted: number, found: DiscardCount): ApplicationFailure {
  return ApplicationFailure.create({
    message: `${found.count} events would be discarded, more than the ${accepted} accepted: writes reached the database after the data-loss approval; approve the new count`,
    type: FAILURE_TYPES.dataLossGrew,
    nonRetryable: true,
    details: [found],
  });
}

/**
 * The count grew past what was accepted: either rename the live database back (older runs), or
 * hold it aside, marked, so that the count asked next cannot change while the operator decides.
 */
async function onDiscardGrew(admin: pg.Client, live: string, aside: string, req: Pick<RestoreRequest, 'acceptedEvents' | 'holdAsideOnGrowth'>, found: DiscardCount): Promise<never> {
  await terminateConnections(admin, aside);
  if (req.holdAsideOnGrowth) {
    await admin.query(`COMMENT ON DATABASE ${quoteIdent(aside)} IS '${heldAsideComment(live, found.count).replace(/'/g, "''")}'`);
  } else {
    await admin.query(`ALTER DATABASE ${quoteIdent(aside)} RENAME TO ${quoteIdent(live)}`);
  }
  throw dataLossGrew(req.acceptedEvents!, found);
}

/**
 * Undoes a hold: the live database held aside while the operator was asked again takes its name
 * back (the rollback was abandoned). Idempotent: nothing to do when the live name exists.
 */
export async function returnAsideDatabase(deployment: string, key: string, stamp: string): Promise<{ returned: boolean; database: string }> {
  const d = deploymentOf(deployment);
  const url = databaseUrl(d);
  const live = liveDatabaseName(url);
  const { aside } = sideDatabaseNames(live, key, stamp);
  return withDatabase(urlFor(url, 'postgres'), async (admin) => {
    if ((await databaseExists(admin, live)) || !(await databaseExists(admin, aside))) return { returned: false, database: live };
    await terminateConnections(admin, aside);
    await admin.query(`ALTER DATABASE ${quoteIdent(aside)} RENAME TO ${quoteIdent(live)}`);
    await admin.query(`COMMENT ON DATABASE ${quoteIdent(live)} IS NULL`);
    return { returned: true, database: live };
  });
}

async function restoreAndSwap(req: RestoreRequest): Promise<RestoreResult> {
  const d = deploymentOf(req.deployment);
  const manifest = findManifest(d, req.backupId);
  const url = databaseUrl(d);
  const live = liveDatabaseName(url);
  const { restored, aside } = sideDatabaseNames(live, req.key, req.stamp);
  const adminUrl = urlFor(url, 'postgres');
  const marker = `${RESTORE_DONE} ${manifest.id}`;
  const result = { database: live, asideDatabase: aside, backupId: manifest.id };

  if (manifest.frozenDatabase && manifest.frozenOid !== undefined) {
    const swapped = await swapFrozenCopy(d, manifest, aside, req);
    if (swapped) return { ...result, ...swapped };
  }
  const state = await withDatabase(adminUrl, async (admin) => ({
    live: await databaseExists(admin, live),
    aside: await databaseExists(admin, aside),
    restored: await databaseExists(admin, restored),
    restoredComplete: (await databaseComment(admin, restored)) === marker,
  }));
  if (state.aside && state.live) {
    // Swapped by an earlier attempt.
    return { ...result, discarded: await withDatabase(urlFor(url, aside), (client) => eventsNotInBackup(client, manifest)) };
  }
  if (!state.aside && !(state.restored && state.restoredComplete) && !existsSync(manifest.file)) {
    throw ApplicationFailure.create({
      message: `backup ${manifest.id} has neither its frozen copy${manifest.frozenDatabase ? ` (${manifest.frozenDatabase})` : ''} nor its pg_dump file ${manifest.file}: nothing to restore`,
      type: FAILURE_TYPES.noBackup,
      nonRetryable: true,
    });
  }
  if (!state.aside && !(state.restored && state.restoredComplete)) {
    const location = await withDatabase(adminUrl, async (admin) => {
      if (state.restored) await admin.query(`DROP DATABASE ${quoteIdent(restored)} WITH (FORCE)`); // half-restored
      // In the live database's tablespace: the restored one replaces it, on the same filesystem.
      const where = await databaseLocation(admin, live);
      await admin.query(`CREATE DATABASE ${quoteIdent(restored)}${tablespaceClause(where)}`);
      return where;
    });
    const { dbArg, env } = pgToolConnection(urlFor(url, restored));
    // One admin session held for the progress reads (pg_database_size once a second).
    await withDatabase(adminUrl, (admin) => {
      const restoredBytes = async () => Number((await admin.query('SELECT pg_database_size($1)::bigint AS n', [restored])).rows[0].n);
      return withByteProgress('pg_restore', restoredBytes, manifest.databaseBytes, () => runCommand('pg_restore', ['--no-owner', '--no-privileges', '--exit-on-error', `--dbname=${dbArg}`, manifest.file], {
        cwd: path.dirname(manifest.file),
        env,
        secrets: secretValues(d),
        logFile: path.join(logDirOf(d), 'restore.log'),
        exclusive: { key: `${d.name}-pg`, pidDir: commandPidDirOf(d) },
      }));
    }).catch((err) => {
      if (!isNoSpace(err)) throw err;
      const needed = manifest.databaseBytes ?? statSync(manifest.file).size;
      throw ApplicationFailure.create({
        message: `no space left on the database server to restore backup ${manifest.id} into ${restored} (${location?.dir ? `${location.dir}, tablespace ${location.tablespace}` : `tablespace ${location?.tablespace ?? 'unknown'}`}; the database needs about ${mib(needed)}): ${(err as Error).message.split('\n')[0]}. The live database ${live} was not touched; free space there, then retry the rollback`,
        type: FAILURE_TYPES.noSpace,
        nonRetryable: true,
      });
    });
    await withDatabase(adminUrl, (admin) => admin.query(`COMMENT ON DATABASE ${quoteIdent(restored)} IS '${marker.replace(/'/g, "''")}'`));
  }
  await failpoint('restore.beforeSwap');
  // Swap: the live database is renamed aside first, so that nothing can write to it any more
  // (clients connect by the live name); the discard is then counted where it stays, and the
  // restored database takes the live name only if that count is what the operator accepted.
  const otherSessions = state.aside
    ? undefined
    : await withDatabase(adminUrl, async (admin) => {
        const settled = await settleOtherSessions(d, admin, live, 'the swap');
        await terminateConnections(admin, live);
        await admin.query(`ALTER DATABASE ${quoteIdent(live)} RENAME TO ${quoteIdent(aside)}`);
        return settled;
      });
  if (!state.aside) await failpoint('restore.betweenRenames');
  const discarded = await withDatabase(urlFor(url, aside), (client) => eventsNotInBackup(client, manifest));
  await withDatabase(adminUrl, async (admin) => {
    if (req.acceptedEvents !== undefined && discarded.count > req.acceptedEvents) await onDiscardGrew(admin, live, aside, req, discarded);
    await admin.query(`COMMENT ON DATABASE ${quoteIdent(aside)} IS 'dg-upgrade: upgraded database set aside by a rollback to backup ${manifest.id.replace(/'/g, "''")}; holds ${discarded.count} events written after the backup'`);
    await terminateConnections(admin, restored);
    await admin.query(`ALTER DATABASE ${quoteIdent(restored)} RENAME TO ${quoteIdent(live)}`);
  });
  return { ...result, discarded, otherSessions };
}

/**
 * Never consume the only backup: while its pg_dump file is not written (a failure before the
 * cutover), the swap makes the live database a file copy of the frozen copy, which stays for the dump.
 */
export function swapCopiesFrozenCopy(manifest: BackupManifest): boolean {
  return manifest.state !== 'complete' || !existsSync(manifest.file);
}

async function oidOf(admin: pg.Client, name: string): Promise<number | undefined> {
  const { rows } = await admin.query('SELECT oid::bigint AS oid FROM pg_database WHERE datname = $1', [name]);
  return rows[0] ? Number(rows[0].oid) : undefined;
}

/**
 * The rollback of the frozen-copy method: the frozen copy itself becomes the live database by
 * rename (seconds at any size), the upgraded one is renamed aside first and the discard counted
 * there, as in the restore. Returns undefined when the copy is gone (pruned, or swapped in by an
 * earlier rollback): the caller restores the pg_dump file instead. Each stage is recognisable
 * by the databases' names and oids, so a re-run after a crash continues where it stopped.
 */
async function swapFrozenCopy(
  d: ResolvedDeployment,
  manifest: BackupManifest,
  aside: string,
  req: RestoreRequest,
): Promise<Pick<RestoreResult, 'discarded' | 'otherSessions'> | undefined> {
  const { acceptedEvents } = req;
  const url = databaseUrl(d);
  const live = liveDatabaseName(url);
  const frozen = manifest.frozenDatabase!;
  const adminUrl = urlFor(url, 'postgres');
  const state = await withDatabase(adminUrl, async (admin) => ({
    live: await oidOf(admin, live),
    aside: await oidOf(admin, aside),
    frozen: await oidOf(admin, frozen),
  }));
  if (state.aside !== undefined && state.live !== undefined) {
    // Swapped by an earlier attempt (clients cannot create the live name while it is aside).
    return { discarded: await withDatabase(urlFor(url, aside), (client) => eventsNotInBackup(client, manifest)) };
  }
  if (state.frozen !== manifest.frozenOid) return undefined;
  const keepCopy = swapCopiesFrozenCopy(manifest);
  await failpoint('restore.beforeSwap');
  let otherSessions: RestoreResult['otherSessions'];
  if (state.aside === undefined) {
    otherSessions = await withDatabase(adminUrl, async (admin) => {
      const settled = await settleOtherSessions(d, admin, live, 'the swap');
      await terminateConnections(admin, live);
      await admin.query(`ALTER DATABASE ${quoteIdent(live)} RENAME TO ${quoteIdent(aside)}`);
      return settled;
    });
    await failpoint('restore.betweenRenames');
  }
  const discarded = await withDatabase(urlFor(url, aside), (client) => eventsNotInBackup(client, manifest));
  await withDatabase(adminUrl, async (admin) => {
    if (acceptedEvents !== undefined && discarded.count > acceptedEvents) await onDiscardGrew(admin, live, aside, req, discarded);
    await admin.query(`COMMENT ON DATABASE ${quoteIdent(aside)} IS 'dg-upgrade: upgraded database set aside by a rollback to backup ${manifest.id.replace(/'/g, "''")}; holds ${discarded.count} events written after the backup'`);
    await terminateConnections(admin, frozen);
    if (keepCopy) {
      try {
        await admin.query(`CREATE DATABASE ${quoteIdent(live)} TEMPLATE ${quoteIdent(frozen)} STRATEGY FILE_COPY`);
      } catch (err) {
        if (!isNoSpace(err)) throw err;
        // Undone: the upgraded database takes its name back, so that the next attempt (or an
        // abandon) starts from where the rollback began.
        const where = await databaseLocation(admin, frozen);
        const needed = Number((await admin.query('SELECT pg_database_size($1)::bigint AS n', [frozen])).rows[0].n);
        await admin.query(`ALTER DATABASE ${quoteIdent(aside)} RENAME TO ${quoteIdent(live)}`);
        await admin.query(`COMMENT ON DATABASE ${quoteIdent(live)} IS NULL`);
        throw ApplicationFailure.create({
          message: `no space left on the database server for the copy of the frozen copy ${frozen} (${where?.dir ? `${where.dir}, tablespace ${where.tablespace}` : `tablespace ${where?.tablespace ?? 'unknown'}`}; about ${mib(needed)} needed): ${(err as Error).message.split('\n')[0]}. Undone: the upgraded database has its name ${live} back and the frozen copy is kept; free space there, then retry the rollback`,
          type: FAILURE_TYPES.noSpace,
          nonRetryable: true,
        });
      }
      await admin.query(`COMMENT ON DATABASE ${quoteIdent(live)} IS '${copiedFromFrozenComment(manifest.id).replace(/'/g, "''")}'`);
    } else {
      await admin.query(`ALTER DATABASE ${quoteIdent(frozen)} RENAME TO ${quoteIdent(live)}`);
      await admin.query(`COMMENT ON DATABASE ${quoteIdent(live)} IS 'dg-upgrade: frozen copy of backup ${manifest.id.replace(/'/g, "''")}, swapped in by a rollback'`);
    }
  });
  return { discarded, otherSessions };
}

/** How verifyRestored knew what the live database holds: see docs/decisions.md, "What a rollback checks inside its window". */
export type RestoreIdentity = 'frozen-copy-renamed' | 'frozen-copy-file-copied' | 'restored-from-dump';

const COPIED_FROM_FROZEN = 'dg-upgrade: copied from the frozen copy of backup';

function copiedFromFrozenComment(manifestId: string): string {
  return `${COPIED_FROM_FROZEN} ${manifestId} by a rollback`;
}

/**
 * The live database against the backup's manifest, inside the rollback's window. When the live
 * database is the backup's frozen copy itself (same oid: a rename keeps it) or a file copy this
 * rollback made of it (its comment says so, and the copy's oid was checked before the copy), its
 * identity proves its content: only the migration versions are read (O(1), whatever the size).
 * A database restored from the pg_dump file is compared in full: per-table row counts and the
 * event-log digest up to the backup's high-water mark, in chunks, heartbeating its progress.
 */
export function verifyRestored(deployment: string, backupId: string): Promise<{ ok: boolean; problems: string[]; identity?: RestoreIdentity }> {
  return keepAlive('verify', () => verifyRestoredDatabase(deployment, backupId));
}

async function verifyRestoredDatabase(deployment: string, backupId: string): Promise<{ ok: boolean; problems: string[]; identity?: RestoreIdentity }> {
  const d = deploymentOf(deployment);
  const manifest = findManifest(d, backupId);
  return withDatabase(databaseUrl(d), async (client) => {
    heartbeat('verify: identity');
    const problems: string[] = [];
    const self = (await client.query(`SELECT oid::bigint AS oid, shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname = current_database()`)).rows[0];
    const identity: RestoreIdentity =
      manifest.frozenOid !== undefined && Number(self.oid) === manifest.frozenOid
        ? 'frozen-copy-renamed'
        : manifest.frozenDatabase && self.comment === copiedFromFrozenComment(manifest.id)
          ? 'frozen-copy-file-copied'
          : 'restored-from-dump';
    const versions = await migrationVersions(client);
    if (versions.join(',') !== manifest.migrationVersions.join(',')) {
      problems.push(`migration versions ${versions.join(',')} differ from the backup's ${manifest.migrationVersions.join(',')}`);
    }
    if (identity !== 'restored-from-dump') return { ok: problems.length === 0, problems, identity };
    // The database is live again once swapped in: a client other than the (stopped) app may have
    // appended events since. Those get log_seq values above the backup's, so the event log is
    // compared up to the backup's high-water mark, exactly; every other table exactly.
    heartbeat('verify: row counts');
    const counts = await tableRowCounts(client);
    for (const table of new Set([...Object.keys(counts), ...Object.keys(manifest.rowCounts)])) {
      if (table === 'dg_event_log' && counts[table] !== undefined && manifest.rowCounts[table] !== undefined) continue;
      if (counts[table] !== manifest.rowCounts[table]) problems.push(`${table}: ${counts[table] ?? 'missing'} rows, backup had ${manifest.rowCounts[table] ?? 'no such table'}`);
    }
    if (counts.dg_event_log !== undefined && manifest.rowCounts.dg_event_log !== undefined) {
      const mark = await eventLogMark(client, manifest.eventLog.maxLogSeq, { like: manifest.eventLog.checksum, failpoint: 'verify.digestChunk' });
      if (mark.rowCount !== manifest.eventLog.rowCount) problems.push(`dg_event_log: ${mark.rowCount} rows up to log_seq ${manifest.eventLog.maxLogSeq}, backup had ${manifest.eventLog.rowCount}`);
      else if (mark.checksum !== manifest.eventLog.checksum) problems.push('dg_event_log digest differs from the backup');
    }
    return { ok: problems.length === 0, problems, identity };
  });
}

export { readManifest };
