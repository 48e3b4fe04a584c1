/**
 * Timeouts of the steps that read a whole database (copy, dump, restore, digest), from its size
 * rather than fixed: a fixed two minutes kills a digest of a few GiB mid-way, and a fixed two
 * hours lets a wedged step hold the app down that long at 10 MiB. The floor assumes 1 MiB/s,
 * well below what the slowest step (pg_restore) reaches on this kind of disk.
 */
const FLOOR_MS = 5 * 60_000;
const MS_PER_MIB = 1000;

export function wholeDatabaseTimeoutMs(databaseBytes: number | undefined): number {
  const mib = Math.max(0, databaseBytes ?? 0) / (1024 * 1024);
  return Math.round(FLOOR_MS + mib * MS_PER_MIB);
}
