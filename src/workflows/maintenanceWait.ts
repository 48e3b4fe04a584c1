import { ApplicationFailure, sleep } from '@temporalio/workflow';
import {
  describePlannedWindow,
  formatSpan,
  nominalLengthMs,
  parseIsoWithOffset,
  remainingMs,
  SEARCH_HORIZON_DAYS,
  upcomingWindows,
  windowLabel,
  type WindowInstant,
} from '../domain/maintenanceWindow.js';
import { FAILURE_TYPES, type MaintenanceSettings, type PlannedWindow, type StepStatus, type UpgradeInput, type UpgradePlan, type UpgradeStatus } from '../domain/types.js';

/**
 * Patch (issue 22): an upgrade started with a window (`window: "next"` or `notBefore`) puts the
 * window in its plan (the hash covers it) and, once approved and built, waits durably for it
 * before anything touches the live install; it stops the old version only if the predicted
 * downtime fits in what is left of the window.
 */
export const MAINTENANCE_WINDOWS = 'maintenance-windows';

/** A one-off window without --window-length and without profile windows to take the length from. */
export const DEFAULT_ONE_OFF_WINDOW_MS = 3_600_000;

function badInput(message: string): ApplicationFailure {
  return ApplicationFailure.create({ message, type: FAILURE_TYPES.badInput, nonRetryable: true });
}

function durationMs(value: string): number | undefined {
  const m = /^(\d+)(ms|s|m|h)$/.exec(value);
  if (!m) return undefined;
  const n = Number(m[1]);
  return m[2] === 'ms' ? n : m[2] === 's' ? n * 1000 : m[2] === 'm' ? n * 60_000 : n * 3_600_000;
}

/** Whether the input asks for a window at all (an input without one runs as before, no patch asked). */
export function asksForWindow(input: UpgradeInput): boolean {
  return input.window !== undefined || input.notBefore !== undefined || input.windowLength !== undefined;
}

/** The input's window fields, checked before any command: what is wrong with them, if anything. */
export function windowInputProblem(input: UpgradeInput): string | undefined {
  if (input.window !== undefined && input.window !== 'next') {
    return `input "window": ${JSON.stringify(input.window)} is not a window; use "next" (the profile's maintenance windows) or "notBefore" with an ISO-8601 time`;
  }
  if (input.window !== undefined && input.notBefore !== undefined) return 'input "window" and "notBefore" both given: give one of them';
  if (input.notBefore !== undefined && (typeof input.notBefore !== 'string' || !parseIsoWithOffset(input.notBefore))) {
    return `input "notBefore": ${JSON.stringify(input.notBefore)} is not an ISO-8601 time with an offset; e.g. "2026-12-01T22:00:00+01:00" or "2026-12-01T21:00:00Z"`;
  }
  if (input.windowLength !== undefined) {
    if (input.notBefore === undefined) return 'input "windowLength" needs "notBefore" (the length of a one-off window; a profile window has its own end)';
    const ms = typeof input.windowLength === 'string' ? durationMs(input.windowLength) : undefined;
    if (!ms) return `input "windowLength": ${JSON.stringify(input.windowLength)} is not a positive duration such as "30m" or "2h"`;
  }
  return undefined;
}

/**
 * The plan's window: the profile's windows or the one-off window, with the downtime they must
 * hold: a passed rehearsal's prediction (`rehearsedMs`) where there is one, else the profile's.
 */
export function plannedWindow(input: UpgradeInput, deployment: string, maintenance: MaintenanceSettings | undefined, now: number, rehearsedMs?: number): PlannedWindow {
  const settings = maintenance ?? { windows: [], predictedDowntimeMs: 300_000, whenTooShort: 'next-window' as const };
  const predicted =
    rehearsedMs !== undefined && rehearsedMs > 0
      ? { predictedDowntimeMs: rehearsedMs, predictedDowntimeFrom: 'rehearsal' as const }
      : { predictedDowntimeMs: settings.predictedDowntimeMs, predictedDowntimeFrom: 'profile' as const };
  const common = { ...predicted, whenTooShort: settings.whenTooShort };
  if (input.window === 'next') {
    if (!settings.windows.length) {
      throw badInput(`deployment "${deployment}" has no maintenance windows in its profile (maintenance.windows): add one (README, "Maintenance windows"), or start the upgrade with --not-before TIME, or without a window`);
    }
    return { kind: 'profile', windows: settings.windows, ...common };
  }
  const start = parseIsoWithOffset(input.notBefore!)!;
  const lengthMs = input.windowLength ? durationMs(input.windowLength)! : Math.max(0, ...settings.windows.map(nominalLengthMs)) || DEFAULT_ONE_OFF_WINDOW_MS;
  const end = start.instant + lengthMs;
  if (end <= now) {
    throw badInput(`input "notBefore": the window ${input.notBefore} .. ${new Date(end).toISOString()} has already ended (server time ${new Date(now).toISOString()}); give a later time`);
  }
  return { kind: 'one-off', start: new Date(start.instant).toISOString(), end: new Date(end).toISOString(), timeZone: start.timeZone, ...common };
}

function windowsOf(planned: PlannedWindow, now: number): WindowInstant[] {
  if (planned.kind === 'one-off') {
    const w = { start: Date.parse(planned.start!), end: Date.parse(planned.end!), timeZone: planned.timeZone! };
    return w.end > now ? [w] : [];
  }
  return upcomingWindows(planned.windows ?? [], now);
}

/** The plan's step that says what the wait does: inserted before "stop the old runtime". */
export function windowPlanStep(planned: PlannedWindow): string {
  const fallback = planned.whenTooShort === 'end' || planned.kind === 'one-off' ? 'else end the run, nothing changed' : 'else wait for the next window';
  const from = planned.predictedDowntimeFrom === 'rehearsal' ? ' (measured by the rehearsal)' : '';
  return `wait for the maintenance window ${describePlannedWindow(planned)}; stop only if the predicted downtime ${formatSpan(planned.predictedDowntimeMs)}${from} fits in what is left of it, ${fallback}`;
}

export function windowFields(w: WindowInstant): NonNullable<UpgradeStatus['window']> {
  return { start: new Date(w.start).toISOString(), end: new Date(w.end).toISOString(), timeZone: w.timeZone };
}

export interface WindowWaitHooks {
  /** The run waits for `window` (again after a wake that found it too short); `note` says why an earlier one was passed over. */
  waiting(window: WindowInstant, note?: string): void;
  /** The window is open and holds the predicted downtime: the stop starts now. */
  opened(window: WindowInstant): void;
}

/** Workflow time and a durable timer; a test passes a fake one. */
export interface WaitClock {
  now(): number;
  sleep(ms: number): Promise<void>;
}
const WORKFLOW_CLOCK: WaitClock = { now: () => Date.now(), sleep: (ms) => sleep(ms) };

/** How a wait ended: in a window that holds the downtime, or with the reason no window will. */
export type WindowWaitResult = { opened: WindowInstant } | { missed: string };

/**
 * Waits durably (workflow timers, workflow time) until a window is open that still holds the
 * predicted downtime. A window too short for it, from the start or by what is left of it when
 * the run gets there, is passed over for the next one, or ends the wait (`whenTooShort: "end"`,
 * or a one-off window, which has no next). Cancellation of the run interrupts the sleep.
 */
export async function waitForWindow(planned: PlannedWindow, hooks: WindowWaitHooks, clock: WaitClock = WORKFLOW_CLOCK): Promise<WindowWaitResult> {
  const predicted = planned.predictedDowntimeMs;
  let from = clock.now();
  let note: string | undefined;
  let firstNote: string | undefined;
  let passed = 0;
  let waitingFor: WindowInstant | undefined;
  for (;;) {
    const now = clock.now();
    const window = windowsOf(planned, Math.max(from, now))[0];
    if (!window) {
      const why = planned.kind === 'one-off' ? `the window ${describePlannedWindow(planned)} has ended` : `no maintenance window in the next ${SEARCH_HORIZON_DAYS} days`;
      return { missed: note ? `${note}; and ${why}` : why };
    }
    if (window.start - now > SEARCH_HORIZON_DAYS * 86_400_000) {
      return { missed: `${note ? `${note}; ` : ''}no window in the next ${SEARCH_HORIZON_DAYS} days holds the predicted downtime ${formatSpan(predicted)}` };
    }
    const left = remainingMs(window, now);
    if (left < predicted) {
      const how = now >= window.start ? `has ${formatSpan(left)} left` : `is ${formatSpan(left)} long`;
      const reason = `window ${windowLabel(window)} ${how}, the predicted downtime is ${formatSpan(predicted)}`;
      if (planned.whenTooShort === 'end') return { missed: `${reason} (maintenance.whenTooShort "end")` };
      if (planned.kind === 'one-off') return { missed: `${reason} (a one-off window has no next one)` };
      // The first window passed over is the one the operator expected; later ones are counted.
      passed++;
      note = passed === 1 ? reason : `${firstNote}, and ${passed - 1} later window${passed > 2 ? 's' : ''} too short`;
      firstNote ??= reason;
      from = window.end;
      continue;
    }
    if (now >= window.start) {
      hooks.opened(window);
      return { opened: window };
    }
    if (!waitingFor || waitingFor.start !== window.start || waitingFor.end !== window.end) {
      waitingFor = window;
      hooks.waiting(window, note);
    }
    await clock.sleep(window.start - now);
    // Checked again on waking: a worker that was down past the start finds less of the window.
  }
}

/** The failure type that ends the wait when no window will do (caught in the upgrade: nothing changed). */
export const WINDOW_MISSED = 'DgWindowMissed';

/** Puts the wait into the plan's steps and the run's step list, right before the stop. */
export function insertWindowStep(plan: UpgradePlan, steps: StepStatus[]): void {
  if (!plan.window) return;
  const stopAt = plan.steps.indexOf('stop the old runtime');
  plan.steps.splice(stopAt < 0 ? 0 : stopAt, 0, windowPlanStep(plan.window));
  if (!steps.some((s) => s.name === 'window')) {
    const at = steps.findIndex((s) => s.name === 'stopOld');
    steps.splice(at < 0 ? steps.length : at, 0, { name: 'window', state: 'pending' });
  }
}

/** A passed rehearsal's predicted downtime, where the plan carries one (issue 21's `plan.rehearsal`). */
export function rehearsedDowntimeMs(plan: object): number | undefined {
  const r = (plan as { rehearsal?: { passed?: boolean; predictedDowntimeMs?: number } }).rehearsal;
  return r?.passed ? r.predictedDowntimeMs : undefined;
}
