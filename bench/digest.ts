/**
 * Benchmark: the event-log digest (src/database/eventLogDigest.ts) at real sizes, against the
 * single-string checksum it replaced (md5(string_agg(...)), which PostgreSQL cannot build past
 * 1 GiB). Per size: the digest's time, throughput, chunk count, and this process's peak RSS
 * (the worker's share of the work: one chunk of per-row md5s at a time); the old checksum's time
 * or its error.
 *   node dist/bench/digest.js [sizes=1024,4096] [chunkRows=20000]
 * Each size is a database of its own, filled with event-log rows of about 800 bytes, dropped at
 * the end.
 */
import pg from 'pg';
import { eventLogDigest } from '../src/database/eventLogDigest.js';
import { createTestDatabase } from '../test/support/postgres.js';

const sizes = (process.argv[2] ?? '1024,4096').split(',').map(Number);
const chunkRows = Number(process.argv[3] ?? 20_000);

async function connect(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url, application_name: 'dgu-bench-digest' });
  await c.connect();
  return c;
}

async function fill(c: pg.Client, targetMiB: number): Promise<number> {
  await c.query(`CREATE TABLE dg_event_log (
    log_seq bigserial PRIMARY KEY, tenant_id text NOT NULL, trace_id text NOT NULL, event_type text NOT NULL,
    payload jsonb NOT NULL DEFAULT '{}'::jsonb, inserted_at timestamptz NOT NULL DEFAULT now())`);
  const batch = 200_000;
  for (let done = 0; ; done += batch) {
    const mib = Number((await c.query('SELECT pg_database_size(current_database())::bigint AS n')).rows[0].n) / 1024 / 1024;
    if (mib >= targetMiB) break;
    await c.query(
      `INSERT INTO dg_event_log (tenant_id, trace_id, event_type, payload)
       SELECT 'tenant-' || (i % 3), 'trace-' || (i % 5000), 'policy.evaluated',
              jsonb_build_object('i', i, 'policy_id', 'bulk_policy_' || (i % 4), 'note', repeat(md5(i::text), 20))
         FROM generate_series($1::bigint, $2::bigint) i`,
      [done + 1, done + batch],
    );
    process.stderr.write(`  ${(mib).toFixed(0)}/${targetMiB} MiB\r`);
  }
  await c.query('VACUUM ANALYZE dg_event_log');
  return Number((await c.query('SELECT pg_database_size(current_database())::bigint AS n')).rows[0].n) / 1024 / 1024;
}

const rssMiB = () => process.resourceUsage().maxRSS / 1024;

console.log(`event-log digest (rowmd5-sha256, chunks of ${chunkRows} rows) vs the single-string md5 it replaced; peak RSS of this process`);
console.log('db_MiB  rows       digest_s  MiB/s  chunks  peak_rss_MiB  old_checksum');
for (const size of sizes) {
  const db = await createTestDatabase(`dig${size}`);
  try {
    const c = await connect(db.url);
    const actual = await fill(c, size);
    const rssBefore = rssMiB();
    const started = Date.now();
    let lastBeat = 0;
    const digest = await eventLogDigest(c, {
      chunkRows,
      onChunk: (p) => {
        if (Date.now() - lastBeat > 5000) {
          lastBeat = Date.now();
          process.stderr.write(`  digest ${p.rows}/${p.estimatedRows ?? '?'} rows\n`);
        }
      },
    });
    const seconds = (Date.now() - started) / 1000;
    const peak = rssMiB();
    let old: string;
    const oldStarted = Date.now();
    try {
      await c.query(`SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY log_seq), '')) FROM dg_event_log t`);
      old = `ok in ${((Date.now() - oldStarted) / 1000).toFixed(1)} s`;
    } catch (err) {
      old = `FAILS after ${((Date.now() - oldStarted) / 1000).toFixed(1)} s: ${(err as Error).message}`;
    }
    await c.end();
    console.log(
      `${actual.toFixed(0).padStart(6)}  ${String(digest.rowCount).padEnd(9)}  ${seconds.toFixed(1).padStart(8)}  ${(actual / seconds).toFixed(0).padStart(5)}  ${String(digest.chunks).padStart(6)}  ${peak.toFixed(0).padStart(12)}  ${old}`,
    );
    process.stderr.write(`  (RSS before the digest ${rssBefore.toFixed(0)} MiB)\n`);
  } finally {
    await db.drop();
  }
}
