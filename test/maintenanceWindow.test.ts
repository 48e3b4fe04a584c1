import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  formatSpan,
  isValidTimeZone,
  localToInstant,
  nextWindow,
  nominalLengthMs,
  offsetAt,
  parseIsoWithOffset,
  remainingMs,
  upcomingWindows,
  windowLabel,
  WEEKDAYS,
  type WindowSpec,
} from '../src/domain/maintenanceWindow.js';

const utc = (iso: string) => Date.parse(iso);
const H = 3_600_000;
const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());

test('offsets from Intl: Berlin and New York in winter and summer', () => {
  assert.equal(offsetAt(utc('2026-01-15T12:00:00Z'), 'Europe/Berlin'), 1 * H);
  assert.equal(offsetAt(utc('2026-07-15T12:00:00Z'), 'Europe/Berlin'), 2 * H);
  assert.equal(offsetAt(utc('2026-01-15T12:00:00Z'), 'America/New_York'), -5 * H);
  assert.equal(offsetAt(utc('2026-07-15T12:00:00Z'), 'America/New_York'), -4 * H);
  assert.equal(offsetAt(utc('2026-07-15T12:00:00Z'), 'UTC'), 0);
});

test('Europe/Berlin: a window keeps its local time across both clock changes, and its length changes on the night of the change', () => {
  const daily: WindowSpec = { days: [...WEEKDAYS], start: '09:00', end: '10:00', timeZone: 'Europe/Berlin' };
  // Saturday 28 March 2026 is CET (+1), Sunday 29 March CEST (+2): 09:00 local moves by an hour in UTC.
  assert.equal(iso(nextWindow([daily], utc('2026-03-28T06:00:00Z'))?.start), '2026-03-28T08:00:00.000Z');
  assert.equal(iso(nextWindow([daily], utc('2026-03-28T12:00:00Z'))?.start), '2026-03-29T07:00:00.000Z');
  // October: Sunday 25 October 2026 is CET again.
  assert.equal(iso(nextWindow([daily], utc('2026-10-24T12:00:00Z'))?.start), '2026-10-25T08:00:00.000Z');

  // A night window over the change: 00:00..06:00 is 5 hours in March and 7 in October.
  const night: WindowSpec = { days: ['sun'], start: '00:00', end: '06:00', timeZone: 'Europe/Berlin' };
  const march = nextWindow([night], utc('2026-03-28T12:00:00Z'))!;
  assert.deepEqual([iso(march.start), iso(march.end)], ['2026-03-28T23:00:00.000Z', '2026-03-29T04:00:00.000Z']);
  assert.equal(march.end - march.start, 5 * H);
  const october = nextWindow([night], utc('2026-10-24T12:00:00Z'))!;
  assert.deepEqual([iso(october.start), iso(october.end)], ['2026-10-24T22:00:00.000Z', '2026-10-25T05:00:00.000Z']);
  assert.equal(october.end - october.start, 7 * H);
});

test('America/New_York: the same, on its own dates (8 March and 1 November 2026)', () => {
  const night: WindowSpec = { days: ['sun'], start: '01:00', end: '05:00', timeZone: 'America/New_York' };
  const march = nextWindow([night], utc('2026-03-07T12:00:00Z'))!;
  assert.deepEqual([iso(march.start), iso(march.end)], ['2026-03-08T06:00:00.000Z', '2026-03-08T09:00:00.000Z'], '01:00 EST .. 05:00 EDT: 3 h');
  const november = nextWindow([night], utc('2026-10-31T12:00:00Z'))!;
  assert.deepEqual([iso(november.start), iso(november.end)], ['2026-11-01T05:00:00.000Z', '2026-11-01T10:00:00.000Z'], '01:00 EDT (the first 01:00) .. 05:00 EST: 5 h');
  const evening: WindowSpec = { days: ['mon', 'tue', 'wed', 'thu', 'fri'], start: '22:00', end: '23:30', timeZone: 'America/New_York' };
  assert.equal(iso(nextWindow([evening], utc('2026-03-06T12:00:00Z'))?.start), '2026-03-07T03:00:00.000Z', 'Friday 6 March 22:00 EST');
  assert.equal(iso(nextWindow([evening], utc('2026-03-07T12:00:00Z'))?.start), '2026-03-10T02:00:00.000Z', 'Monday 9 March 22:00 EDT (weekend skipped)');
});

test('a local time that does not exist is moved forward by the gap; one that exists twice is its first occurrence', () => {
  // Berlin, 29 March 2026: 02:00..03:00 does not exist; 02:30 is 03:30 CEST.
  assert.equal(iso(localToInstant(2026, 3, 29, 2, 30, 'Europe/Berlin')), '2026-03-29T01:30:00.000Z');
  // Berlin, 25 October 2026: 02:30 happens twice (CEST, then CET): the first, CEST.
  assert.equal(iso(localToInstant(2026, 10, 25, 2, 30, 'Europe/Berlin')), '2026-10-25T00:30:00.000Z');
  // New York, 8 March 2026: 02:30 does not exist (03:30 EDT); 1 November: 01:30 twice (EDT first).
  assert.equal(iso(localToInstant(2026, 3, 8, 2, 30, 'America/New_York')), '2026-03-08T07:30:00.000Z');
  assert.equal(iso(localToInstant(2026, 11, 1, 1, 30, 'America/New_York')), '2026-11-01T05:30:00.000Z');

  // A 22:00 window where 22:00 does not exist: Pacific/Easter goes from -06 to -05 at 22:00 on
  // Saturday 5 September 2026. The window starts at 23:00 (-05), when the skipped hour ends.
  const easter: WindowSpec = { days: ['sat'], start: '22:00', end: '23:59', timeZone: 'Pacific/Easter' };
  const gap = nextWindow([easter], utc('2026-09-05T12:00:00Z'))!;
  assert.deepEqual([iso(gap.start), iso(gap.end)], ['2026-09-06T04:00:00.000Z', '2026-09-06T04:59:00.000Z']);
  // The week before, an ordinary 22:00 (-06).
  assert.equal(iso(nextWindow([easter], utc('2026-08-29T12:00:00Z'))?.start), '2026-08-30T04:00:00.000Z');
  // A 23:00 window where 23:00 exists twice: America/Santiago goes back from -03 to -04 at 24:00
  // on Saturday 4 April 2026, so 23:00..24:00 repeats; the window starts at the first 23:00 (-03).
  const santiago: WindowSpec = { days: ['sat'], start: '23:00', end: '23:45', timeZone: 'America/Santiago' };
  const twice = nextWindow([santiago], utc('2026-04-04T12:00:00Z'))!;
  assert.deepEqual([iso(twice.start), iso(twice.end)], ['2026-04-05T02:00:00.000Z', '2026-04-05T02:45:00.000Z']);
});

test('a window that spans midnight ends the next day, and one that has begun is the current one', () => {
  // Mondays 22:00..02:00 in Berlin (CET, +1). Monday 7 December 2026.
  const spec: WindowSpec = { days: ['mon'], start: '22:00', end: '02:00', timeZone: 'Europe/Berlin' };
  const w = nextWindow([spec], utc('2026-12-07T12:00:00Z'))!;
  assert.deepEqual([iso(w.start), iso(w.end)], ['2026-12-07T21:00:00.000Z', '2026-12-08T01:00:00.000Z']);
  assert.equal(remainingMs(w, utc('2026-12-07T12:00:00Z')), 4 * H, 'before it opens: its whole length');
  assert.equal(windowLabel(w), 'Mon 2026-12-07 22:00..02:00 (Europe/Berlin)');

  // Tuesday 01:30 local: the window that began on Monday is open, 30 minutes left.
  const now = utc('2026-12-08T00:30:00Z');
  const current = nextWindow([spec], now)!;
  assert.equal(iso(current.start), '2026-12-07T21:00:00.000Z', 'the open window, not next week\'s');
  assert.equal(remainingMs(current, now), 30 * 60_000);
  // At its end it is over: next Monday's.
  assert.equal(iso(nextWindow([spec], utc('2026-12-08T01:00:00Z'))?.start), '2026-12-14T21:00:00.000Z');
  assert.equal(remainingMs(current, utc('2026-12-08T01:00:00Z')), 0);
});

test('with every day listed there is always a window within a day, all year, in several zones', () => {
  for (const timeZone of ['Europe/Berlin', 'America/New_York', 'Australia/Lord_Howe', 'Asia/Kolkata', 'Pacific/Easter']) {
    const spec: WindowSpec = { days: [...WEEKDAYS], start: '22:00', end: '02:00', timeZone };
    for (let now = utc('2026-01-01T00:00:00Z'); now < utc('2027-01-01T00:00:00Z'); now += 7 * H + 13 * 60_000) {
      const w = nextWindow([spec], now);
      assert.ok(w, `${timeZone} at ${iso(now)}: a window`);
      assert.ok(w.end > now && w.start - now <= 24 * H, `${timeZone} at ${iso(now)}: ${iso(w.start)}..${iso(w.end)}`);
      assert.ok(w.end - w.start >= 3 * H && w.end - w.start <= 5 * H, `${timeZone}: about 4 h long`);
    }
  }
});

test('several windows: sorted by start, the open one first; none when no day is listed', () => {
  const specs: WindowSpec[] = [
    { days: ['sat'], start: '06:00', end: '08:00', timeZone: 'Europe/Berlin' },
    { days: ['tue', 'thu'], start: '22:00', end: '23:00', timeZone: 'America/New_York' },
  ];
  const list = upcomingWindows(specs, utc('2026-12-01T12:00:00Z')); // Tuesday
  assert.deepEqual(list.slice(0, 3).map((w) => iso(w.start)), ['2026-12-02T03:00:00.000Z', '2026-12-04T03:00:00.000Z', '2026-12-05T05:00:00.000Z']);
  assert.equal(nextWindow([{ days: [], start: '22:00', end: '23:00', timeZone: 'UTC' }], utc('2026-12-01T12:00:00Z')), undefined);
});

test('zones, lengths, ISO times with offset, and spans', () => {
  assert.equal(isValidTimeZone('Europe/Berlin'), true);
  assert.equal(isValidTimeZone('UTC'), true);
  assert.equal(isValidTimeZone('Europe/Berln'), false);
  assert.equal(isValidTimeZone(''), false);
  assert.equal(nominalLengthMs({ days: ['mon'], start: '22:00', end: '02:00', timeZone: 'UTC' }), 4 * H);
  assert.equal(nominalLengthMs({ days: ['mon'], start: '01:00', end: '01:30', timeZone: 'UTC' }), 30 * 60_000);
  assert.deepEqual(parseIsoWithOffset('2026-12-01T22:00:00+01:00'), { instant: utc('2026-12-01T21:00:00Z'), timeZone: '+01:00' });
  assert.deepEqual(parseIsoWithOffset('2026-12-01T22:00Z'), { instant: utc('2026-12-01T22:00:00Z'), timeZone: 'UTC' });
  assert.deepEqual(parseIsoWithOffset('2026-12-01T22:00:00.250-05:00'), { instant: utc('2026-12-02T03:00:00.250Z'), timeZone: '-05:00' });
  for (const bad of ['2026-12-01T22:00:00', '2026-12-01 22:00+01:00', '2026-02-30T22:00:00Z', '2026-12-01T24:00:00Z', 'tomorrow', '']) {
    assert.equal(parseIsoWithOffset(bad), undefined, bad);
  }
  assert.equal(windowLabel({ start: utc('2026-12-01T21:00:00Z'), end: utc('2026-12-01T21:05:00Z'), timeZone: '+01:00' }), 'Tue 2026-12-01 22:00..22:05 (+01:00)');
  assert.deepEqual([formatSpan(45_000), formatSpan(3 * 60_000), formatSpan(90 * 60_000), formatSpan(26 * H)], ['45s', '3m', '1h30m', '1d2h']);
});

// --- the profile's maintenance block, the CLI flags, and the wait's decisions (fake clock) ---

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseProfileFile, ProfileError, getDeployment } from '../src/config/profile.js';
import { windowInput } from '../src/client/windowFlags.js';
import { CliError } from '../src/client/exitCodes.js';
import { plannedWindow, waitForWindow, windowInputProblem, type WaitClock } from '../src/workflows/maintenanceWait.js';
import { PROJECT_ROOT } from './support/e2e.js';
import type { PlannedWindow } from '../src/domain/types.js';

const example = () => JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'examples', 'profile.example.json'), 'utf8'));

test('profile: maintenance windows are checked field by field, with what to do', () => {
  const raw = example();
  raw.deployments.sample.maintenance = { windows: [{ days: ['mon', 'fri'], start: '22:00', end: '02:00', timeZone: 'Europe/Berlin' }], predictedDowntime: '2m', whenTooShort: 'end' };
  const ok = parseProfileFile(raw, 'p.json').deployments.sample!.maintenance!;
  assert.deepEqual(ok, raw.deployments.sample.maintenance);
  raw.deployments.sample.maintenance = { windows: [{ days: ['sat'], start: '01:00', end: '03:00', timeZone: 'UTC' }] };
  assert.deepEqual(parseProfileFile(raw, 'p.json').deployments.sample!.maintenance, { windows: raw.deployments.sample.maintenance.windows, predictedDowntime: '5m', whenTooShort: 'next-window' }, 'defaults');

  raw.deployments.sample.maintenance = {
    windows: [
      { days: ['monday'], start: '22:00', end: '02:00', timeZone: 'Europe/Berlin' },
      { days: ['mon'], start: '25:00', end: '2:00', timeZone: 'Europe/Berln' },
      { days: [], start: '22:00', end: '22:00', timeZone: 'Europe/Berlin', extra: 1 },
    ],
    predictedDowntime: 'soon',
    whenTooShort: 'wait',
  };
  assert.throws(() => parseProfileFile(raw, 'p.json'), (err: ProfileError) => {
    const m = err.message;
    assert.match(m, /deployments\.sample\.maintenance\.windows\.0\.days\.0: unknown day "monday"; days are sun, mon, tue, wed, thu, fri, sat/);
    assert.match(m, /windows\.1\.start: a 24-hour local time "HH:MM"/);
    assert.match(m, /windows\.1\.end: a 24-hour local time "HH:MM"/);
    assert.match(m, /windows\.1\.timeZone: an IANA time zone such as "Europe\/Berlin"/);
    assert.match(m, /windows\.2\.days: at least one day/);
    assert.match(m, /windows\.2: Unrecognized key: "extra"|windows\.2.*extra/);
    assert.match(m, /maintenance\.predictedDowntime: a duration like/);
    assert.match(m, /maintenance\.whenTooShort/);
    return true;
  });
  raw.deployments.sample.maintenance = { windows: [{ days: ['mon'], start: '22:00', end: '22:00', timeZone: 'UTC' }] };
  assert.throws(() => parseProfileFile(raw, 'p.json'), /windows\.0\.end: end equals start/);
});

test('CLI: --window / --not-before / --window-length are refused with the reason before anything starts', () => {
  const raw = example();
  const none = getDeployment(parseProfileFile(raw), 'sample');
  raw.deployments.sample.maintenance = { windows: [{ days: ['mon'], start: '22:00', end: '23:00', timeZone: 'UTC' }] };
  const withWindows = getDeployment(parseProfileFile(raw), 'sample');
  const now = utc('2026-12-01T12:00:00Z');
  const refused = (values: Record<string, string>, d: typeof none, pattern: RegExp) =>
    assert.throws(() => windowInput(values, d, now), (e: CliError) => e instanceof CliError && e.exitCode === 2 && pattern.test(e.message) && /nothing was started/.test(e.message));
  refused({ window: 'next' }, none, /has no maintenance windows in its profile \(maintenance\.windows\)/);
  refused({ window: 'tonight' }, withWindows, /the only value is "next"/);
  refused({ window: 'next', 'not-before': '2026-12-01T22:00:00Z' }, withWindows, /both given/);
  refused({ 'not-before': '2026-12-01 22:00' }, none, /not an ISO-8601 time with an offset/);
  refused({ 'not-before': '2026-12-01T22:00:00' }, none, /not an ISO-8601 time with an offset/);
  refused({ 'not-before': '2026-12-01T11:59:00Z' }, none, /in the past/);
  refused({ 'window-length': '1h' }, none, /needs --not-before/);
  refused({ 'not-before': '2026-12-01T22:00:00Z', 'window-length': '0m' }, none, /not a positive duration/);
  assert.deepEqual(windowInput({ window: 'next' }, withWindows, now), { window: 'next' });
  assert.deepEqual(windowInput({ 'not-before': '2026-12-01T23:00:00+01:00', 'window-length': '30m' }, none, now), { notBefore: '2026-12-01T23:00:00+01:00', windowLength: '30m' });
  assert.deepEqual(windowInput({}, none, now), {});
});

test('workflow input (e.g. from the Temporal UI) is checked the same way', () => {
  const base = { deployment: 'x', targetRef: 'v0.2.0' };
  assert.match(windowInputProblem({ ...base, window: 'tonight' as never })!, /"window": "tonight" is not a window/);
  assert.match(windowInputProblem({ ...base, notBefore: 'tomorrow' })!, /"notBefore": "tomorrow" is not an ISO-8601 time/);
  assert.match(windowInputProblem({ ...base, windowLength: '1h' })!, /needs "notBefore"/);
  assert.equal(windowInputProblem({ ...base, window: 'next' }), undefined);
  const settings = { windows: [{ days: ['mon' as const], start: '22:00', end: '01:30', timeZone: 'Europe/Berlin' }], predictedDowntimeMs: 120_000, whenTooShort: 'next-window' as const };
  assert.throws(() => plannedWindow({ ...base, window: 'next' }, 'x', { ...settings, windows: [] }, 0), /has no maintenance windows in its profile/);
  const oneOff = plannedWindow({ ...base, notBefore: '2026-12-01T22:00:00+01:00' }, 'x', settings, utc('2026-12-01T12:00:00Z'));
  assert.deepEqual([oneOff.start, oneOff.end, oneOff.timeZone], ['2026-12-01T21:00:00.000Z', '2026-12-02T00:30:00.000Z', '+01:00'], 'one-off: as long as the longest profile window');
  const noProfile = plannedWindow({ ...base, notBefore: '2026-12-01T22:00:00Z' }, 'x', { ...settings, windows: [] }, utc('2026-12-01T12:00:00Z'));
  assert.equal(noProfile.end, '2026-12-01T23:00:00.000Z', 'one-off without profile windows: 1 h');
  assert.throws(() => plannedWindow({ ...base, notBefore: '2026-12-01T10:00:00Z', windowLength: '1h' }, 'x', settings, utc('2026-12-01T12:00:00Z')), /has already ended/);
});

/** A clock that jumps to the end of each sleep, and records what the wait did. */
function fakeClock(start: number): WaitClock & { sleeps: number[] } {
  let now = start;
  const sleeps: number[] = [];
  return { sleeps, now: () => now, sleep: async (ms) => void (sleeps.push(ms), (now += ms)) };
}

test('the wait: sleeps to the window, passes over one too short, or ends, saying why', async () => {
  const profile = (windows: PlannedWindow['windows'], predictedDowntimeMs: number, whenTooShort: 'next-window' | 'end'): PlannedWindow => ({ kind: 'profile', windows, predictedDowntimeMs, predictedDowntimeFrom: 'profile', whenTooShort });
  const daily = (start: string, end: string) => ({ days: [...WEEKDAYS], start, end, timeZone: 'Europe/Berlin' });
  const events: string[] = [];
  const hooks = { waiting: (w: { start: number }, note?: string) => void events.push(`waiting ${iso(w.start)}${note ? ` (${note})` : ''}`), opened: (w: { start: number }) => void events.push(`opened ${iso(w.start)}`) };

  // Tuesday 1 December 2026, 12:00 UTC (13:00 Berlin): the window opens at 22:00 Berlin.
  let clock = fakeClock(utc('2026-12-01T12:00:00Z'));
  let r = await waitForWindow(profile([daily('22:00', '23:00')], 300_000, 'next-window'), hooks, clock);
  assert.deepEqual(r, { opened: { start: utc('2026-12-01T21:00:00Z'), end: utc('2026-12-01T22:00:00Z'), timeZone: 'Europe/Berlin' } });
  assert.deepEqual(clock.sleeps, [9 * H]);
  assert.deepEqual(events.splice(0), ['waiting 2026-12-01T21:00:00.000Z', 'opened 2026-12-01T21:00:00.000Z']);

  // Inside the window with 3 minutes left, 5 predicted: the next day's window.
  clock = fakeClock(utc('2026-12-01T21:57:00Z'));
  r = await waitForWindow(profile([daily('22:00', '23:00')], 300_000, 'next-window'), hooks, clock);
  assert.equal(iso('opened' in r ? r.opened.start : undefined), '2026-12-02T21:00:00.000Z');
  assert.deepEqual(events.splice(0), [
    'waiting 2026-12-02T21:00:00.000Z (window Tue 2026-12-01 22:00..23:00 (Europe/Berlin) has 3m left, the predicted downtime is 5m)',
    'opened 2026-12-02T21:00:00.000Z',
  ]);
  // The same with whenTooShort "end": no sleep, the reason.
  clock = fakeClock(utc('2026-12-01T21:57:00Z'));
  r = await waitForWindow(profile([daily('22:00', '23:00')], 300_000, 'end'), hooks, clock);
  assert.deepEqual(r, { missed: 'window Tue 2026-12-01 22:00..23:00 (Europe/Berlin) has 3m left, the predicted downtime is 5m (maintenance.whenTooShort "end")' });
  assert.deepEqual([clock.sleeps, events.splice(0)], [[], []]);

  // A 1-minute window and a 10-minute downtime: the longer window the profile also has.
  clock = fakeClock(utc('2026-12-01T12:00:00Z'));
  r = await waitForWindow(profile([daily('22:00', '22:01'), { days: ['sat'], start: '02:00', end: '04:00', timeZone: 'Europe/Berlin' }], 600_000, 'next-window'), hooks, clock);
  assert.equal(iso('opened' in r ? r.opened.start : undefined), '2026-12-05T01:00:00.000Z');
  assert.equal(events[0], 'waiting 2026-12-05T01:00:00.000Z (window Tue 2026-12-01 22:00..22:01 (Europe/Berlin) is 1m long, the predicted downtime is 10m, and 3 later windows too short)');
  events.length = 0;
  // Only windows that are too short: it ends, not loops.
  r = await waitForWindow(profile([daily('22:00', '22:01')], 600_000, 'next-window'), hooks, fakeClock(utc('2026-12-01T12:00:00Z')));
  assert.match('missed' in r ? r.missed : '', /is 1m long, the predicted downtime is 10m, and 7 later windows too short; no window in the next 8 days holds the predicted downtime 10m$/);

  // A worker down past the start wakes to less of the window: checked again.
  let late = fakeClock(utc('2026-12-01T12:00:00Z'));
  const sleepLate = late.sleep;
  late = { ...late, sleep: async (ms) => { await sleepLate(ms); await sleepLate(58 * 60_000); } };
  r = await waitForWindow(profile([daily('22:00', '23:00')], 300_000, 'end'), hooks, late);
  assert.match('missed' in r ? r.missed : '', /has 2m left, the predicted downtime is 5m/);
  events.length = 0;

  // A one-off window: no next one.
  const oneOff: PlannedWindow = { kind: 'one-off', start: '2026-12-01T21:00:00.000Z', end: '2026-12-01T21:01:00.000Z', timeZone: '+01:00', predictedDowntimeMs: 600_000, predictedDowntimeFrom: 'profile', whenTooShort: 'next-window' };
  r = await waitForWindow(oneOff, hooks, fakeClock(utc('2026-12-01T12:00:00Z')));
  assert.deepEqual(r, { missed: 'window Tue 2026-12-01 22:00..22:01 (+01:00) is 1m long, the predicted downtime is 10m (a one-off window has no next one)' });
});
