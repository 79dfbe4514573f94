/** Off-hours schedules and expiry times: pure rules, no AWS and no HTTP. */
import assert from 'node:assert/strict';
import {
  expiryFrom,
  expiryProblems,
  latestScheduledEvent,
  nextScheduledEvent,
  parseSchedule,
  scheduleProblems,
  type Schedule,
  type ScheduledEvent,
} from '../../app/domain/schedule.js';

const at = (iso: string): Date => new Date(iso);
const event = (found: ScheduledEvent | undefined): { action: string; at: string } | undefined =>
  found && { action: found.action, at: found.at.toISOString() };
const berlinWeekdays: Schedule = { stop_at: '19:00', start_at: '08:00', days: 'mon-fri', timezone: 'Europe/Berlin' };

describe('schedule validation', function () {
  it('when a schedule is complete and well formed, then there are no problems', () => {
    assert.deepEqual(scheduleProblems(berlinWeekdays), []);
  });

  it('when a schedule has no start_at, then it is valid (it only stops)', () => {
    assert.deepEqual(scheduleProblems({ stop_at: '22:30', days: 'daily', timezone: 'UTC' }), []);
  });

  it('when the time zone is misspelt, then schedule.timezone says so and names an IANA example', () => {
    const problems = scheduleProblems({ ...berlinWeekdays, timezone: 'Europe/Berlinn' });
    assert.equal(problems.length, 1);
    assert.equal(problems[0]?.field, 'schedule.timezone');
    assert.match(problems[0]!.message, /unknown time zone "Europe\/Berlinn"; use an IANA name such as Europe\/Berlin/);
  });

  for (const timezone of ['+01:00', 'CEST', '', 'Mars/Olympus_Mons']) {
    it(`when the time zone is ${JSON.stringify(timezone)}, then it is refused`, () => {
      assert.deepEqual(scheduleProblems({ ...berlinWeekdays, timezone }).map((p) => p.field), ['schedule.timezone']);
    });
  }

  for (const stopAt of ['7pm', '24:00', '19:60', '9:00', '19:00:00', ' 19:00']) {
    it(`when stop_at is ${JSON.stringify(stopAt)}, then schedule.stop_at asks for HH:MM in 24-hour time`, () => {
      const problems = scheduleProblems({ ...berlinWeekdays, stop_at: stopAt });
      assert.deepEqual(problems.map((p) => p.field), ['schedule.stop_at']);
      assert.match(problems[0]!.message, /HH:MM/);
    });
  }

  it('when start_at is not a time, then schedule.start_at is named', () => {
    assert.deepEqual(scheduleProblems({ ...berlinWeekdays, start_at: '8' }).map((p) => p.field), ['schedule.start_at']);
  });

  it('when start_at equals stop_at, then it is refused with a hint to leave start_at out', () => {
    const problems = scheduleProblems({ ...berlinWeekdays, start_at: '19:00' });
    assert.deepEqual(problems.map((p) => p.field), ['schedule.start_at']);
    assert.match(problems[0]!.message, /must differ from stop_at.*leave start_at out/);
  });

  for (const days of ['daily', 'DAILY', 'mon-fri', 'Fri-Mon', 'mon,wed,fri', 'mon-wed,sat', ' mon , fri ', 'sun', 'sat-sat']) {
    it(`when days is ${JSON.stringify(days)}, then it is accepted`, () => {
      assert.deepEqual(scheduleProblems({ ...berlinWeekdays, days }), []);
    });
  }

  for (const [days, hint] of [
    ['funday', /unknown day "funday"/],
    ['monday', /unknown day "monday"/],
    ['mon-', /unknown day ""/],
    ['mon-tue-wed', /malformed range "mon-tue-wed"/],
    ['', /is empty/],
    ['mon,,fri', /empty entry/],
    ['weekdays', /unknown day "weekdays"/],
  ] as const) {
    it(`when days is ${JSON.stringify(days)}, then schedule.days explains what is wrong`, () => {
      const problems = scheduleProblems({ ...berlinWeekdays, days });
      assert.deepEqual(problems.map((p) => p.field), ['schedule.days']);
      assert.match(problems[0]!.message, hint);
      assert.match(problems[0]!.message, /"mon-fri"/);
    });
  }

  it('when several fields are wrong, then each is reported', () => {
    const problems = scheduleProblems({ stop_at: '25:00', start_at: 'x', days: 'someday', timezone: 'Nowhere/City' });
    assert.deepEqual(problems.map((p) => p.field).sort(), ['schedule.days', 'schedule.start_at', 'schedule.stop_at', 'schedule.timezone']);
  });

  it('when a schedule is invalid, then asking for its events throws a RangeError instead of guessing', () => {
    assert.throws(() => nextScheduledEvent({ ...berlinWeekdays, days: 'someday' }, at('2026-11-02T00:00:00Z')), RangeError);
    assert.throws(() => latestScheduledEvent({ ...berlinWeekdays, timezone: 'Nowhere/City' }, at('2026-11-02T00:00:00Z')), RangeError);
  });
});

describe('parseSchedule (configuration text)', function () {
  it('when the text is a JSON schedule, then the same schedule comes back', () => {
    assert.deepEqual(parseSchedule(JSON.stringify(berlinWeekdays)), berlinWeekdays);
  });

  it('when start_at is null or absent, then the schedule only stops', () => {
    const parsed = parseSchedule('{"stop_at":"19:00","start_at":null,"days":"daily","timezone":"UTC"}');
    assert.deepEqual(parsed, { stop_at: '19:00', days: 'daily', timezone: 'UTC' });
    assert.equal('start_at' in parsed, false);
  });

  const failures: Array<{ why: string; text: string; message: RegExp }> = [
    { why: 'the text is not JSON', text: 'stop at 19:00', message: /not valid JSON.*expected e\.g\. \{"stop_at"/ },
    { why: 'the JSON is an array', text: '["19:00"]', message: /must be a JSON object/ },
    { why: 'the JSON is a string', text: '"19:00"', message: /must be a JSON object/ },
    { why: 'a field name is misspelt', text: '{"stop_at":"19:00","start":"08:00","days":"daily","timezone":"UTC"}', message: /unknown field\(s\) "start"/ },
    { why: 'the time zone is missing', text: '{"stop_at":"19:00","days":"daily"}', message: /missing timezone/ },
    { why: 'the time zone is unknown', text: '{"stop_at":"19:00","days":"daily","timezone":"Europe/Berlinn"}', message: /schedule\.timezone unknown time zone "Europe\/Berlinn"/ },
    { why: 'days are malformed', text: '{"stop_at":"19:00","days":"mon-","timezone":"UTC"}', message: /schedule\.days/ },
    { why: 'stop_at is not a string', text: '{"stop_at":1900,"days":"daily","timezone":"UTC"}', message: /schedule\.stop_at must be a time of day/ },
  ];
  for (const failure of failures) {
    it(`when ${failure.why}, then it throws an Error naming what is wrong`, () => {
      assert.throws(() => parseSchedule(failure.text), (error: unknown) => {
        assert.ok(error instanceof Error);
        assert.match(error.message, failure.message);
        return true;
      });
    });
  }
});

describe('latest and next scheduled events', function () {
  it('when it is Saturday, then the latest event is Friday\'s stop and the next is Monday\'s start', () => {
    const saturday = at('2026-11-07T12:00:00Z');
    assert.deepEqual(event(latestScheduledEvent(berlinWeekdays, saturday)), { action: 'stop', at: '2026-11-06T18:00:00.000Z' });
    assert.deepEqual(event(nextScheduledEvent(berlinWeekdays, saturday)), { action: 'start', at: '2026-11-09T07:00:00.000Z' });
  });

  it('when it is a weekday noon, then the latest is that morning\'s start and the next that evening\'s stop', () => {
    const wednesday = at('2026-11-04T11:00:00Z');
    assert.deepEqual(event(latestScheduledEvent(berlinWeekdays, wednesday)), { action: 'start', at: '2026-11-04T07:00:00.000Z' });
    assert.deepEqual(event(nextScheduledEvent(berlinWeekdays, wednesday)), { action: 'stop', at: '2026-11-04T18:00:00.000Z' });
  });

  it('when now is exactly an occurrence, then it is the latest (at or before) but not the next (strictly after)', () => {
    const mondayStart = at('2026-11-09T07:00:00Z');
    assert.deepEqual(event(latestScheduledEvent(berlinWeekdays, mondayStart)), { action: 'start', at: '2026-11-09T07:00:00.000Z' });
    assert.deepEqual(event(nextScheduledEvent(berlinWeekdays, mondayStart)), { action: 'stop', at: '2026-11-09T18:00:00.000Z' });
  });

  it('when days is a wrapping range fri-mon, then Tuesday to Thursday have no events', () => {
    const schedule: Schedule = { stop_at: '19:00', days: 'fri-mon', timezone: 'UTC' };
    assert.deepEqual(event(nextScheduledEvent(schedule, at('2026-11-02T20:00:00Z'))), { action: 'stop', at: '2026-11-06T19:00:00.000Z' });
    assert.deepEqual(event(latestScheduledEvent(schedule, at('2026-11-05T12:00:00Z'))), { action: 'stop', at: '2026-11-02T19:00:00.000Z' });
    assert.deepEqual(event(nextScheduledEvent(schedule, at('2026-11-07T20:00:00Z'))), { action: 'stop', at: '2026-11-08T19:00:00.000Z' });
  });

  it('when days is a list mixed with a range, then only those days have events', () => {
    const schedule: Schedule = { stop_at: '19:00', days: 'mon-tue,thu,SAT', timezone: 'UTC' };
    const seen: string[] = [];
    let cursor = at('2026-11-01T20:00:00Z'); // Sunday evening
    for (let i = 0; i < 5; i += 1) {
      const next = nextScheduledEvent(schedule, cursor)!;
      seen.push(next.at.toISOString().slice(0, 10));
      cursor = next.at;
    }
    assert.deepEqual(seen, ['2026-11-02', '2026-11-03', '2026-11-05', '2026-11-07', '2026-11-09']);
  });

  it('when a schedule only stops, then every event is a stop and the weekend is skipped', () => {
    const schedule: Schedule = { stop_at: '19:00', days: 'mon-fri', timezone: 'Europe/Berlin' };
    assert.deepEqual(event(nextScheduledEvent(schedule, at('2026-11-06T18:00:00Z'))), { action: 'stop', at: '2026-11-09T18:00:00.000Z' });
    assert.deepEqual(event(latestScheduledEvent(schedule, at('2026-11-09T08:00:00Z'))), { action: 'stop', at: '2026-11-06T18:00:00.000Z' });
  });

  it('when the only listed day is a week away, then the eight-day look-back and look-ahead still find it', () => {
    const schedule: Schedule = { stop_at: '23:59', days: 'mon', timezone: 'Pacific/Kiritimati' };
    const next = nextScheduledEvent(schedule, at('2026-11-02T10:00:00Z'))!;
    const latest = latestScheduledEvent(schedule, at('2026-11-02T10:00:00Z'))!;
    assert.equal(next.at.getTime() - latest.at.getTime(), 7 * 24 * 3_600_000);
  });

  it('when the stop time is before the start time on the same day, then the order follows the clock', () => {
    const nightly: Schedule = { stop_at: '01:00', start_at: '06:00', days: 'daily', timezone: 'UTC' };
    assert.deepEqual(event(latestScheduledEvent(nightly, at('2026-11-04T03:00:00Z'))), { action: 'stop', at: '2026-11-04T01:00:00.000Z' });
    assert.deepEqual(event(nextScheduledEvent(nightly, at('2026-11-04T03:00:00Z'))), { action: 'start', at: '2026-11-04T06:00:00.000Z' });
  });
});

describe('scheduled events across daylight-saving changes', function () {
  it('when Berlin springs forward on 2026-03-29, then 19:00 is 18:00Z on the Friday before and 17:00Z on the Monday after', () => {
    assert.deepEqual(event(latestScheduledEvent(berlinWeekdays, at('2026-03-28T12:00:00Z'))), { action: 'stop', at: '2026-03-27T18:00:00.000Z' });
    assert.deepEqual(event(nextScheduledEvent(berlinWeekdays, at('2026-03-28T12:00:00Z'))), { action: 'start', at: '2026-03-30T06:00:00.000Z' });
    assert.deepEqual(event(nextScheduledEvent(berlinWeekdays, at('2026-03-30T06:00:00Z'))), { action: 'stop', at: '2026-03-30T17:00:00.000Z' });
  });

  it('when Berlin falls back on 2026-10-25, then 19:00 is 17:00Z on the Friday before and 18:00Z on the Monday after', () => {
    assert.deepEqual(event(latestScheduledEvent(berlinWeekdays, at('2026-10-24T12:00:00Z'))), { action: 'stop', at: '2026-10-23T17:00:00.000Z' });
    assert.deepEqual(event(nextScheduledEvent(berlinWeekdays, at('2026-10-26T07:00:00Z'))), { action: 'stop', at: '2026-10-26T18:00:00.000Z' });
  });

  it('when New York springs forward on 2026-03-08, then 19:00 is 00:00Z before and 23:00Z after', () => {
    const schedule: Schedule = { stop_at: '19:00', days: 'mon-fri', timezone: 'America/New_York' };
    assert.deepEqual(event(nextScheduledEvent(schedule, at('2026-03-06T12:00:00Z'))), { action: 'stop', at: '2026-03-07T00:00:00.000Z' });
    assert.deepEqual(event(nextScheduledEvent(schedule, at('2026-03-07T00:00:00Z'))), { action: 'stop', at: '2026-03-09T23:00:00.000Z' });
  });

  it('when New York falls back on 2026-11-01, then 19:00 is 23:00Z before and 00:00Z after', () => {
    const schedule: Schedule = { stop_at: '19:00', days: 'mon-fri', timezone: 'America/New_York' };
    assert.deepEqual(event(nextScheduledEvent(schedule, at('2026-10-30T12:00:00Z'))), { action: 'stop', at: '2026-10-30T23:00:00.000Z' });
    assert.deepEqual(event(nextScheduledEvent(schedule, at('2026-10-30T23:00:00Z'))), { action: 'stop', at: '2026-11-03T00:00:00.000Z' });
  });

  it('when 02:30 does not exist in Berlin on 2026-03-29, then it happens at 03:00 local (01:00Z), the first instant after the gap', () => {
    const schedule: Schedule = { stop_at: '02:30', days: 'daily', timezone: 'Europe/Berlin' };
    assert.deepEqual(event(nextScheduledEvent(schedule, at('2026-03-28T12:00:00Z'))), { action: 'stop', at: '2026-03-29T01:00:00.000Z' });
    assert.deepEqual(event(nextScheduledEvent(schedule, at('2026-03-29T01:00:00Z'))), { action: 'stop', at: '2026-03-30T00:30:00.000Z' });
    assert.deepEqual(event(latestScheduledEvent(schedule, at('2026-03-29T01:10:00Z'))), { action: 'stop', at: '2026-03-29T01:00:00.000Z' });
  });

  it('when a stop falls in the gap and a start just after it, then the stop still comes first', () => {
    const schedule: Schedule = { stop_at: '02:30', start_at: '03:15', days: 'daily', timezone: 'Europe/Berlin' };
    const stop = nextScheduledEvent(schedule, at('2026-03-28T12:00:00Z'));
    const start = nextScheduledEvent(schedule, stop!.at);
    assert.deepEqual([event(stop), event(start)], [
      { action: 'stop', at: '2026-03-29T01:00:00.000Z' },
      { action: 'start', at: '2026-03-29T01:15:00.000Z' },
    ]);
  });

  it('when 02:30 does not exist in New York on 2026-03-08, then it happens at 03:00 EDT (07:00Z)', () => {
    const schedule: Schedule = { stop_at: '02:30', days: 'sun', timezone: 'America/New_York' };
    assert.deepEqual(event(nextScheduledEvent(schedule, at('2026-03-07T12:00:00Z'))), { action: 'stop', at: '2026-03-08T07:00:00.000Z' });
  });

  it('when 02:30 occurs twice in Berlin on 2026-10-25, then it happens once, at the first occurrence (00:30Z)', () => {
    const schedule: Schedule = { stop_at: '02:30', days: 'daily', timezone: 'Europe/Berlin' };
    const first = nextScheduledEvent(schedule, at('2026-10-24T12:00:00Z'));
    assert.deepEqual(event(first), { action: 'stop', at: '2026-10-25T00:30:00.000Z' });
    assert.deepEqual(event(nextScheduledEvent(schedule, first!.at)), { action: 'stop', at: '2026-10-26T01:30:00.000Z' });
    assert.deepEqual(event(latestScheduledEvent(schedule, at('2026-10-25T01:45:00Z'))), { action: 'stop', at: '2026-10-25T00:30:00.000Z' });
  });

  it('when 01:30 occurs twice in New York on 2026-11-01, then it happens once, at the first occurrence (05:30Z, still EDT)', () => {
    const schedule: Schedule = { stop_at: '01:30', days: 'daily', timezone: 'America/New_York' };
    const first = nextScheduledEvent(schedule, at('2026-10-31T12:00:00Z'));
    assert.deepEqual(event(first), { action: 'stop', at: '2026-11-01T05:30:00.000Z' });
    assert.deepEqual(event(nextScheduledEvent(schedule, first!.at)), { action: 'stop', at: '2026-11-02T06:30:00.000Z' });
  });

  it('when the local date differs from the UTC date, then the days filter follows the local date', () => {
    // Monday 00:30 in Tokyo is Sunday 15:30Z.
    const schedule: Schedule = { stop_at: '00:30', days: 'mon', timezone: 'Asia/Tokyo' };
    const next = nextScheduledEvent(schedule, at('2026-11-01T00:00:00Z'))!;
    assert.equal(next.at.toISOString(), '2026-11-01T15:30:00.000Z');
  });
});

describe('expiry times', function () {
  const now = at('2026-11-02T10:00:00Z');

  it('when expires_at is given, then it wins over ttl_hours and the default', () => {
    const expires = expiryFrom({ expires_at: '2026-11-02T18:00:00+01:00', ttl_hours: 1 }, { defaultTtlHours: 8 }, now);
    assert.equal(expires?.toISOString(), '2026-11-02T17:00:00.000Z');
  });

  it('when only ttl_hours is given, then it counts from now', () => {
    assert.equal(expiryFrom({ ttl_hours: 2.5 }, { defaultTtlHours: 8 }, now)?.toISOString(), '2026-11-02T12:30:00.000Z');
  });

  it('when neither is given and the default ttl is positive, then the default counts from now', () => {
    assert.equal(expiryFrom({}, { defaultTtlHours: 8 }, now)?.toISOString(), '2026-11-02T18:00:00.000Z');
  });

  it('when neither is given and the default ttl is 0, then the instance never expires', () => {
    assert.equal(expiryFrom({}, { defaultTtlHours: 0 }, now), null);
  });

  for (const text of ['2026-11-02T18:00:00', '2026-11-02', 'tomorrow', '2026-13-02T18:00:00Z']) {
    it(`when expires_at is ${JSON.stringify(text)}, then expiryProblems asks for an ISO 8601 date-time with a zone`, () => {
      const expires = expiryFrom({ expires_at: text }, { defaultTtlHours: 0 }, now)!;
      assert.deepEqual(expiryProblems(expires, now, 0), [
        { field: 'expires_at', message: 'must be an ISO 8601 date-time with a zone, e.g. 2026-11-02T18:00:00Z' },
      ]);
    });
  }

  it('when the expiry is in the past or exactly now, then it must be in the future', () => {
    for (const expires of [at('2026-11-02T09:00:00Z'), now]) {
      const problems = expiryProblems(expires, now, 0);
      assert.deepEqual(problems.map((p) => p.field), ['expires_at']);
      assert.match(problems[0]!.message, /must be in the future/);
    }
  });

  it('when ttl_hours is zero or negative, then the resulting expiry is refused as not in the future', () => {
    assert.match(expiryProblems(expiryFrom({ ttl_hours: -1 }, { defaultTtlHours: 0 }, now)!, now, 0)[0]!.message, /future/);
  });

  it('when the expiry is beyond the maximum ttl, then the message names the limit and the latest allowed time', () => {
    const problems = expiryProblems(at('2026-11-03T10:00:01Z'), now, 24);
    assert.deepEqual(problems.map((p) => p.field), ['expires_at']);
    assert.match(problems[0]!.message, /at most 24 hours from now \(no later than 2026-11-03T10:00:00\.000Z\)/);
  });

  it('when the expiry is exactly the maximum ttl away, or the maximum is 0 (unlimited), then it is accepted', () => {
    assert.deepEqual(expiryProblems(at('2026-11-03T10:00:00Z'), now, 24), []);
    assert.deepEqual(expiryProblems(at('2027-11-03T10:00:00Z'), now, 0), []);
  });
});
