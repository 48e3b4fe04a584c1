/** Exit codes of every dg-upgrade command, for scripts. Documented in --help and the README. */
export const EXIT = {
  ok: 0,
  /** The operation ran and failed (an upgrade that failed and was compensated or rolled back). */
  failed: 1,
  /** Usage: unknown command or flag, missing or malformed option. Nothing changed. */
  badInput: 2,
  /** Rejected by an operator, approval timed out, cancelled before cutover, or no maintenance window held the predicted downtime. Nothing changed. */
  rejected: 3,
  /** Another operation already runs on this deployment. */
  conflict: 4,
  /** Temporal is unreachable, or has no such namespace. */
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

/**
 * What each exit code means: the README's exit-code table says exactly this (test/pureHelpers
 * compares them), and `--help` prints it.
 */
export const EXIT_CODE_TABLE: ReadonlyArray<readonly [number, string]> = [
  [EXIT.ok, 'success'],
  [EXIT.failed, 'the operation failed and the deployment was put back (old version restarted, rolled back, or projections rebuilt)'],
  [EXIT.badInput, 'usage: unknown command or flag, a flag given twice, an unexpected argument, missing or malformed option'],
  [EXIT.rejected, 'rejected, approval timed out, cancelled before cutover, or no maintenance window could hold the predicted downtime; nothing changed'],
  [EXIT.conflict, 'another operation is already running on this deployment'],
  [EXIT.unavailable, 'Temporal is unreachable or has no such namespace, or no worker answers the status query within 10 s (the worker is down; the run waits and loses nothing)'],
  [EXIT.notFound, 'no such workflow run'],
  [EXIT.invalidState, 'the run does not accept this now (already finished, not waiting for approval)'],
  [EXIT.needsAttention, 'needs an operator: a rollback was abandoned, a compensation failed, the new version serves but its pre-upgrade backup is not verified, or the run is stuck on a workflow task the worker keeps failing (`status` names the failure)'],
  [EXIT.invalidProfile, 'invalid profile (unreadable, not JSON, a key given twice, a field fails validation, a secret cannot be resolved)'],
  [EXIT.unknownDeployment, 'unknown deployment'],
  [EXIT.badRef, 'bad ref: unknown after `git fetch --tags`, or option-like'],
  [EXIT.databaseUnreachable, "the deployment's database is unreachable"],
  [EXIT.stalePlan, 'stale plan hash: the run waits on another plan'],
  [EXIT.noBackup, 'no backup to roll back to'],
  [EXIT.refused, 'refused by a safety rule (projection rebuild with a suspect migration, release validation on a live install)'],
  [EXIT.terminatedStuck, '`cancel` terminated a run that never completed its first workflow task (nothing ran, nothing changed)'],
];

export const EXIT_CODE_HELP = `Exit codes (2 and 9-15: bad input, nothing was changed):
${EXIT_CODE_TABLE.map(([code, meaning]) => `${String(code).padStart(3)}  ${meaning.replace(/`/g, '')}`).join('\n')}`;

export class CliError extends Error {
  /**
   * @param hint what to do about it (printed as "hint: ...")
   * @param chain where a workflow failure came from, outermost first (printed as "cause: ...")
   */
  constructor(message: string, readonly exitCode: number, readonly hint?: string, readonly chain?: string[]) {
    super(message);
  }
}

/** How the CLI prints an error on stderr: the message, where it came from, and what to do. */
export function cliErrorText(error: CliError): string {
  const lines = [`dg-upgrade: error: ${error.message.split('\n').join(' ')}`];
  if (error.chain?.length) lines.push(`  cause: ${error.chain.map((l) => l.split('\n')[0]).join(' <- ')}`);
  if (error.hint) lines.push(`  hint: ${error.hint}`);
  return lines.join('\n');
}
