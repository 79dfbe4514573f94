/** The free-tier meter's arithmetic, on hand-computed histories; pure, no AWS and no HTTP. */
import assert from 'node:assert/strict';
import { computeUsage, monthBounds, projectedWith, type Allowances, type StateChange } from '../../app/domain/usage.js';

const allowances: Allowances = { instanceHours: 750, ebsGbMonths: 30, publicIpv4Hours: 750, freeTierTypes: ['t2.micro', 't3.micro'] };
// November 2026 has 30 days: 720 hours; October has 31: 744 hours.

function change(instanceId: string, at: string, state: string, extra: Partial<StateChange> = {}): StateChange {
  return {
    instance_id: instanceId,
    name: `name-of-${instanceId}`,
    instance_type: 't3.micro',
    storage_gb: 8,
    state,
    public_ip: false,
    at,
    estimated: false,
    ...extra,
  };
}
const at = (iso: string): Date => new Date(iso);

describe('monthBounds', function () {
  it('when the month is YYYY-MM, then it spans that UTC calendar month', () => {
    assert.deepEqual(monthBounds('2026-11'), { start: at('2026-11-01T00:00:00Z'), end: at('2026-12-01T00:00:00Z') });
    assert.deepEqual(monthBounds('2026-12'), { start: at('2026-12-01T00:00:00Z'), end: at('2027-01-01T00:00:00Z') });
    assert.deepEqual(monthBounds('2028-02').end, at('2028-03-01T00:00:00Z'));
  });

  for (const month of ['2026-13', '2026-00', '2026-1', '26-11', '2026-11-01', '', 'november', ' 2026-11']) {
    it(`when the month is ${JSON.stringify(month)}, then a RangeError asks for YYYY-MM`, () => {
      assert.throws(() => monthBounds(month), { name: 'RangeError', message: /month must be YYYY-MM/ });
      assert.throws(() => computeUsage([], month, at('2026-11-10T00:00:00Z'), allowances), RangeError);
    });
  }
});

describe('computeUsage', function () {
  it('when one instance ran 10 hours and then stopped, then it used 10 instance hours and its volume counts until now', () => {
    const changes = [
      change('i-1', '2026-11-02T00:00:00Z', 'running', { public_ip: true }),
      change('i-1', '2026-11-02T10:00:00Z', 'stopped', { public_ip: false }),
    ];
    const report = computeUsage(changes, '2026-11', at('2026-11-03T00:00:00Z'), allowances);
    assert.deepEqual(
      { month: report.month, from: report.from, to: report.to, as_of: report.as_of, complete: report.complete },
      { month: '2026-11', from: '2026-11-01T00:00:00.000Z', to: '2026-12-01T00:00:00.000Z', as_of: '2026-11-03T00:00:00.000Z', complete: false },
    );
    assert.deepEqual(report.instance_hours, {
      used: 10,
      projected: 10,
      allowance: 750,
      remaining: 740,
      projected_over: false,
      estimated: false,
      by_type: [{ instance_type: 't3.micro', free_tier: true, hours: 10 }],
      free_tier_types: ['t2.micro', 't3.micro'],
    });
    // 8 GB × 24 h / 720 h = 0.2667; the stopped volume keeps counting to month end: 8 × (24 + 672) / 720 = 7.7333.
    assert.deepEqual(report.ebs_gb_months, { used: 0.267, projected: 7.733, allowance: 30, remaining: 29.733, projected_over: false, estimated: false });
    assert.deepEqual(report.public_ipv4_hours, { used: 10, projected: 10, allowance: 750, remaining: 740, projected_over: false, estimated: false });
    assert.deepEqual(report.top_instances, [
      { instance_id: 'i-1', name: 'name-of-i-1', instance_type: 't3.micro', instance_hours: 10, ebs_gb_months: 0.267, public_ipv4_hours: 10, estimated: false },
    ]);
    assert.deepEqual(report.estimated_instances, []);
  });

  it('when an instance was stopped and started again and is still running, then both running spans count and the rest of the month is projected', () => {
    const changes = [
      change('i-1', '2026-11-02T00:00:00Z', 'pending'),
      change('i-1', '2026-11-02T00:01:00Z', 'running'),
      change('i-1', '2026-11-02T04:01:00Z', 'stopping'),
      change('i-1', '2026-11-02T04:03:00Z', 'stopped'),
      change('i-1', '2026-11-02T10:00:00Z', 'running'),
    ];
    const report = computeUsage(changes, '2026-11', at('2026-11-02T12:00:00Z'), allowances);
    // Running 4 h + 2 h; 684 h remain (28.5 days), so 690 h projected.
    assert.equal(report.instance_hours.used, 6);
    assert.equal(report.instance_hours.projected, 690);
    assert.equal(report.instance_hours.projected_over, false);
    assert.equal(report.public_ipv4_hours.used, 0);
  });

  it('when an instance is terminated mid-month, then its hours and volume stop there and nothing is projected for it', () => {
    const changes = [
      change('i-1', '2026-11-05T00:00:00Z', 'running', { storage_gb: 10 }),
      change('i-1', '2026-11-05T20:00:00Z', 'shutting-down', { storage_gb: 10 }),
      change('i-1', '2026-11-05T20:06:00Z', 'terminated', { storage_gb: 10 }),
    ];
    const report = computeUsage(changes, '2026-11', at('2026-11-10T00:00:00Z'), allowances);
    assert.equal(report.instance_hours.used, 20);
    assert.equal(report.instance_hours.projected, 20);
    // 10 GB × 20.1 h / 720 h = 0.27917
    assert.equal(report.ebs_gb_months.used, 0.279);
    assert.equal(report.ebs_gb_months.projected, 0.279);
  });

  it('when an instance started last month, then only the hours since the first of the month count', () => {
    const changes = [change('i-1', '2026-10-20T00:00:00Z', 'running', { public_ip: true })];
    const report = computeUsage(changes, '2026-11', at('2026-11-01T05:00:00Z'), allowances);
    assert.equal(report.instance_hours.used, 5);
    assert.equal(report.public_ipv4_hours.used, 5);
    assert.equal(report.ebs_gb_months.used, 0.056); // 8 × 5 / 720
    assert.equal(report.instance_hours.projected, 720);
    assert.equal(report.ebs_gb_months.projected, 8);
  });

  it('when the public IP is released while running, then public IPv4 hours stop but instance hours go on', () => {
    const changes = [
      change('i-1', '2026-11-02T00:00:00Z', 'running', { public_ip: true }),
      change('i-1', '2026-11-02T03:00:00Z', 'running', { public_ip: false }),
      change('i-1', '2026-11-02T05:00:00Z', 'stopped'),
      change('i-1', '2026-11-03T00:00:00Z', 'running', { public_ip: true }),
    ];
    const report = computeUsage(changes, '2026-11', at('2026-11-03T01:30:00Z'), allowances);
    assert.equal(report.instance_hours.used, 6.5);
    assert.equal(report.public_ipv4_hours.used, 4.5);
    // Running with an address now: 670.5 h remain.
    assert.equal(report.public_ipv4_hours.projected, 675);
  });

  it('when an instance type is not free tier, then it is listed by type but not counted against the allowance', () => {
    const changes = [
      change('i-big', '2026-11-02T00:00:00Z', 'running', { instance_type: 'm5.large', public_ip: true }),
      change('i-big', '2026-11-02T04:00:00Z', 'stopped', { instance_type: 'm5.large' }),
      change('i-small', '2026-11-02T00:00:00Z', 'running'),
      change('i-small', '2026-11-02T02:00:00Z', 'stopped'),
    ];
    const report = computeUsage(changes, '2026-11', at('2026-11-03T00:00:00Z'), allowances);
    assert.equal(report.instance_hours.used, 2);
    assert.deepEqual(report.instance_hours.by_type, [
      { instance_type: 'm5.large', free_tier: false, hours: 4 },
      { instance_type: 't3.micro', free_tier: true, hours: 2 },
    ]);
    assert.equal(report.public_ipv4_hours.used, 4);
    assert.deepEqual(report.top_instances.map((i) => [i.instance_id, i.instance_hours]), [['i-big', 4], ['i-small', 2]]);
  });

  it('when a non-free-tier instance is running now, then it adds nothing to the projected instance hours', () => {
    const changes = [change('i-big', '2026-11-02T00:00:00Z', 'running', { instance_type: 'm5.large' })];
    const report = computeUsage(changes, '2026-11', at('2026-11-03T00:00:00Z'), allowances);
    assert.equal(report.instance_hours.projected, 0);
    assert.equal(report.top_instances[0]?.instance_hours, 24);
  });

  it('when the type changed while stopped, then each running span counts under the type it ran as', () => {
    const changes = [
      change('i-1', '2026-11-02T00:00:00Z', 'running', { instance_type: 't3.micro' }),
      change('i-1', '2026-11-02T01:00:00Z', 'stopped', { instance_type: 't3.micro' }),
      change('i-1', '2026-11-02T02:00:00Z', 'running', { instance_type: 't3.large', name: 'renamed' }),
      change('i-1', '2026-11-02T05:00:00Z', 'stopped', { instance_type: 't3.large', name: 'renamed' }),
    ];
    const report = computeUsage(changes, '2026-11', at('2026-11-03T00:00:00Z'), allowances);
    assert.deepEqual(report.instance_hours.by_type.map((t) => [t.instance_type, t.hours]), [['t3.large', 3], ['t3.micro', 1]]);
    assert.equal(report.instance_hours.used, 1);
    assert.deepEqual([report.top_instances[0]?.name, report.top_instances[0]?.instance_type], ['renamed', 't3.large']);
  });

  it('when a contribution comes from a reconstructed change, then the figures it fed are marked estimated', () => {
    const changes = [
      change('i-old', '2026-10-15T00:00:00Z', 'running', { estimated: true }),
      change('i-old', '2026-11-01T02:00:00Z', 'stopped'),
      change('i-new', '2026-11-02T00:00:00Z', 'running', { public_ip: true }),
      change('i-new', '2026-11-02T01:00:00Z', 'stopped'),
    ];
    const report = computeUsage(changes, '2026-11', at('2026-11-03T00:00:00Z'), allowances);
    assert.equal(report.instance_hours.estimated, true);
    assert.equal(report.ebs_gb_months.estimated, true);
    assert.equal(report.public_ipv4_hours.estimated, false); // i-old had no public IP; i-new is recorded
    assert.deepEqual(report.estimated_instances, ['i-old']);
    assert.deepEqual(report.top_instances.map((i) => [i.instance_id, i.estimated]), [['i-old', true], ['i-new', false]]);
  });

  it('when a reconstructed change was superseded before the month began, then nothing is estimated', () => {
    const changes = [
      change('i-1', '2026-10-01T00:00:00Z', 'running', { estimated: true }),
      change('i-1', '2026-10-20T00:00:00Z', 'stopped'),
      change('i-1', '2026-11-02T00:00:00Z', 'running'),
    ];
    const report = computeUsage(changes, '2026-11', at('2026-11-02T03:00:00Z'), allowances);
    assert.equal(report.instance_hours.used, 3);
    assert.deepEqual([report.instance_hours.estimated, report.ebs_gb_months.estimated, report.public_ipv4_hours.estimated], [false, false, false]);
    assert.deepEqual(report.estimated_instances, []);
  });

  it('when two free-tier instances run all month, then the projection goes over the allowance before the use does', () => {
    const changes = [change('i-1', '2026-10-31T00:00:00Z', 'running'), change('i-2', '2026-10-31T00:00:00Z', 'running')];
    const report = computeUsage(changes, '2026-11', at('2026-11-11T00:00:00Z'), allowances);
    assert.equal(report.instance_hours.used, 480);
    assert.equal(report.instance_hours.remaining, 270);
    assert.equal(report.instance_hours.projected, 1440);
    assert.equal(report.instance_hours.projected_over, true);
  });

  it('when a past month is asked for, then it is complete, measured to its end, and nothing more is projected', () => {
    const changes = [
      change('i-1', '2026-09-30T00:00:00Z', 'running', { public_ip: true }),
      change('i-2', '2026-09-30T00:00:00Z', 'running'),
      change('i-2', '2026-11-05T00:00:00Z', 'terminated'),
    ];
    const report = computeUsage(changes, '2026-10', at('2026-11-15T00:00:00Z'), allowances);
    assert.equal(report.complete, true);
    assert.equal(report.to, '2026-11-01T00:00:00.000Z');
    assert.deepEqual(report.instance_hours, {
      used: 1488,
      projected: 1488,
      allowance: 750,
      remaining: 0,
      projected_over: true,
      estimated: false,
      by_type: [{ instance_type: 't3.micro', free_tier: true, hours: 1488 }],
      free_tier_types: ['t2.micro', 't3.micro'],
    });
    assert.equal(report.public_ipv4_hours.used, 744);
    assert.equal(report.public_ipv4_hours.remaining, 6);
    assert.equal(report.ebs_gb_months.used, 16);
  });

  it('when the month is after the current one, then a RangeError says it has not started', () => {
    assert.throws(() => computeUsage([], '2026-12', at('2026-11-30T23:59:59Z'), allowances), {
      name: 'RangeError',
      message: /month 2026-12 has not started yet/,
    });
  });

  it('when the month has just started, then it is reported with nothing used', () => {
    const report = computeUsage([change('i-1', '2026-10-31T00:00:00Z', 'running')], '2026-12', at('2026-12-01T00:00:00Z'), allowances);
    assert.equal(report.instance_hours.used, 0);
    assert.equal(report.instance_hours.projected, 744);
  });

  it('when more than ten instances contributed, then top_instances has the ten with most hours, ties broken by GB-months', () => {
    const changes: StateChange[] = [];
    for (let n = 1; n <= 12; n += 1) {
      changes.push(change(`i-${String(n).padStart(2, '0')}`, '2026-11-02T00:00:00Z', 'running', { storage_gb: n }));
      changes.push(change(`i-${String(n).padStart(2, '0')}`, `2026-11-02T${String(n > 6 ? 6 : n).padStart(2, '0')}:00:00Z`, 'stopped', { storage_gb: n }));
    }
    const report = computeUsage(changes, '2026-11', at('2026-11-03T00:00:00Z'), allowances);
    assert.deepEqual(
      report.top_instances.map((i) => i.instance_id),
      ['i-12', 'i-11', 'i-10', 'i-09', 'i-08', 'i-07', 'i-06', 'i-05', 'i-04', 'i-03'],
    );
  });

  it('when an instance was terminated before the month, then it appears nowhere', () => {
    const changes = [change('i-gone', '2026-10-01T00:00:00Z', 'running'), change('i-gone', '2026-10-02T00:00:00Z', 'terminated')];
    const report = computeUsage(changes, '2026-11', at('2026-11-03T00:00:00Z'), allowances);
    assert.deepEqual(report.top_instances, []);
    assert.equal(report.ebs_gb_months.projected, 0);
  });
});

describe('projectedWith', function () {
  const now = at('2026-11-16T00:00:00Z'); // 360 h to month end
  const busy = computeUsage(
    [change('i-1', '2026-10-31T00:00:00Z', 'running', { public_ip: true })],
    '2026-11',
    now,
    allowances,
  ); // instance hours and IPv4 projected 720, EBS projected 8

  it('when a new free-tier instance with a public IP would run to month end, then instance hours and IPv4 go over', () => {
    assert.deepEqual(projectedWith(busy, { instanceType: 't3.micro', storageGb: 8, publicIp: true }, now), [
      { field: 'instance_hours', projected: 1080, allowance: 750 },
      { field: 'public_ipv4_hours', projected: 1080, allowance: 750 },
    ]);
  });

  it('when the new instance has no public IP and is not free tier, then only figures it adds to are considered', () => {
    assert.deepEqual(projectedWith(busy, { instanceType: 'm5.large', storageGb: 8, publicIp: false }, now), []);
  });

  it('when the new volume would push EBS past 30 GB-months, then ebs_gb_months is returned', () => {
    // 50 GB × 360 h / 720 h = 25, on top of 8.
    assert.deepEqual(projectedWith(busy, { instanceType: 'm5.large', storageGb: 50, publicIp: false }, now), [
      { field: 'ebs_gb_months', projected: 33, allowance: 30 },
    ]);
    assert.deepEqual(projectedWith(busy, { instanceType: 'm5.large', storageGb: 40, publicIp: false }, now), []);
  });

  it('when nothing else is running, then a new free-tier instance stays under every allowance', () => {
    const empty = computeUsage([], '2026-11', now, allowances);
    assert.deepEqual(projectedWith(empty, { instanceType: 't3.micro', storageGb: 30, publicIp: true }, now), []);
  });

  it('when the report is for a past month, then a new instance adds nothing to it', () => {
    const october = computeUsage(
      [change('i-1', '2026-09-01T00:00:00Z', 'running', { public_ip: true }), change('i-2', '2026-09-01T00:00:00Z', 'running')],
      '2026-10',
      now,
      allowances,
    );
    assert.equal(october.instance_hours.projected_over, true);
    assert.deepEqual(projectedWith(october, { instanceType: 't3.micro', storageGb: 8, publicIp: true }, now), []);
  });
});
