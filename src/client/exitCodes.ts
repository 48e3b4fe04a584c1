/** Exit codes of every dg-upgrade command, for scripts. Documented in --help and the README. */
export const EXIT = {
  ok: 0,
  /** The operation ran and failed (an upgrade that failed and was compensated or rolled back). */
  failed: 1,
  /** Usage: unknown command or flag, missing or malformed option. Nothing changed. */
  badInput: 2,
  /** Rejected by an operator, approval timed out, or cancelled before cutover. Nothing changed. */
  rejected: 3,
  /** Another operation already runs on this deployment. */
  conflict: 4,
  /** Temporal is unreachable (or the worker's database is). */
  unavailable: 5,
  /** No such workflow run. */
  notFound: 6,
  /** The run is not in a state that accepts this (approve a finished run, approve a run not waiting for approval). */
  invalidState: 7,
  /**
   * The deployment or run needs an operator: a rollback was abandoned, a compensation failed, or
   * the run is stuck on a workflow task the worker keeps failing (status shows the failure).
   */
  needsAttention: 8,
  /** The profile file is missing, not JSON, fails validation, or names a secret that cannot be resolved. */
  invalidProfile: 9,
  /** No such deployment in the profile. */
  unknownDeployment: 10,
  /** The target ref is unknown after `git fetch --tags`, or looks like an option. */
  badRef: 11,
  /** The deployment's database cannot be reached. */
  databaseUnreachable: 12,
  /** The approval names a plan hash that is not the run's current plan. */
  stalePlan: 13,
  /** No backup to roll back to (or not the one named). */
  noBackup: 14,
  /** Refused by a safety rule (the narrow path when a migration is suspect, release validation on a live install). */
  refused: 15,
  /**
   * `cancel` terminated the run instead of cancelling it: it never completed its first workflow
   * task (e.g. an input the worker cannot decode), so no step ran and nothing changed.
   */
  terminatedStuck: 16,
} as const;

export const EXIT_CODE_HELP = `Exit codes (2 and 9-15: bad input, nothing was changed):
  0  success
  1  the operation failed and the deployment was put back (old version restarted, or rolled back)
  2  usage: unknown command or flag, missing or malformed option
  3  rejected, approval timed out, or cancelled before cutover; nothing changed
  4  another operation is already running on this deployment
  5  Temporal (or the deployment's database) is unreachable
  6  no such workflow run
  7  the run does not accept this now (already finished, not waiting for approval)
  8  needs an operator: a rollback was abandoned, a compensation failed, the new version serves
     but its portable backup could not be written or verified, or the run is stuck
     on a workflow task the worker keeps failing (status names the failure)
  9  invalid profile (unreadable, not JSON, a field fails validation, a secret cannot be resolved)
 10  unknown deployment
 11  bad ref: unknown after git fetch --tags, or option-like
 12  the deployment's database is unreachable
 13  stale plan hash: the run waits on another plan
 14  no backup to roll back to
 15  refused by a safety rule (projection rebuild with a suspect migration, release validation on a live install)
 16  cancel terminated a run that never completed its first workflow task (nothing ran, nothing changed)`;

export class CliError extends Error {
  /**
   * @param hint what to do about it (printed as "hint: ...")
   * @param chain where a workflow failure came from, outermost first (printed as "cause: ...")
   */
  constructor(message: string, readonly exitCode: number, readonly hint?: string, readonly chain?: string[]) {
    super(message);
  }
}
