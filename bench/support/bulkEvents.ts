import { databaseUrlFor, withAdmin } from '../../test/support/postgres.js';

/** Measured: the bulk rows below with their indexes take about this much per row. */
const BYTES_PER_ROW = 820;

/** Bulk events in a tenant of their own, envelopes as the write API stores them; the projection cursors moved past them. */
export async function fillEventLog(db: string, targetMiB: number): Promise<void> {
  await withAdmin(async (c) => {
    const size = Number((await c.query('SELECT pg_database_size(current_database())::bigint AS n')).rows[0].n);
    const rows = Math.max(0, Math.floor((targetMiB * 1024 * 1024 - size) / BYTES_PER_ROW));
    for (let done = 0; done < rows; done += 100_000) {
      const n = Math.min(100_000, rows - done);
      await c.query(
        `INSERT INTO dg_event_log (tenant_id, trace_id, event_type, payload, event_id, idempotency_key, envelope)
         SELECT 'bench-bulk', 'trace-bulk-' || lpad((i % 5000)::text, 5, '0'), CASE WHEN i % 2 = 0 THEN 'policy.evaluated' ELSE 'trace.annotated' END,
                CASE WHEN i % 2 = 0 THEN jsonb_build_object('policy_id', 'bulk_policy_' || (i % 4), 'outcome', CASE WHEN i % 3 = 0 THEN 'fail' ELSE 'pass' END)
                     ELSE jsonb_build_object('note', 'bulk note ' || i, 'actor', 'dgu-bulk') END,
                'bulk-' || i, 'bulk-' || i,
                jsonb_build_object('event_id', 'bulk-' || i, 'idempotency_key', 'bulk-' || i,
                  'event_type', CASE WHEN i % 2 = 0 THEN 'policy.evaluated' ELSE 'trace.annotated' END,
                  'trace_id', 'trace-bulk-' || lpad((i % 5000)::text, 5, '0'), 'trace_seq', i, 'occurred_at', now(),
                  'actor', jsonb_build_object('actor_type', 'service', 'actor_id', 'dgu-bulk'),
                  'source', jsonb_build_object('producer_id', 'dgu-bulk', 'system', 'dg-upgrade-bench', 'subsystem', 'generator'),
                  'payload', jsonb_build_object('policy_id', 'bulk_policy_' || (i % 4), 'outcome', 'pass'))
           FROM generate_series($1::bigint, $2::bigint) i`,
        [done + 1, done + n],
      );
      process.stderr.write(`  ${db}: ${done + n}/${rows} bulk rows\n`);
    }
    await c.query(`UPDATE dg_projection_cursors SET last_log_seq = (SELECT max(log_seq) FROM dg_event_log), updated_at = now()`);
    await c.query('VACUUM ANALYZE dg_event_log');
  }, databaseUrlFor(db));
}
