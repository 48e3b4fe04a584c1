import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { EventLogMark } from '../domain/types.js';

/**
 * The event log's digest, in bounded memory at any size.
 *
 * Construction (scheme `rowmd5-sha256`): sha256 over the concatenation, in log_seq order, of
 * md5(row::text) of every row. PostgreSQL computes the per-row md5s one keyset chunk of log_seq
 * at a time (one query result of at most `chunkRows` rows × 32 bytes); the sha256 runs here,
 * fed chunk by chunk. The result does not depend on the chunk size, only on the rows, so a live
 * database, its frozen copy (a file copy) and its restored dump (rows re-inserted) compare.
 *
 * Scheme `legacy-md5` is what manifests written before 0.3.0 hold: md5 of every row's text
 * joined with '|', which PostgreSQL built as one string (it cannot past 1 GiB). It is
 * recomputed here the same way, streaming the rows' text through an md5 in chunks, only to
 * compare with such a manifest.
 */
export const DIGEST_SCHEME = 'rowmd5-sha256';
const DEFAULT_CHUNK_ROWS = 20_000;

export interface DigestProgress {
  rows: number;
  chunks: number;
  lastLogSeq: number;
  /** Rows the log holds up to the bound, from the planner's estimate: for a percentage only. */
  estimatedRows?: number;
}

export interface EventLogDigest extends EventLogMark {
  checksum: string;
  /** How many queries the digest took: each returned at most one chunk. */
  chunks: number;
}

export interface DigestOptions {
  /** Only rows with log_seq <= upTo (a backup's high-water mark on a database written since). */
  upTo?: number;
  /** Compute in the scheme of this earlier checksum (a manifest's), so that the two compare. */
  like?: string;
  chunkRows?: number;
  /**
   * The caller already holds a REPEATABLE READ transaction (a dump's snapshot). Otherwise the
   * digest opens one, so that its chunks read one instant of a database that is being written.
   */
  inSnapshot?: boolean;
  onChunk?: (progress: DigestProgress) => void | Promise<void>;
}

export function schemeOf(checksum: string): 'rowmd5-sha256' | 'legacy-md5' {
  return checksum.startsWith(`${DIGEST_SCHEME}:`) ? DIGEST_SCHEME : 'legacy-md5';
}

export function chunkRowsFromEnv(): number {
  const n = Number(process.env.DG_UPGRADE_DIGEST_CHUNK_ROWS);
  return Number.isInteger(n) && n > 0 ? n : DEFAULT_CHUNK_ROWS;
}

async function eventLogExists(client: pg.Client): Promise<boolean> {
  const { rows } = await client.query(`SELECT to_regclass('dg_event_log') AS t`);
  return !!rows[0].t;
}

async function estimatedRows(client: pg.Client): Promise<number | undefined> {
  const { rows } = await client.query(`SELECT reltuples::bigint AS n FROM pg_class WHERE oid = to_regclass('dg_event_log')`);
  const n = Number(rows[0]?.n);
  return Number.isFinite(n) && n > 0 ? n : undefined;
}

export async function eventLogDigest(client: pg.Client, opts: DigestOptions = {}): Promise<EventLogDigest> {
  if (!(await eventLogExists(client))) return { maxLogSeq: 0, rowCount: 0, checksum: '', chunks: 0 };
  if (opts.inSnapshot) return digestChunks(client, opts);
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    return await digestChunks(client, opts);
  } finally {
    await client.query('COMMIT').catch(() => {});
  }
}

async function digestChunks(client: pg.Client, opts: DigestOptions): Promise<EventLogDigest> {
  const legacy = opts.like !== undefined && schemeOf(opts.like) === 'legacy-md5';
  const chunkRows = opts.chunkRows ?? chunkRowsFromEnv();
  const hash = createHash(legacy ? 'md5' : 'sha256');
  const progress: DigestProgress = { rows: 0, chunks: 0, lastLogSeq: 0, estimatedRows: await estimatedRows(client) };
  const bound = opts.upTo ?? null;
  for (;;) {
    const rows = legacy ? await legacyChunk(client, progress.lastLogSeq, bound, chunkRows, hash, progress.rows > 0) : await md5Chunk(client, progress.lastLogSeq, bound, chunkRows, hash);
    if (rows.n === 0) break;
    progress.rows += rows.n;
    progress.chunks += 1;
    progress.lastLogSeq = rows.last;
    await opts.onChunk?.({ ...progress });
    if (rows.n < chunkRows) break;
  }
  const checksum = legacy ? hash.digest('hex') : `${DIGEST_SCHEME}:${hash.digest('hex')}`;
  // An empty log: the legacy query's md5('') and this scheme's sha256 of nothing, both as before.
  return { maxLogSeq: progress.lastLogSeq, rowCount: progress.rows, checksum, chunks: progress.chunks };
}

type Hash = ReturnType<typeof createHash>;

/** One chunk's per-row md5s, concatenated in PostgreSQL: chunkRows × 32 bytes at most. */
async function md5Chunk(client: pg.Client, after: number, bound: number | null, chunkRows: number, hash: Hash): Promise<{ n: number; last: number }> {
  const { rows } = await client.query(
    `SELECT count(*)::bigint AS n, coalesce(max(log_seq), 0)::bigint AS last, coalesce(string_agg(md5(t::text), '' ORDER BY log_seq), '') AS h
       FROM (SELECT * FROM dg_event_log WHERE log_seq > $1 AND ($2::bigint IS NULL OR log_seq <= $2::bigint) ORDER BY log_seq LIMIT $3) t`,
    [after, bound, chunkRows],
  );
  hash.update(rows[0].h as string);
  return { n: Number(rows[0].n), last: Number(rows[0].last) };
}

/** One chunk of rows' text, fed to the md5 with the '|' that string_agg put between rows. */
async function legacyChunk(client: pg.Client, after: number, bound: number | null, chunkRows: number, hash: Hash, notFirst: boolean): Promise<{ n: number; last: number }> {
  const { rows } = await client.query(
    `SELECT log_seq::bigint AS s, t::text AS r FROM (SELECT * FROM dg_event_log WHERE log_seq > $1 AND ($2::bigint IS NULL OR log_seq <= $2::bigint) ORDER BY log_seq LIMIT $3) t`,
    [after, bound, chunkRows],
  );
  rows.forEach((row, i) => hash.update(notFirst || i > 0 ? `|${row.r}` : row.r));
  return { n: rows.length, last: rows.length ? Number(rows[rows.length - 1].s) : after };
}
