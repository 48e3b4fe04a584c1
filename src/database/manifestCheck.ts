import { spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { ResolvedDeployment } from '../config/profile.js';
import type { BackupManifest } from '../domain/types.js';
import { runCommand } from '../activities/exec.js';
import { heartbeat } from '../activities/heartbeat.js';
import path from 'node:path';

/**
 * For manifests without a seal (older dg-upgrade): what the dump itself says, compared with the
 * manifest's figures. The TOC (pg_restore --list) always; the row counts, the event log's count
 * and high-water mark and the migration versions from the dump's data when the dump is small
 * enough to read through here (a stream, bounded memory).
 */
export const DATA_CROSS_CHECK_MAX_BYTES = 512 * 1024 * 1024;

export interface DumpReading {
  tocEntries: number;
  tablesWithData: string[];
  /** Absent when the dump is too big to read through. */
  rowCounts?: Record<string, number>;
  eventLog?: { rowCount: number; maxLogSeq: number };
  migrationVersions?: string[];
}

function unquote(name: string): string {
  return name.startsWith('"') ? name.slice(1, -1).replace(/""/g, '"') : name;
}

/** `public.dg_event_log` or `public."Odd"` from a TOC or COPY line: the table's own name. */
function tableOf(qualified: string): string {
  const m = /^(?:"(?:[^"]|"")*"|[^."]+)\.(.+)$/.exec(qualified);
  return unquote(m ? m[1]! : qualified);
}

async function readToc(d: ResolvedDeployment, file: string): Promise<{ entries: number; tables: string[] }> {
  const listing = await runCommand('pg_restore', ['--list', file], { cwd: path.dirname(file) });
  const lines = listing.split('\n').filter((l) => /^\d+;/.test(l));
  // "3345; 0 16390 TABLE DATA public dg_event_log postgres"
  const tables = lines.map((l) => / TABLE DATA (\S+) (\S+) /.exec(l)).filter((m): m is RegExpExecArray => !!m).map((m) => unquote(m[2]!));
  void d;
  return { entries: lines.length, tables };
}

/** Streams `pg_restore --data-only` of the dump as SQL and counts the COPY rows of every table. */
async function readData(file: string): Promise<Pick<DumpReading, 'rowCounts' | 'eventLog' | 'migrationVersions'>> {
  const child = spawn('pg_restore', ['--data-only', '--file=-', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-2000)));
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  const rowCounts: Record<string, number> = {};
  const versions: string[] = [];
  let eventLog = { rowCount: 0, maxLogSeq: 0 };
  let table: string | undefined;
  let logSeqCol = -1;
  let versionCol = -1;
  let n = 0;
  for await (const line of createInterface({ input: child.stdout, crlfDelay: Infinity })) {
    if (table === undefined) {
      const m = /^COPY (\S+) \(([^)]*)\) FROM stdin;$/.exec(line);
      if (!m) continue;
      table = tableOf(m[1]!);
      const cols = m[2]!.split(',').map((c) => unquote(c.trim()));
      logSeqCol = table === 'dg_event_log' ? cols.indexOf('log_seq') : -1;
      versionCol = table === 'schema_migrations' ? cols.indexOf('version') : -1;
      rowCounts[table] = 0;
      continue;
    }
    if (line === '\\.') {
      table = undefined;
      continue;
    }
    rowCounts[table]! += 1;
    if (logSeqCol >= 0) {
      const v = Number(line.split('\t')[logSeqCol]);
      eventLog = { rowCount: eventLog.rowCount + 1, maxLogSeq: Math.max(eventLog.maxLogSeq, Number.isFinite(v) ? v : 0) };
    }
    if (versionCol >= 0) versions.push(line.split('\t')[versionCol]!);
    if (++n % 50_000 === 0) heartbeat({ step: 'reading the dump', rows: n });
  }
  const code = await exited;
  if (code !== 0) throw new Error(`pg_restore --data-only ${file} exited with ${code}: ${stderr.trim()}`);
  return { rowCounts, eventLog, migrationVersions: versions.sort((a, b) => (BigInt(a) < BigInt(b) ? -1 : BigInt(a) > BigInt(b) ? 1 : 0)) };
}

export async function readDump(d: ResolvedDeployment, file: string, opts: { data: boolean }): Promise<DumpReading> {
  const toc = await readToc(d, file);
  const reading: DumpReading = { tocEntries: toc.entries, tablesWithData: toc.tables };
  if (opts.data && statSync(file).size <= DATA_CROSS_CHECK_MAX_BYTES) Object.assign(reading, await readData(file));
  return reading;
}

/**
 * An unsealed manifest's figures against its dump. Returns the differences found (each naming
 * the field) and what could not be checked. The gitSha cannot be read from a dump: it is checked
 * to be a commit of the deployment's repository.
 */
export async function verifyManifestAgainstDump(d: ResolvedDeployment, manifest: BackupManifest): Promise<{ problems: string[]; notes: string[] }> {
  const problems: string[] = [];
  const notes: string[] = [];
  const dump = await readDump(d, manifest.file, { data: true });
  if (manifest.verified?.tocEntries && dump.tocEntries !== manifest.verified.tocEntries) {
    problems.push(`verified.tocEntries: the manifest says ${manifest.verified.tocEntries}, the dump's TOC lists ${dump.tocEntries}`);
  }
  const named = Object.keys(manifest.rowCounts ?? {}).sort();
  const inDump = [...dump.tablesWithData].sort();
  if (named.join(',') !== inDump.join(',')) problems.push(`rowCounts: the manifest names tables ${named.join(',')}, the dump holds data of ${inDump.join(',')}`);
  if (!dump.rowCounts) {
    notes.push(`the dump is over ${DATA_CROSS_CHECK_MAX_BYTES} bytes: its row counts were not read (only its table list)`);
  } else {
    for (const [table, count] of Object.entries(manifest.rowCounts ?? {})) {
      if (dump.rowCounts[table] !== undefined && dump.rowCounts[table] !== count) problems.push(`rowCounts.${table}: the manifest says ${count}, the dump holds ${dump.rowCounts[table]} rows`);
    }
    if (dump.rowCounts.dg_event_log !== undefined) {
      if (dump.eventLog!.rowCount !== manifest.eventLog.rowCount) problems.push(`eventLog.rowCount: the manifest says ${manifest.eventLog.rowCount}, the dump holds ${dump.eventLog!.rowCount} events`);
      if (dump.eventLog!.maxLogSeq !== manifest.eventLog.maxLogSeq) problems.push(`eventLog.maxLogSeq: the manifest says ${manifest.eventLog.maxLogSeq}, the dump's highest log_seq is ${dump.eventLog!.maxLogSeq}`);
    }
    if (dump.rowCounts.schema_migrations !== undefined && dump.migrationVersions!.join(',') !== [...manifest.migrationVersions].join(',')) {
      problems.push(`migrationVersions: the manifest says ${manifest.migrationVersions.join(',') || '(none)'}, the dump holds ${dump.migrationVersions!.join(',') || '(none)'}`);
    }
  }
  try {
    await runCommand('git', ['cat-file', '-e', `${manifest.gitSha}^{commit}`], { cwd: d.profile.repoPath });
  } catch {
    problems.push(`gitSha: ${manifest.gitSha} is not a commit of the repository ${d.profile.repoPath}`);
  }
  notes.push('the gitSha and gitTag cannot be read from a dump: only checked to be a commit of the repository');
  return { problems, notes };
}
