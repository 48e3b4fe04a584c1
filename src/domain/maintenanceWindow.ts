// Maintenance-window arithmetic: pure, no I/O, used by the workflow (from workflow time) and the CLI.
import type { PlannedWindow } from './types.js';
//
// Zone offsets come from Intl.DateTimeFormat (ICU's time-zone data of the Node that runs the
// worker): the result depends only on the zone, the instant and that data. A Node upgrade with
// newer tz data can move a window only where a zone's rules changed; timers are replayed by their
// sequence, not their duration, so a replay never fails on it.

export const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;
export type Weekday = (typeof WEEKDAYS)[number];

/** One weekly window of the profile: it starts on each of `days` at `start` local time. */
export interface WindowSpec {
  days: Weekday[];
  /** "HH:MM", 24-hour local time in `timeZone`. */
  start: string;
  /** "HH:MM"; before `start`, the window ends on the next day (it spans midnight). */
  end: string;
  /** An IANA zone, e.g. "Europe/Berlin". */
  timeZone: string;
}

/** One concrete window: [start, end) as epoch ms. */
export interface WindowInstant {
  start: number;
  end: number;
  /** The IANA zone of the spec, or a fixed offset ("+01:00", "UTC") for a one-off window. */
  timeZone: string;
}

/** How far ahead the search looks: with every day of a week listed, a window always exists in it. */
export const SEARCH_HORIZON_DAYS = 8;
const DAY_MS = 86_400_000;
const HHMM = /^([01]\d|2[0-3]):([0-5]\d)$/;
const FIXED_OFFSET = /^[+-]([01]\d|2[0-3]):([0-5]\d)$/;

export function parseHhmm(value: string): { hour: number; minute: number } | undefined {
  const m = HHMM.exec(value);
  return m ? { hour: Number(m[1]), minute: Number(m[2]) } : undefined;
}

/** Whether Intl knows the zone (an IANA name such as "Europe/Berlin", or "UTC"). */
export function isValidTimeZone(zone: string): boolean {
  if (typeof zone !== 'string' || !zone || FIXED_OFFSET.test(zone)) return false;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

const formatters = new Map<string, Intl.DateTimeFormat>();
function formatterOf(zone: string): Intl.DateTimeFormat {
  let f = formatters.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    });
    formatters.set(zone, f);
  }
  return f;
}

interface Wall {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
}

function fixedOffsetMs(zone: string): number | undefined {
  if (zone === 'UTC' || zone === 'Z') return 0;
  const m = FIXED_OFFSET.exec(zone);
  if (!m) return undefined;
  const ms = (Number(m[1]) * 60 + Number(m[2])) * 60_000;
  return zone.startsWith('-') ? -ms : ms;
}

/** The local wall-clock time of an instant in a zone. */
export function wallTime(instant: number, zone: string): Wall {
  const fixed = fixedOffsetMs(zone);
  if (fixed !== undefined) {
    const d = new Date(instant + fixed);
    return { year: d.getUTCFullYear(), month: d.getUTCMonth() + 1, day: d.getUTCDate(), hour: d.getUTCHours(), minute: d.getUTCMinutes(), second: d.getUTCSeconds() };
  }
  const parts: Record<string, number> = {};
  for (const p of formatterOf(zone).formatToParts(new Date(instant))) {
    if (p.type !== 'literal') parts[p.type] = Number(p.value);
  }
  return { year: parts.year!, month: parts.month!, day: parts.day!, hour: parts.hour! % 24, minute: parts.minute!, second: parts.second! };
}

/** The zone's offset from UTC at an instant, in ms (Europe/Berlin in summer: +7 200 000). */
export function offsetAt(instant: number, zone: string): number {
  const w = wallTime(instant, zone);
  const asUtc = Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute, w.second);
  return asUtc - (instant - (((instant % 1000) + 1000) % 1000));
}

/**
 * The instant of a local wall-clock time in a zone. A time that does not exist (the hour skipped
 * when clocks go forward) is moved forward by the gap (02:30 on Berlin's spring-forward night is
 * 03:30 CEST); a time that exists twice (the hour repeated when clocks go back) is its first, earlier
 * occurrence. This is the "compatible" rule of RFC 5545 and of JavaScript's Temporal.
 */
export function localToInstant(year: number, month: number, day: number, hour: number, minute: number, zone: string): number {
  const wall = Date.UTC(year, month - 1, day, hour, minute);
  const before = offsetAt(wall - DAY_MS, zone);
  const after = offsetAt(wall + DAY_MS, zone);
  const candidates = [...new Set([before, after])].map((o) => wall - o).filter((t) => offsetAt(t, zone) === wall - t);
  if (candidates.length) return Math.min(...candidates);
  // In the gap: the offset before the change, applied to the wall time, lands after the change.
  return wall - before;
}

function addDays(year: number, month: number, day: number, n: number): { year: number; month: number; day: number } {
  const d = new Date(Date.UTC(year, month - 1, day) + n * DAY_MS);
  return { year: d.getUTCFullYear(), month: d.getUTCMonth() + 1, day: d.getUTCDate() };
}

/** The concrete windows of one spec that start on local days from `fromDay` to `toDay` days after `now`'s local date. */
function instantsOf(spec: WindowSpec, now: number, fromDay: number, toDay: number): WindowInstant[] {
  const start = parseHhmm(spec.start);
  const end = parseHhmm(spec.end);
  if (!start || !end || spec.start === spec.end) return [];
  const spansMidnight = end.hour * 60 + end.minute < start.hour * 60 + start.minute;
  const today = wallTime(now, spec.timeZone);
  const out: WindowInstant[] = [];
  for (let n = fromDay; n <= toDay; n++) {
    const date = addDays(today.year, today.month, today.day, n);
    const weekday = WEEKDAYS[new Date(Date.UTC(date.year, date.month - 1, date.day)).getUTCDay()]!;
    if (!spec.days.includes(weekday)) continue;
    const endDate = spansMidnight ? addDays(date.year, date.month, date.day, 1) : date;
    const s = localToInstant(date.year, date.month, date.day, start.hour, start.minute, spec.timeZone);
    const e = localToInstant(endDate.year, endDate.month, endDate.day, end.hour, end.minute, spec.timeZone);
    if (e > s) out.push({ start: s, end: e, timeZone: spec.timeZone });
  }
  return out;
}

/**
 * The windows that have not ended at `now` (the current one first, if one has begun), in order of
 * their start, up to SEARCH_HORIZON_DAYS ahead.
 */
export function upcomingWindows(specs: readonly WindowSpec[], now: number): WindowInstant[] {
  const all = specs.flatMap((spec) => instantsOf(spec, now, -1, SEARCH_HORIZON_DAYS));
  return all
    .filter((w) => w.end > now && w.start <= now + SEARCH_HORIZON_DAYS * DAY_MS)
    .sort((a, b) => a.start - b.start || b.end - a.end);
}

/** The window open at `now` (remaining = end - now), else the next one; undefined if none within the horizon. */
export function nextWindow(specs: readonly WindowSpec[], now: number): WindowInstant | undefined {
  return upcomingWindows(specs, now)[0];
}

/** What is left of a window at `now`: its whole length before it opens, 0 after it closed. */
export function remainingMs(window: WindowInstant, now: number): number {
  return Math.max(0, window.end - Math.max(now, window.start));
}

/** The length of one window spec on an ordinary day (no clock change), in ms. */
export function nominalLengthMs(spec: WindowSpec): number {
  const s = parseHhmm(spec.start);
  const e = parseHhmm(spec.end);
  if (!s || !e) return 0;
  const minutes = e.hour * 60 + e.minute - (s.hour * 60 + s.minute);
  return (minutes > 0 ? minutes : minutes + 24 * 60) * 60_000;
}

/**
 * An ISO-8601 time with an explicit offset ("2026-12-01T22:00:00+01:00", "...Z"): its instant and
 * the offset as a zone label; undefined for anything else (no offset: ambiguous, refused).
 */
export function parseIsoWithOffset(value: string): { instant: number; timeZone: string } | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:\d{2})$/.exec(typeof value === 'string' ? value : '');
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s = '0', , zone] = m;
  const offset = fixedOffsetMs(zone!);
  if (offset === undefined) return undefined;
  const wall = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s));
  const check = new Date(wall);
  // Date.UTC rolls 2026-02-30 over to March: refuse dates that do not exist.
  if (check.getUTCMonth() !== Number(mo) - 1 || check.getUTCDate() !== Number(d) || Number(h) > 23 || Number(mi) > 59 || Number(s) > 59) return undefined;
  const fraction = m[7] ? Math.floor(Number(`0.${m[7]}`) * 1000) : 0;
  return { instant: wall + fraction - offset, timeZone: zone === 'Z' ? 'UTC' : zone! };
}

const pad = (n: number) => String(n).padStart(2, '0');
const WEEKDAY_LABEL = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];

/** "Tue 2026-12-01 22:00" in the window's zone. */
export function formatLocal(instant: number, zone: string): string {
  const w = wallTime(instant, zone);
  const weekday = WEEKDAY_LABEL[new Date(Date.UTC(w.year, w.month - 1, w.day)).getUTCDay()];
  return `${weekday} ${w.year}-${pad(w.month)}-${pad(w.day)} ${pad(w.hour)}:${pad(w.minute)}`;
}

/** "Tue 2026-12-01 22:00..02:00 (Europe/Berlin)": the end's date only when it is another day. */
export function windowLabel(window: WindowInstant): string {
  const start = formatLocal(window.start, window.timeZone);
  const end = formatLocal(window.end, window.timeZone);
  const sameDay = start.slice(0, 14) === end.slice(0, 14);
  const endShown = sameDay || nominalEndIsNextDay(window) ? end.slice(15) : end;
  return `${start}..${endShown} (${window.timeZone})`;
}

function nominalEndIsNextDay(window: WindowInstant): boolean {
  return window.end - window.start < DAY_MS && formatLocal(window.end, window.timeZone).slice(15) < formatLocal(window.start, window.timeZone).slice(15);
}

/** "3m", "1h30m", "45s", "2d3h": short, for summaries. */
export function formatSpan(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const d = Math.floor(s / 86_400);
  const h = Math.floor((s % 86_400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (d) return `${d}d${h ? `${h}h` : ''}`;
  if (h) return `${h}h${m ? `${m}m` : ''}`;
  return `${m}m${sec ? `${sec}s` : ''}`;
}

/** "mon,tue 22:00..02:00 (Europe/Berlin)" for each profile window, or the one-off window's label. */
export function describePlannedWindow(planned: PlannedWindow): string {
  if (planned.kind === 'one-off') return windowLabel({ start: Date.parse(planned.start!), end: Date.parse(planned.end!), timeZone: planned.timeZone! });
  return (planned.windows ?? []).map((w) => `${w.days.join(',')} ${w.start}..${w.end} (${w.timeZone})`).join('; ');
}
