import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** Admin connection used by tests to create and drop their own databases. */
export const ADMIN_DATABASE_URL =
  process.env.DG_TEST_ADMIN_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface TestDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

export function databaseUrlFor(name: string, base = ADMIN_DATABASE_URL): string {
  const url = new URL(base);
  url.pathname = `/${name}`;
  return url.toString();
}

/** One session as the admin user (on the admin database, or on `url`), closed after `fn`. */
export async function withAdmin<T>(fn: (client: pg.Client) => Promise<T>, url = ADMIN_DATABASE_URL): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  try {
    await client.connect();
  } catch (err) {
    throw new Error(
      `Cannot reach PostgreSQL at ${redact(url)} (${(err as Error).message}). ` +
        'Start the local server (pg_ctlcluster 15 main start) or set DG_TEST_ADMIN_DATABASE_URL.',
    );
  }
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

function redact(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = '***';
  return u.toString();
}

/** Creates a uniquely named database; `drop()` removes it together with any database the test derived from it (prefix match). */
export async function createTestDatabase(label = 'test'): Promise<TestDatabase> {
  // At most 27 bytes: the databases a rollback derives from it (`<name>_upgraded_<when>_<run>`,
  // cut to PostgreSQL's 63 bytes) must keep the whole name as their prefix, or drop() misses them.
  const safe = label.toLowerCase().replace(/[^a-z0-9_]/g, '_').slice(0, 10);
  const name = `dgu_${safe}_${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
  await withAdmin((c) => c.query(`CREATE DATABASE "${name}"`));
  return {
    name,
    url: databaseUrlFor(name),
    drop: () => dropDatabasesWithPrefix(name),
  };
}

export async function dropDatabasesWithPrefix(prefix: string): Promise<void> {
  await withAdmin(async (c) => {
    const { rows } = await c.query<{ datname: string }>(
      `SELECT datname FROM pg_database WHERE datname = $1 OR datname LIKE $2`,
      [prefix, `${prefix.replace(/_/g, '\\_')}%`],
    );
    for (const { datname } of rows) {
      await c.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
    }
  });
}
