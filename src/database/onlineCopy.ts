import { existsSync } from 'node:fs';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import { execa } from 'execa';
import { withByteProgress, heartbeat } from '../activities/heartbeat.js';
import { failpoint } from '../activities/failpoints.js';
import { redactSecrets } from '../config/secrets.js';
import type { ResolvedDeployment } from '../config/profile.js';
import { databaseUrl, secretValues } from '../activities/deployment.js';
import { logDirOf } from '../activities/layout.js';
import { FAILURE_TYPES } from '../domain/types.js';
import { completeCopyHead, rehearsalCopyComment, rehearsalDatabaseName, type CopyFigures } from '../domain/rehearsal.js';
import { databaseBytes, eventLogHead, liveDatabaseName, pgToolConnection, quoteIdent, urlFor, withDatabase } from './postgres.js';
import { bytesNeededForCopy, checkSpace, databaseLocation, mib, tablespaceClause } from './space.js';
import { appendFileSync } from 'node:fs';
import { ownerOnlyDir } from '../config/ownerOnlyFiles.js';

/** `nice -n 10 ionice -c3` where they exist: the copy reads the whole live database while it serves. */
export function lowPriority(argv: string[]): string[] {
  const onPath = (tool: string) => (process.env.PATH ?? '').split(':').some((dir) => dir && existsSync(path.join(dir, tool)));
  const prefix: string[] = [];
  if (onPath('nice')) prefix.push('nice', '-n', '10');
  if (onPath('ionice')) prefix.push('ionice', '-c3');
  return [...prefix, ...argv];
}

function maintenanceUrl(d: ResolvedDeployment): string {
  return urlFor(databaseUrl(d), 'postgres');
}

async function commentOf(admin: import('pg').Client, database: string): Promise<string | null | undefined> {
  const { rows } = await admin.query(
    `SELECT shobj_description(d.oid, 'pg_database') AS c FROM pg_database d WHERE d.datname = $1`,
    [database],
  );
  return rows[0] ? (rows[0].c as string | null) : undefined;
}

/** Drops a database (its sessions terminated: only a rehearsal uses it). Safe when it does not exist. */
export async function dropCopy(d: ResolvedDeployment, database: string): Promise<boolean> {
  return withDatabase(maintenanceUrl(d), async (admin) => {
    const exists = (await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [database])).rows.length > 0;
    if (!exists) return false;
    await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(database)} WITH (FORCE)`);
    return true;
  });
}

/** The rehearsal databases of a deployment's live database that exist on the server (for cleanups and tests). */
export async function rehearsalCopies(d: ResolvedDeployment): Promise<string[]> {
  const live = liveDatabaseName(databaseUrl(d));
  return withDatabase(maintenanceUrl(d), async (admin) => {
    const { rows } = await admin.query(`SELECT datname FROM pg_database WHERE datname LIKE $1 ORDER BY datname`, [`${live.slice(0, 40).replace(/[\\%_]/g, '\\$&')}%\\_rehearsal\\_%`]);
    return rows.map((r) => r.datname as string);
  });
}

/**
 * A copy of the live database while the app keeps serving, consistent at one instant: the copy
 * session opens a REPEATABLE READ transaction on the live database and exports its snapshot;
 * `pg_dump --snapshot` of that snapshot is piped straight into `pg_restore` of the new database
 * (no dump file: no disk on the worker's node, one read of the live database), both at low CPU and
 * I/O priority. Idempotent: a complete copy (its comment says so) is reused, a half copy of an
 * earlier attempt is dropped and made again.
 */
export async function onlineCopy(d: ResolvedDeployment, key: string): Promise<CopyFigures> {
  const liveUrl = databaseUrl(d);
  const live = liveDatabaseName(liveUrl);
  const copy = rehearsalDatabaseName(live, key);
  const existing = await withDatabase(maintenanceUrl(d), async (admin) => {
    const comment = await commentOf(admin, copy);
    if (comment === undefined) return undefined;
    const head = completeCopyHead(comment);
    if (head !== undefined) {
      const size = Number((await admin.query('SELECT pg_database_size($1)::bigint AS n', [copy])).rows[0].n);
      return { head, size };
    }
    heartbeat(`dropping the half copy ${copy} of an earlier attempt`);
    await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(copy)} WITH (FORCE)`);
    return undefined;
  });
  if (existing) {
    return { database: copy, liveBytes: existing.size, copyBytes: existing.size, ms: 0, bytesPerSecond: 0, eventLogMaxSeq: existing.head, method: 'reused', space: 'reused', reused: true };
  }

  return withDatabase(liveUrl, async (snapshotSession) => {
    const liveBytes = await databaseBytes(snapshotSession);
    const { space, location } = await withDatabase(maintenanceUrl(d), async (admin) => {
      const location = await databaseLocation(admin, live);
      const check = checkSpace(location, bytesNeededForCopy(liveBytes), `the rehearsal copy of ${live}`);
      if (check.problem) {
        throw ApplicationFailure.create({ message: `${check.problem}; the rehearsal made no copy and changed nothing. Free space there, or set rehearsal.policy to "off"`, type: FAILURE_TYPES.noSpace, nonRetryable: true });
      }
      await admin.query(`CREATE DATABASE ${quoteIdent(copy)} TEMPLATE template0${tablespaceClause(location)}`);
      return { space: check.unchecked ?? `${check.freeBytes !== undefined ? mib(check.freeBytes) : '?'} free in ${check.where}, ${mib(check.neededBytes)} needed`, location };
    });
    void location;
    await snapshotSession.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const snapshot = (await snapshotSession.query('SELECT pg_export_snapshot() AS s')).rows[0].s as string;
    const head = await eventLogHead(snapshotSession);
    const started = Date.now();
    const src = pgToolConnection(liveUrl);
    const dst = pgToolConnection(urlFor(liveUrl, copy));
    const secrets = secretValues(d);
    const logFile = path.join(logDirOf(d), 'rehearsal-copy.log');
    ownerOnlyDir(path.dirname(logFile));
    appendFileSync(logFile, `\n$ pg_dump --snapshot=${snapshot} | pg_restore --dbname=${copy}  # ${new Date().toISOString()}\n`, { mode: 0o600 });
    const [dumpCmd, ...dumpArgs] = lowPriority(['pg_dump', '--format=custom', '--no-owner', '--no-privileges', `--snapshot=${snapshot}`, `--dbname=${src.dbArg}`]);
    const [restoreCmd, ...restoreArgs] = lowPriority(['pg_restore', '--no-owner', '--no-privileges', '--exit-on-error', `--dbname=${dst.dbArg}`]);
    const measure = () => withDatabase(maintenanceUrl(d), async (admin) => Number((await admin.query('SELECT pg_database_size($1)::bigint AS n', [copy])).rows[0].n)).catch(() => undefined);
    await withByteProgress('rehearsal copy', measure, liveBytes, async () => {
      const dump = execa(dumpCmd!, dumpArgs, { env: src.env, extendEnv: true, reject: false, stdin: 'ignore', stderr: 'pipe', buffer: { stdout: false } });
      const restore = execa(restoreCmd!, restoreArgs, { env: dst.env, extendEnv: true, reject: false, stdin: 'pipe', all: true });
      dump.stdout!.pipe(restore.stdin!);
      const [dumped, restored] = await Promise.all([dump, restore]);
      const note = redactSecrets(`${dumped.stderr ?? ''}\n${restored.all ?? ''}`.trim(), secrets);
      if (note) appendFileSync(logFile, `${note}\n`, { mode: 0o600 });
      if (dumped.failed || restored.failed) {
        const which = dumped.failed ? `pg_dump exited with ${dumped.exitCode ?? dumped.signal}` : `pg_restore exited with ${restored.exitCode ?? restored.signal}`;
        throw ApplicationFailure.create({ message: `the rehearsal copy of ${live} failed: ${which}: ${note.split('\n').slice(-5).join('\n')}`, type: 'DgToolFailed', nonRetryable: true });
      }
    });
    await snapshotSession.query('COMMIT').catch(() => {});
    await failpoint('rehearsal.copyBeforeMark');
    const ms = Date.now() - started;
    const copyBytes = await withDatabase(maintenanceUrl(d), async (admin) => {
      await admin.query(`COMMENT ON DATABASE ${quoteIdent(copy)} IS '${rehearsalCopyComment(live, key, head.maxLogSeq).replace(/'/g, "''")}'`);
      return Number((await admin.query('SELECT pg_database_size($1)::bigint AS n', [copy])).rows[0].n);
    });
    return {
      database: copy,
      liveBytes,
      copyBytes,
      ms,
      bytesPerSecond: ms > 0 ? Math.round((liveBytes / ms) * 1000) : 0,
      eventLogMaxSeq: head.maxLogSeq,
      method: 'pg_dump --snapshot | pg_restore (low priority)',
      space,
    };
  });
}

/**
 * The frozen copy's cost at this size: a raw CREATE DATABASE ... STRATEGY FILE_COPY of the
 * rehearsal copy (nobody is connected to it once the rehearsal instance stopped), dropped at once.
 */
export async function measureFileCopy(d: ResolvedDeployment, copy: string): Promise<number> {
  const scratch = `${copy.slice(0, 57)}_fcopy`;
  return withDatabase(maintenanceUrl(d), async (admin) => {
    await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(scratch)} WITH (FORCE)`);
    const location = await databaseLocation(admin, copy);
    const size = Number((await admin.query('SELECT pg_database_size($1)::bigint AS n', [copy])).rows[0].n);
    const check = checkSpace(location, bytesNeededForCopy(size), 'the measure of a frozen copy');
    if (check.problem) return -1;
    const started = Date.now();
    try {
      await admin.query(`CREATE DATABASE ${quoteIdent(scratch)} TEMPLATE ${quoteIdent(copy)} STRATEGY FILE_COPY`);
      return Date.now() - started;
    } finally {
      await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(scratch)} WITH (FORCE)`).catch(() => {});
    }
  });
}
