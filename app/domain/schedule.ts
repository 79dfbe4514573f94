/**
 * Off-hours schedules ("stop at 19:00 and start at 08:00 on weekdays, Berlin time") and expiry times.
 * Pure: no clock, no store; callers pass `now`. All zone arithmetic goes through luxon so that the
 * daylight-saving rules below come from the IANA database, not from offsets written by hand.
 *
 * Daylight-saving rules, so that a schedule fires exactly once per listed local day:
 * - A local time that does not exist on a spring-forward day (02:30 in Europe/Berlin on 2026-03-29, when
 *   clocks jump from 02:00 to 03:00) happens at the first valid instant after the gap (03:00 local).
 *   luxon on its own would move it forward by the length of the gap (to 03:30), which can reorder a stop
 *   and a start that both fall in or just after the gap; the first instant after the gap keeps their order.
 * - A local time that occurs twice on a fall-back day (02:30 in Europe/Berlin on 2026-10-25) happens once,
 *   at its first occurrence (still on summer time). luxon alone picks the first occurrence for zones east
 *   of UTC but the second for zones west of it, so the choice is made here explicitly.
 * - The `days` filter applies to the local date in the schedule's zone.
 */
import { DateTime, IANAZone } from 'luxon';

export interface Schedule {
  stop_at: string;
  start_at?: string | undefined;
  days: string;
  timezone: string;
}

export type ScheduledAction = 'stop' | 'start';

export interface ScheduledEvent {
  action: ScheduledAction;
  at: Date;
}

export interface FieldProblem {
  field: string;
  message: string;
}

const DAY_NAMES = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;
const TIME_OF_DAY = /^([01]\d|2[0-3]):([0-5]\d)$/;
const SCHEDULE_KEYS = ['stop_at', 'start_at', 'days', 'timezone'];
/** Longer than a week, so a weekly schedule always has an occurrence in the window. */
const SEARCH_DAYS = 8;

/** Luxon weekday numbers (1 = Monday … 7 = Sunday) the `days` text selects, or a message saying what is wrong. */
function parseDays(text: string): Set<number> | string {
  const hint = 'use "daily", a range such as "mon-fri", a list such as "mon,wed,fri", or a mix such as "mon-wed,sat"';
  const normalized = text.trim().toLowerCase();
  if (normalized === 'daily') return new Set([1, 2, 3, 4, 5, 6, 7]);
  if (normalized === '') return `is empty; ${hint}`;
  const selected = new Set<number>();
  for (const rawPart of normalized.split(',')) {
    const part = rawPart.trim();
    if (part === '') return `has an empty entry in "${text}"; ${hint}`;
    const bounds = part.split('-').map((name) => name.trim());
    if (bounds.length > 2) return `has a malformed range "${part}"; ${hint}`;
    const numbers: number[] = [];
    for (const name of bounds) {
      const index = (DAY_NAMES as readonly string[]).indexOf(name);
      if (index < 0) return `has an unknown day "${name}"; days are ${DAY_NAMES.join(', ')}; ${hint}`;
      numbers.push(index + 1);
    }
    const [first, last = first] = numbers as [number, number?];
    // A range that runs backwards ("fri-mon") wraps over the weekend.
    for (let day = first, steps = 0; steps < 7; steps += 1) {
      selected.add(day);
      if (day === last) break;
      day = (day % 7) + 1;
    }
  }
  return selected;
}

function timeProblem(value: unknown, example: string): string | undefined {
  if (typeof value !== 'string') return `must be a time of day "HH:MM" (24-hour), e.g. "${example}"`;
  if (!TIME_OF_DAY.test(value)) return `"${value}" is not a time of day; use "HH:MM" in 24-hour time, e.g. "${example}"`;
  return undefined;
}

/** A zone's name, never a bare offset: "Europe/Berlin", "America/Argentina/Buenos_Aires", "UTC", "Etc/GMT+1". */
const IANA_NAME = /^[A-Za-z][A-Za-z0-9_-]*(?:\/[A-Za-z0-9_+-]+)*$/;

export function scheduleProblems(schedule: Schedule): FieldProblem[] {
  const problems: FieldProblem[] = [];
  const stopProblem = timeProblem(schedule.stop_at, '19:00');
  if (stopProblem) problems.push({ field: 'schedule.stop_at', message: stopProblem });
  if (schedule.start_at !== undefined) {
    const startProblem = timeProblem(schedule.start_at, '08:00');
    if (startProblem) problems.push({ field: 'schedule.start_at', message: startProblem });
    else if (!stopProblem && schedule.start_at === schedule.stop_at) {
      problems.push({
        field: 'schedule.start_at',
        message: `must differ from stop_at (both are "${schedule.stop_at}"); leave start_at out for a schedule that only stops`,
      });
    }
  }
  if (typeof schedule.days !== 'string') {
    problems.push({ field: 'schedule.days', message: 'must be a text such as "daily", "mon-fri" or "mon,wed,fri"' });
  } else {
    const days = parseDays(schedule.days);
    if (typeof days === 'string') problems.push({ field: 'schedule.days', message: days });
  }
  if (typeof schedule.timezone !== 'string' || schedule.timezone.trim() === '') {
    problems.push({ field: 'schedule.timezone', message: 'must be an IANA time zone name such as Europe/Berlin or UTC' });
  } else if (!IANA_NAME.test(schedule.timezone) || !IANAZone.isValidZone(schedule.timezone)) {
    // Newer Intl data (Node 24) also takes offsets such as "+01:00", which know no daylight saving: a
    // schedule needs a named zone.
    problems.push({
      field: 'schedule.timezone',
      message: `unknown time zone "${schedule.timezone}"; use an IANA name such as Europe/Berlin, America/New_York or UTC`,
    });
  }
  return problems;
}

/**
 * A schedule from configuration text (JSON of the same object the API accepts). `start_at: null` is read
 * as "no start", since that is how a JSON writer naturally spells an absent value.
 */
export function parseSchedule(text: string): Schedule {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new Error(
      `schedule is not valid JSON (${(error as Error).message}); expected e.g. {"stop_at":"19:00","start_at":"08:00","days":"mon-fri","timezone":"Europe/Berlin"}`,
    );
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new Error('schedule must be a JSON object with stop_at, days, timezone and optionally start_at');
  }
  const record = parsed as Record<string, unknown>;
  const unknownKeys = Object.keys(record).filter((key) => !SCHEDULE_KEYS.includes(key));
  if (unknownKeys.length > 0) {
    throw new Error(`schedule has unknown field(s) ${unknownKeys.map((k) => `"${k}"`).join(', ')}; allowed: ${SCHEDULE_KEYS.join(', ')}`);
  }
  const missing = ['stop_at', 'days', 'timezone'].filter((key) => record[key] === undefined);
  if (missing.length > 0) throw new Error(`schedule is missing ${missing.join(', ')}`);
  const schedule: Schedule = {
    stop_at: record.stop_at as string,
    days: record.days as string,
    timezone: record.timezone as string,
  };
  if (record.start_at !== undefined && record.start_at !== null) schedule.start_at = record.start_at as string;
  const problems = scheduleProblems(schedule);
  if (problems.length > 0) {
    throw new Error(`schedule is not valid: ${problems.map((p) => `${p.field} ${p.message}`).join('; ')}`);
  }
  return schedule;
}

/** Parsed once per call; callers are expected to have validated the schedule. */
function compile(schedule: Schedule): { days: Set<number>; zone: string; times: Array<{ action: ScheduledAction; hour: number; minute: number }> } {
  const problems = scheduleProblems(schedule);
  if (problems.length > 0) throw new RangeError(`invalid schedule: ${problems.map((p) => `${p.field} ${p.message}`).join('; ')}`);
  const days = parseDays(schedule.days) as Set<number>;
  const times: Array<{ action: ScheduledAction; hour: number; minute: number }> = [];
  const push = (action: ScheduledAction, text: string) => {
    const [hour, minute] = text.split(':').map(Number) as [number, number];
    times.push({ action, hour, minute });
  };
  push('stop', schedule.stop_at);
  if (schedule.start_at !== undefined) push('start', schedule.start_at);
  return { days, zone: schedule.timezone, times };
}

const WALL_FORMAT = "yyyy-MM-dd'T'HH:mm";

/** The instant a local wall-clock time on a local date happens, under the DST rules in the header. */
function instantOf(date: DateTime, hour: number, minute: number, zone: string): DateTime {
  const wanted = DateTime.fromObject({ year: date.year, month: date.month, day: date.day, hour, minute }, { zone });
  const wantedWall = `${date.toFormat('yyyy-MM-dd')}T${String(hour).padStart(2, '0')}:${String(minute).padStart(2, '0')}`;
  if (wanted.toFormat(WALL_FORMAT) === wantedWall) {
    // Occurs once or twice; the earliest is the one that counts.
    return wanted.getPossibleOffsets().reduce((earliest, candidate) => (candidate.toMillis() < earliest.toMillis() ? candidate : earliest));
  }
  // In a gap: luxon moved it past the gap. Search back for the first instant whose wall clock is at or after
  // the wanted time, which is the instant the gap ends. Offsets change on whole minutes.
  const minuteMs = 60_000;
  let high = Math.floor(wanted.toMillis() / minuteMs);
  let low = high - 26 * 60;
  const reached = (minutes: number) => DateTime.fromMillis(minutes * minuteMs, { zone }).toFormat(WALL_FORMAT) >= wantedWall;
  while (high - low > 1) {
    const middle = Math.floor((low + high) / 2);
    if (reached(middle)) high = middle;
    else low = middle;
  }
  return DateTime.fromMillis(high * minuteMs, { zone });
}

/** Every occurrence on the listed local dates from `firstOffset` to `lastOffset` days around `reference`. */
function occurrences(schedule: Schedule, reference: Date, firstOffset: number, lastOffset: number): ScheduledEvent[] {
  const { days, zone, times } = compile(schedule);
  const today = DateTime.fromJSDate(reference, { zone }).startOf('day');
  const events: ScheduledEvent[] = [];
  for (let offset = firstOffset; offset <= lastOffset; offset += 1) {
    const date = today.plus({ days: offset });
    if (!days.has(date.weekday)) continue;
    for (const time of times) events.push({ action: time.action, at: instantOf(date, time.hour, time.minute, zone).toJSDate() });
  }
  return events;
}

/**
 * The most recent stop or start at or before `now`, looking back eight days; undefined when there is none.
 * Throws a RangeError for a schedule scheduleProblems refuses.
 */
export function latestScheduledEvent(schedule: Schedule, now: Date): ScheduledEvent | undefined {
  let latest: ScheduledEvent | undefined;
  for (const event of occurrences(schedule, now, -SEARCH_DAYS, 1)) {
    if (event.at.getTime() <= now.getTime() && (!latest || event.at.getTime() > latest.at.getTime())) latest = event;
  }
  return latest;
}

/**
 * The first stop or start strictly after `after`, looking ahead eight days; undefined when there is none.
 * Throws a RangeError for a schedule scheduleProblems refuses.
 */
export function nextScheduledEvent(schedule: Schedule, after: Date): ScheduledEvent | undefined {
  let next: ScheduledEvent | undefined;
  for (const event of occurrences(schedule, after, -1, SEARCH_DAYS)) {
    if (event.at.getTime() > after.getTime() && (!next || event.at.getTime() < next.at.getTime())) next = event;
  }
  return next;
}

/**
 * When a new instance expires: an explicit `expires_at` wins, then `ttl_hours` from now, then the configured
 * default when it is positive; otherwise it never expires (null). An `expires_at` that is not an ISO 8601
 * date-time with a zone yields an invalid Date, which expiryProblems reports.
 */
export function expiryFrom(
  input: { expires_at?: string | undefined; ttl_hours?: number | undefined },
  defaults: { defaultTtlHours: number },
  now: Date,
): Date | null {
  if (input.expires_at !== undefined) {
    // Without a zone the instant would depend on the server's zone; refuse rather than guess.
    if (!/T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)$/i.test(input.expires_at.trim())) return new Date(Number.NaN);
    const parsed = DateTime.fromISO(input.expires_at.trim(), { setZone: true });
    return parsed.isValid ? parsed.toJSDate() : new Date(Number.NaN);
  }
  if (input.ttl_hours !== undefined) {
    if (!Number.isFinite(input.ttl_hours)) return new Date(Number.NaN);
    return DateTime.fromJSDate(now).plus({ hours: input.ttl_hours }).toJSDate();
  }
  if (defaults.defaultTtlHours > 0) return DateTime.fromJSDate(now).plus({ hours: defaults.defaultTtlHours }).toJSDate();
  return null;
}

export function expiryProblems(expiresAt: Date, now: Date, maxTtlHours: number): FieldProblem[] {
  if (Number.isNaN(expiresAt.getTime())) {
    return [{ field: 'expires_at', message: 'must be an ISO 8601 date-time with a zone, e.g. 2026-11-02T18:00:00Z' }];
  }
  if (expiresAt.getTime() <= now.getTime()) {
    return [{ field: 'expires_at', message: `must be in the future (it is ${expiresAt.toISOString()}, now is ${now.toISOString()})` }];
  }
  if (maxTtlHours > 0) {
    const latest = DateTime.fromJSDate(now).plus({ hours: maxTtlHours }).toJSDate();
    if (expiresAt.getTime() > latest.getTime()) {
      return [{
        field: 'expires_at',
        message: `must be at most ${maxTtlHours} hours from now (no later than ${latest.toISOString()}); it is ${expiresAt.toISOString()}`,
      }];
    }
  }
  return [];
}
