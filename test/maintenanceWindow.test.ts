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
