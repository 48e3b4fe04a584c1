import { ApplicationFailure } from '@temporalio/activity';
import type pg from 'pg';
import { durationMs, type ResolvedDeployment } from '../config/profile.js';
import { FAILURE_TYPES, type BackupManifest, type DatabaseSession } from '../domain/types.js';
import { heartbeat, sleep } from '../activities/heartbeat.js';

/** A session with the client's address and port: what tells the app's own connections apart. */
export interface SessionRow extends DatabaseSession {
  clientPort?: number;
  clientIp?: string;
}

/** Sessions on `database` other than this connection's (and other than dg-upgrade's own tools), with their client ports. */
export async function sessionRows(client: pg.Client, database: string): Promise<SessionRow[]> {
  const { rows } = await client.query(
    `SELECT pid, coalesce(application_name, '') AS app, coalesce(usename::text, '') AS usr, host(client_addr) AS ip, client_port AS port,
            coalesce(host(client_addr), 'local socket') AS addr, coalesce(state, '') AS state, backend_start
       FROM pg_stat_activity
      WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend'
        AND coalesce(application_name, '') NOT LIKE 'dg-upgrade%' AND coalesce(application_name, '') NOT IN ('pg_dump', 'pg_restore')
      ORDER BY backend_start`,
    [database],
  );
  return rows.map((r) => ({
    pid: Number(r.pid),
    applicationName: r.app as string,
    user: r.usr as string,
    clientAddress: r.addr as string,
    state: r.state as string,
    backendStart: new Date(r.backend_start).toISOString(),
    clientPort: r.port === null || Number(r.port) < 0 ? undefined : Number(r.port),
    clientIp: (r.ip as string | null) ?? undefined,
  }));
}

export function withoutClients(rows: SessionRow[]): DatabaseSession[] {
  return rows.map(({ clientPort: _p, clientIp: _i, ...s }) => s);
}

/** Sessions on `database` other than this connection's (and other than dg-upgrade's own tools). */
export async function otherSessions(client: pg.Client, database: string): Promise<DatabaseSession[]> {
  return withoutClients(await sessionRows(client, database));
}

export function describeSessions(sessions: DatabaseSession[]): string {
  return sessions.map((s) => `${s.applicationName || '(no application_name)'} as ${s.user} from ${s.clientAddress} (pid ${s.pid}, ${s.state || 'unknown state'})`).join('; ');
}

/**
 * Applies the profile's policy to the sessions other clients hold on the database while the app
 * is stopped, and says what was seen and done. `admin` is a connection to another database of
 * the same server (terminating from inside the database would cut the caller too).
 */
export async function settleOtherSessions(d: ResolvedDeployment, admin: pg.Client, database: string, step: string): Promise<NonNullable<BackupManifest['otherSessions']>> {
  const { policy, timeout } = d.profile.database.otherSessions;
  const seen = await otherSessions(admin, database);
  if (seen.length === 0) return { policy, seen, action: 'none connected' };
  const refuse = (why: string) =>
    ApplicationFailure.create({
      message: `${why} on database ${database} before ${step}: ${describeSessions(seen)}; stop those clients, or set database.otherSessions.policy to "terminate" in the profile`,
      type: FAILURE_TYPES.refused,
      nonRetryable: true,
      details: [{ otherSessions: seen }],
    });
  if (policy === 'refuse') throw refuse(`${seen.length} other session(s) connected`);
  if (policy === 'terminate') {
    await admin.query('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [seen.map((s) => s.pid)]);
    return { policy, seen, action: `terminated ${seen.length} session(s)` };
  }
  const deadline = Date.now() + durationMs(timeout);
  for (;;) {
    const now = await otherSessions(admin, database);
    if (now.length === 0) return { policy, seen, action: `waited for ${seen.length} session(s) to end` };
    if (Date.now() > deadline) throw refuse(`${now.length} other session(s) still connected after waiting ${timeout}`);
    heartbeat(`waiting for other sessions to end: ${describeSessions(now)}`);
    await sleep(200);
  }
}
