import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { execa } from 'execa';
import pg from 'pg';
import { eventLogDigest, schemeOf } from '../src/database/eventLogDigest.js';
import { ADMIN_DATABASE_URL, createTestDatabase, databaseUrlFor, type TestDatabase } from './support/postgres.js';

// The digest a backup records and a rollback compares: exact, in bounded memory at any size, and
// equal for a live database, its frozen copy (a file copy) and its restored dump.

const ROWS = 2_500;
const CHUNK = 1_000;
let live: TestDatabase;
const clients: pg.Client[] = [];

async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, application_name: 'dgu-test-digest' });
  await client.connect();
  clients.push(client);
  return client;
}

/** Records the largest value any query returned to this client: what one query result held. */
function measured(client: pg.Client): { client: pg.Client; largestValue: () => number; queries: () => number } {
  let largest = 0;
  let queries = 0;
  const query = client.query.bind(client) as (...args: unknown[]) => Promise<pg.QueryResult>;
  (client as unknown as { query: unknown }).query = async (...args: unknown[]) => {
    const result = await query(...args);
    queries += 1;
    for (const row of result.rows ?? []) for (const v of Object.values(row)) largest = Math.max(largest, String(v ?? '').length);
    return result;
  };
  return { client, largestValue: () => largest, queries: () => queries };
}

async function fill(url: string, from: number, count: number): Promise<void> {
  const c = await connect(url);
  await c.query(
    `INSERT INTO dg_event_log (tenant_id, trace_id, event_type, payload)
     SELECT 't' || (i % 3), 'trace-' || (i % 97), 'decision.recorded',
            jsonb_build_object('i', i, 'note', repeat(md5(i::text), 1 + i % 5), 'quote', 'it''s "quoted" | piped')
       FROM generate_series($1::int, $2::int) AS i`,
    [from, from + count - 1],
  );
}

before(async () => {
  live = await createTestDatabase('digest');
  const c = await connect(live.url);
  await c.query(`CREATE TABLE dg_event_log (
    log_seq bigserial PRIMARY KEY, tenant_id text NOT NULL, trace_id text NOT NULL, event_type text NOT NULL,
    payload jsonb NOT NULL DEFAULT '{}'::jsonb, inserted_at timestamptz NOT NULL DEFAULT now())`);
  await fill(live.url, 1, ROWS);
});

after(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => {})));
  await live?.drop();
});

test('the digest reads the log in chunks: no query result holds more than one chunk', async () => {
  const m = measured(await connect(live.url));
  const digest = await eventLogDigest(m.client, { chunkRows: CHUNK });
  assert.equal(digest.rowCount, ROWS);
  assert.equal(digest.maxLogSeq, ROWS);
  assert.equal(digest.chunks, Math.ceil(ROWS / CHUNK), 'one query per chunk of log_seq');
  assert.equal(schemeOf(digest.checksum), 'rowmd5-sha256');
  // One chunk's per-row md5s at most: a digest that built the whole log as one string, or
  // returned every row in one result, would exceed it.
  assert.ok(m.largestValue() <= CHUNK * 32, `largest value returned: ${m.largestValue()} characters, one chunk is ${CHUNK * 32}`);
  assert.ok(m.queries() >= digest.chunks, 'each chunk its own query');
});

test('the digest is exactly sha256 over each row\'s md5 in log_seq order, whatever the chunk size', async () => {
  const c = await connect(live.url);
  const { rows } = await c.query(`SELECT md5(t::text) AS h FROM dg_event_log t ORDER BY log_seq`);
  const expected = `rowmd5-sha256:${createHash('sha256').update(rows.map((r) => r.h).join('')).digest('hex')}`;
  for (const chunkRows of [7, CHUNK, ROWS, ROWS * 10]) {
    assert.equal((await eventLogDigest(c, { chunkRows })).checksum, expected, `chunks of ${chunkRows} rows`);
  }
});

test('a manifest written before 0.3.0 (one md5 over the whole log) is compared in its own scheme, in chunks', async () => {
  const c = await connect(live.url);
  const legacy = (await c.query(`SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY log_seq), '')) AS h FROM dg_event_log t WHERE log_seq <= 1800`)).rows[0].h as string;
  const digest = await eventLogDigest(c, { upTo: 1800, like: legacy, chunkRows: 333 });
  assert.equal(digest.checksum, legacy);
  assert.equal(digest.chunks, Math.ceil(1800 / 333));
});

test('a live database, its frozen copy and its restored dump have one digest; a changed row changes it', async () => {
  const frozen = `${live.name}_frozen`;
  const restored = `${live.name}_restored`;
  const admin = await connect(ADMIN_DATABASE_URL);
  // A template must have no sessions: the earlier tests' clients are closed first.
  await Promise.all(clients.filter((c) => c !== admin).map((c) => c.end().catch(() => {})));
  await admin.query(`CREATE DATABASE "${frozen}" TEMPLATE "${live.name}" STRATEGY FILE_COPY`);
  await admin.query(`CREATE DATABASE "${restored}"`);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dgu-digest-'));
  try {
    const file = path.join(dir, 'live.dump');
    await execa('pg_dump', ['--format=custom', '--no-owner', `--file=${file}`, `--dbname=${live.url}`]);
    await execa('pg_restore', ['--no-owner', '--exit-on-error', `--dbname=${databaseUrlFor(restored)}`, file]);

    const before = await eventLogDigest(await connect(live.url), { chunkRows: CHUNK });
    // Writes go on in the live database after the copy and the dump: compared up to their mark.
    await fill(live.url, ROWS + 1, 300);
    const liveNow = await eventLogDigest(await connect(live.url), { upTo: before.maxLogSeq, chunkRows: 400 });
    const frozenDigest = await eventLogDigest(await connect(databaseUrlFor(frozen)), { chunkRows: 600 });
    const restoredClient = await connect(databaseUrlFor(restored));
    const restoredDigest = await eventLogDigest(restoredClient, { chunkRows: 900 });
    assert.equal(liveNow.checksum, before.checksum, 'the live log up to the mark');
    assert.equal(frozenDigest.checksum, before.checksum, 'the frozen copy');
    assert.equal(restoredDigest.checksum, before.checksum, 'the restored dump');
    assert.equal(restoredDigest.rowCount, ROWS);
    assert.notEqual((await eventLogDigest(await connect(live.url))).checksum, before.checksum, 'the whole live log, 300 rows longer');

    await restoredClient.query(`UPDATE dg_event_log SET payload = payload || '{"i": -1}' WHERE log_seq = 1234`);
    assert.notEqual((await eventLogDigest(restoredClient, { chunkRows: CHUNK })).checksum, before.checksum, 'one changed payload');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an empty or missing event log has a digest too', async () => {
  const empty = await createTestDatabase('digest0');
  try {
    const c = await connect(empty.url);
    assert.deepEqual(await eventLogDigest(c), { maxLogSeq: 0, rowCount: 0, checksum: '', chunks: 0 });
    await c.query('CREATE TABLE dg_event_log (log_seq bigserial PRIMARY KEY, x text)');
    const digest = await eventLogDigest(c);
    assert.equal(digest.rowCount, 0);
    assert.equal(digest.checksum, `rowmd5-sha256:${createHash('sha256').digest('hex')}`);
    await c.end();
  } finally {
    await empty.drop();
  }
});
