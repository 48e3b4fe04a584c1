import type { ResolvedDeployment } from '../config/profile.js';
import { parseIsoWithOffset } from '../domain/maintenanceWindow.js';
import type { UpgradeInput } from '../domain/types.js';
import { CliError, EXIT } from './exitCodes.js';

/** The flags `upgrade` and `plan` take to name a maintenance window. */
export const WINDOW_OPTIONS = {
  window: { type: 'string' },
  'not-before': { type: 'string' },
  'window-length': { type: 'string' },
} as const;

export const WINDOW_OPTION_HELP: Record<string, string> = {
  window: '"next": stop the old version only in the next of the profile\'s maintenance windows that holds the predicted downtime',
  'not-before': 'a one-off window from this ISO-8601 time with offset (e.g. 2026-12-01T22:00:00+01:00)',
  'window-length': "the one-off window's length, e.g. 30m or 2h (default: the profile's longest window, else 1h)",
};

/**
 * The input fields of `--window`, `--not-before` and `--window-length`, checked against the
 * profile before anything starts. `now` is this machine's clock: the run itself uses the server's
 * workflow time, and refuses only a one-off window that has ended by then.
 */
export function windowInput(values: Record<string, unknown>, d: ResolvedDeployment, now = Date.now()): Pick<UpgradeInput, 'window' | 'notBefore' | 'windowLength'> {
  const window = values.window as string | undefined;
  const notBefore = values['not-before'] as string | undefined;
  const length = values['window-length'] as string | undefined;
  const hint = 'e.g. --window next, or --not-before 2026-12-01T22:00:00+01:00 [--window-length 2h]';
  if (window !== undefined && notBefore !== undefined) throw new CliError('--window and --not-before both given: give one of them; nothing was started', EXIT.badInput, hint);
  if (length !== undefined && notBefore === undefined) {
    throw new CliError('--window-length needs --not-before (a profile window has its own end); nothing was started', EXIT.badInput, hint);
  }
  if (window !== undefined) {
    if (window !== 'next') throw new CliError(`--window ${JSON.stringify(window)}: the only value is "next" (the profile's maintenance windows); nothing was started`, EXIT.badInput, hint);
    if (!d.profile.maintenance?.windows.length) {
      throw new CliError(
        `--window next: deployment "${d.name}" has no maintenance windows in its profile (maintenance.windows); nothing was started`,
        EXIT.badInput,
        'add one to the profile (README, "Maintenance windows"), or give a one-off window with --not-before',
      );
    }
    return { window: 'next' };
  }
  if (notBefore === undefined) return {};
  const parsed = parseIsoWithOffset(notBefore);
  if (!parsed) {
    throw new CliError(`--not-before ${JSON.stringify(notBefore)} is not an ISO-8601 time with an offset; nothing was started`, EXIT.badInput, 'e.g. --not-before 2026-12-01T22:00:00+01:00 or 2026-12-01T21:00:00Z (a time without offset is ambiguous)');
  }
  if (parsed.instant < now) {
    throw new CliError(`--not-before ${notBefore} is in the past (now ${new Date(now).toISOString()}); nothing was started`, EXIT.badInput, 'give a time to come; to upgrade now, leave the flag out');
  }
  if (length !== undefined && !/^[1-9]\d*(s|m|h)$/.test(length)) {
    throw new CliError(`--window-length ${JSON.stringify(length)} is not a positive duration; nothing was started`, EXIT.badInput, 'e.g. --window-length 30m or 2h');
  }
  return { notBefore, ...(length !== undefined ? { windowLength: length } : {}) };
}
