import { existsSync, statfsSync } from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import { quoteIdent } from './postgres.js';

/**
 * Where a database's files live on its server: the directory of its default tablespace
 * (`<data_directory>/base` for pg_default, the LOCATION of any other). A database copied with
 * CREATE DATABASE ... TEMPLATE lands in the template's tablespace, and a restored one must be
 * created there too, so that is where free space is checked, not in the data directory.
 */
export interface DatabaseLocation {
  tablespace: string;
  /** undefined: not readable by this role (data_directory needs pg_read_all_settings). */
  dir?: string;
}

export async function databaseLocation(admin: pg.Client, database: string): Promise<DatabaseLocation | undefined> {
  const { rows } = await admin.query(
    `SELECT t.spcname AS tablespace, NULLIF(pg_tablespace_location(t.oid), '') AS location
       FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace
      WHERE d.datname = $1`,
    [database],
  );
  if (!rows[0]) return undefined;
  const tablespace = rows[0].tablespace as string;
  if (rows[0].location) return { tablespace, dir: rows[0].location as string };
  const dataDir = await admin
    .query(`SELECT current_setting('data_directory', true) AS dir`)
    .then((r) => r.rows[0].dir as string | null)
    .catch(() => null);
  return { tablespace, dir: dataDir ? path.join(dataDir, 'base') : undefined };
}

/** The clause that creates a database in the same tablespace as `location` ('' for pg_default). */
export function tablespaceClause(location: DatabaseLocation | undefined): string {
  return location && location.tablespace !== 'pg_default' ? ` TABLESPACE ${quoteIdent(location.tablespace)}` : '';
}

/** One copy of a database, plus room for the WAL and growth while it exists. */
export function bytesNeededForCopy(databaseBytes: number): number {
  return Math.ceil(databaseBytes * 1.2) + 256 * 1024 * 1024;
}

export interface SpaceCheck {
  /** Where it was checked, as an operator would name it: the directory and its tablespace. */
  where: string;
  freeBytes?: number;
  neededBytes: number;
  /** Set when the free space is known and too small. */
  problem?: string;
  /** Set when it could not be checked from here (the server's directory is not readable). */
  unchecked?: string;
}

/**
 * Whether the filesystem that holds `location` has room for `neededBytes` more. Checked only
 * when the directory is on this machine and readable (the database server runs beside the worker).
 */
export function checkSpace(location: DatabaseLocation | undefined, neededBytes: number, what: string): SpaceCheck {
  const where = location?.dir ? `${location.dir} (tablespace ${location.tablespace})` : `tablespace ${location?.tablespace ?? 'unknown'}`;
  if (!location?.dir || !existsSync(location.dir)) {
    return { where, neededBytes, unchecked: `free space for ${what} could not be checked (the directory of ${where} is not readable from here): it needs about ${mib(neededBytes)} there` };
  }
  const s = statfsSync(location.dir);
  const freeBytes = s.bavail * s.bsize;
  const check: SpaceCheck = { where, freeBytes, neededBytes };
  if (freeBytes < neededBytes) check.problem = `not enough space on the database server for ${what}: ${mib(freeBytes)} free in ${where}, about ${mib(neededBytes)} needed`;
  return check;
}

export function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(bytes < 10 * 1024 * 1024 ? 1 : 0)} MiB`;
}
