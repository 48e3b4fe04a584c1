import { z } from 'zod';

/**
 * The database URL as the operator writes it: the DecisionGraph guide's Ecto form
 * (`ecto://USER:PASS@HOST/DATABASE`), or libpq's `postgres://` / `postgresql://`. The runtime
 * gets it unchanged; pg_dump, pg_restore and node pg get `pgUrl()` of it.
 *
 * The real app hands DATABASE_URL to Ecto (config/runtime.exs: `url: database_url`), which
 * ignores the scheme, needs a host and a one-segment database path, and turns query params into
 * repo options (`ssl=true|false`, `pool_size`, `timeout`, ...). libpq reads a URL of any other
 * scheme as a database name (and goes to the local socket), and refuses query params it does not
 * know; `ssl=false` among them.
 */
export const DATABASE_URL_SCHEMES = ['ecto', 'postgres', 'postgresql'] as const;

const ACCEPTED = `accepted: ${DATABASE_URL_SCHEMES.map((s) => `${s}://`).join(', ')} (the DecisionGraph guide writes ecto://USER:PASS@HOST/DATABASE)`;

/** Options of the Ecto repo or its pool, meaningless to a pg tool (which would refuse them). */
const ECTO_ONLY_PARAMS = new Set(['pool_size', 'pool_count', 'timeout', 'idle_interval', 'queue_target', 'queue_interval', 'prepare']);

/** Why `url` is no DATABASE_URL both the app and the pg tools take, or undefined. Never quotes the URL: it holds a password. */
export function databaseUrlProblem(url: string): string | undefined {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):(\/\/)?/.exec(url);
  if (!m) return `not a URL; ${ACCEPTED}`;
  const scheme = m[1]!.toLowerCase();
  if (!m[2] || !(DATABASE_URL_SCHEMES as readonly string[]).includes(scheme)) return `scheme ${scheme}:${m[2] ?? ''} is not accepted; ${ACCEPTED}`;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return `not a valid URL (is the host there? a user or password with @ : / ? # or % must have it percent-encoded); ${ACCEPTED}`;
  }
  if (!u.hostname) return `no host; ${ACCEPTED}`;
  if (!/^\/[^/]+$/.test(u.pathname)) return `the path must be the database name; ${ACCEPTED}`;
  return undefined;
}

export const DatabaseUrlSchema = z.string().superRefine((url, ctx) => {
  const problem = databaseUrlProblem(url);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

/** The same database as a postgresql:// URL for libpq and node pg; user, password and host stay byte for byte (percent-encoding included). */
export function pgUrl(url: string): string {
  const problem = databaseUrlProblem(url);
  if (problem) throw new Error(`bad database URL: ${problem}`);
  const u = new URL(`postgresql:${url.slice(url.indexOf(':') + 1)}`);
  const ssl = u.searchParams.get('ssl');
  if (ssl === 'true' || ssl === 'false') {
    if (!u.searchParams.has('sslmode')) u.searchParams.set('sslmode', ssl === 'true' ? 'require' : 'disable');
    u.searchParams.delete('ssl');
  }
  for (const key of [...u.searchParams.keys()]) if (ECTO_ONLY_PARAMS.has(key)) u.searchParams.delete(key);
  return u.toString();
}
