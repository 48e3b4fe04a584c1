/** Exit codes of every dg-upgrade command, for scripts. Documented in --help and the README. */
export const EXIT = {
  ok: 0,
  /** The operation ran and failed (an upgrade that failed and was compensated or rolled back). */
  failed: 1,
  /** Bad input: unknown flag or command, invalid profile, unknown deployment, bad or unknown ref. Nothing changed. */
  badInput: 2,
  /** Rejected by an operator, approval timed out, or cancelled before cutover. Nothing changed. */
  rejected: 3,
  /** Another operation already runs on this deployment. */
  conflict: 4,
  /** Temporal is unreachable (or the worker's database is). */
  unavailable: 5,
  /** No such workflow run. */
  notFound: 6,
  /** The run is not in a state that accepts this (approve a finished run, stale plan hash). */
  invalidState: 7,
  /** A rollback was abandoned or a compensation failed: the deployment needs an operator. */
  needsAttention: 8,
} as const;

export const EXIT_CODE_HELP = `Exit codes:
  0  success
  1  the operation failed and the deployment was put back (old version restarted, or rolled back)
  2  bad input (unknown flag or command, invalid profile, unknown deployment, bad or unknown ref); nothing changed
  3  rejected, approval timed out, or cancelled before cutover; nothing changed
  4  another operation is already running on this deployment
  5  Temporal (or the deployment's database) is unreachable
  6  no such workflow run
  7  the run does not accept this now (already finished, stale plan hash)
  8  a rollback was abandoned or a compensation failed: the deployment needs an operator`;

export class CliError extends Error {
  constructor(message: string, readonly exitCode: number, readonly hint?: string) {
    super(message);
  }
}
