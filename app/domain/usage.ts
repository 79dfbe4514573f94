/**
 * The free-tier meter's arithmetic: how much of a calendar month's (UTC) free tier the recorded instances
 * have used, and where the month ends if everything keeps running as it is now. Pure: callers pass the
 * recorded state changes and `now`.
 *
 * Rules:
 * - Input is every state change of every instance alive during the month, ordered by instance then time,
 *   including the changes before the month: the state holding at the month's start is the last change
 *   before it. A change holds until the instance's next change; the last one holds until now. Changes are
 *   re-sorted by time per instance, so an out-of-order feed cannot produce negative intervals.
 * - Everything is measured within [month start, min(now, month end)).
 * - Instance-hours: time in `running` (AWS bills running; pending, stopping and stopped are not instance
 *   hours), per instance type of the change that was in force. Only types in `freeTierTypes` count
 *   towards the allowance; `by_type` lists every type with `free_tier` saying which.
 * - EBS GB-months: storage_gb × hours in every state but `terminated` (the volume exists from the
 *   instance's first change until termination) / hours in the month. Every type counts. A change with
 *   unknown storage (null) contributes nothing.
 * - Public IPv4 hours: hours in `running` with `public_ip` true. AWS charges while an address is assigned;
 *   running with a public IP is the approximation.
 * - Projection "at the current running set": used so far + for each instance whose last change at or before
 *   now is `running`, its hours (and public IPv4 hours if it has an address) from now to the month's end;
 *   every volume not terminated now projects its GB the same way. Nothing is added for a past month.
 * - A figure is `estimated` when any positive contribution to it (used or projected) came from a change
 *   marked `estimated` (reconstructed for an instance that existed before history was recorded); an
 *   instance is listed in `estimated_instances` on the same terms.
 * - `remaining` is the allowance minus used, never below zero; `projected_over` is projected > allowance.
 * - Hours are rounded to 2 decimals and GB-months to 3, only when reported; sums use unrounded values.
 * - A month after the current one is refused with a RangeError (nothing has been used in it yet).
 * - `top_instances`: the ten instances with the most instance hours, then GB-months, then by id, leaving out
 *   instances that contributed nothing; name and type are those of the instance's latest change.
 * - `instance_hours.free_tier_types` echoes the allowances' free-tier types so that projectedWith can tell
 *   whether a new instance counts towards the instance-hour allowance from the report alone.
 */
import { DateTime } from 'luxon';

export interface StateChange {
  instance_id: string;
  name: string;
  instance_type: string;
  storage_gb: number | null;
  /** pending | running | stopping | stopped | shutting-down | terminated */
  state: string;
  /** had a public IPv4 address from this change on */
  public_ip: boolean;
  /** ISO 8601 UTC */
  at: string;
  /** reconstructed (the instance existed before history was recorded) */
  estimated: boolean;
}

export interface Allowances {
  instanceHours: number;
  ebsGbMonths: number;
  publicIpv4Hours: number;
  freeTierTypes: readonly string[];
}

export interface UsageFigure {
  used: number;
  projected: number;
  allowance: number;
  remaining: number;
  projected_over: boolean;
  estimated: boolean;
}

export interface InstanceTypeHours {
  instance_type: string;
  free_tier: boolean;
  hours: number;
}

export interface InstanceUsage {
  instance_id: string;
  name: string;
  instance_type: string;
  instance_hours: number;
  ebs_gb_months: number;
  public_ipv4_hours: number;
  estimated: boolean;
}

export interface UsageReport {
  month: string;
  from: string;
  to: string;
  as_of: string;
  complete: boolean;
  instance_hours: UsageFigure & { by_type: InstanceTypeHours[]; free_tier_types: string[] };
  ebs_gb_months: UsageFigure;
  public_ipv4_hours: UsageFigure;
  top_instances: InstanceUsage[];
  estimated_instances: string[];
}

export type UsageFigureName = 'instance_hours' | 'ebs_gb_months' | 'public_ipv4_hours';

const HOUR_MS = 3_600_000;
const TOP_INSTANCES = 10;

const round = (value: number, decimals: number): number => {
  const factor = 10 ** decimals;
  return Math.round((value + Number.EPSILON) * factor) / factor;
};
const hours2 = (value: number): number => round(value, 2);
const gbMonths3 = (value: number): number => round(value, 3);

/** The first instant of a UTC calendar month and of the next one. */
export function monthBounds(month: string): { start: Date; end: Date } {
  const match = typeof month === 'string' ? /^(\d{4})-(0[1-9]|1[0-2])$/.exec(month) : null;
  if (!match) throw new RangeError(`month must be YYYY-MM, e.g. 2026-11 (got ${JSON.stringify(month)})`);
  const start = DateTime.utc(Number(match[1]), Number(match[2]), 1);
  return { start: start.toJSDate(), end: start.plus({ months: 1 }).toJSDate() };
}

interface Accumulator {
  used: number;
  projected: number;
  estimated: boolean;
}

interface InstanceTotals {
  instance_id: string;
  name: string;
  instance_type: string;
  instanceHours: number;
  gbHours: number;
  ipv4Hours: number;
  estimated: boolean;
}

function timeOf(change: StateChange): number {
  const ms = Date.parse(change.at);
  if (Number.isNaN(ms)) throw new Error(`state change of ${change.instance_id} has an invalid time ${JSON.stringify(change.at)}`);
  return ms;
}

export function computeUsage(changes: readonly StateChange[], month: string, now: Date, allowances: Allowances): UsageReport {
  const { start, end } = monthBounds(month);
  const nowMs = now.getTime();
  const startMs = start.getTime();
  const endMs = end.getTime();
  if (startMs > nowMs) {
    throw new RangeError(`month ${month} has not started yet (now is ${now.toISOString()}); ask for the current month or an earlier one`);
  }
  const windowEndMs = Math.min(nowMs, endMs);
  const monthHours = (endMs - startMs) / HOUR_MS;
  const remainingHours = Math.max(0, endMs - nowMs) / HOUR_MS;
  const freeTier = new Set(allowances.freeTierTypes);

  const instanceHours: Accumulator = { used: 0, projected: 0, estimated: false };
  const gbHours: Accumulator = { used: 0, projected: 0, estimated: false };
  const ipv4Hours: Accumulator = { used: 0, projected: 0, estimated: false };
  const hoursByType = new Map<string, number>();
  const estimatedInstances = new Set<string>();
  const totals: InstanceTotals[] = [];

  const byInstance = new Map<string, Array<{ change: StateChange; ms: number }>>();
  for (const change of changes) {
    const list = byInstance.get(change.instance_id) ?? [];
    list.push({ change, ms: timeOf(change) });
    byInstance.set(change.instance_id, list);
  }

  for (const [instanceId, unsorted] of byInstance) {
    const history = [...unsorted].sort((a, b) => a.ms - b.ms);
    const latest = history[history.length - 1]!.change;
    const own: InstanceTotals = {
      instance_id: instanceId,
      name: latest.name,
      instance_type: latest.instance_type,
      instanceHours: 0,
      gbHours: 0,
      ipv4Hours: 0,
      estimated: false,
    };
    const markEstimated = (change: StateChange, figure?: Accumulator) => {
      if (!change.estimated) return;
      if (figure) figure.estimated = true;
      own.estimated = true;
      estimatedInstances.add(instanceId);
    };

    let current: StateChange | undefined;
    for (let i = 0; i < history.length; i += 1) {
      const { change, ms } = history[i]!;
      if (ms > nowMs) break;
      current = change;
      const nextMs = history[i + 1]?.ms ?? Number.POSITIVE_INFINITY;
      const hours = Math.max(0, Math.min(nextMs, windowEndMs) - Math.max(ms, startMs)) / HOUR_MS;
      if (hours <= 0) continue;
      if (change.state === 'running') {
        own.instanceHours += hours;
        hoursByType.set(change.instance_type, (hoursByType.get(change.instance_type) ?? 0) + hours);
        if (freeTier.has(change.instance_type)) {
          instanceHours.used += hours;
          markEstimated(change, instanceHours);
        } else {
          markEstimated(change);
        }
        if (change.public_ip) {
          own.ipv4Hours += hours;
          ipv4Hours.used += hours;
          markEstimated(change, ipv4Hours);
        }
      }
      if (change.state !== 'terminated' && change.storage_gb !== null && change.storage_gb > 0) {
        own.gbHours += change.storage_gb * hours;
        gbHours.used += change.storage_gb * hours;
        markEstimated(change, gbHours);
      }
    }

    if (current && remainingHours > 0) {
      if (current.state === 'running') {
        if (freeTier.has(current.instance_type)) {
          instanceHours.projected += remainingHours;
          markEstimated(current, instanceHours);
        } else {
          markEstimated(current);
        }
        if (current.public_ip) {
          ipv4Hours.projected += remainingHours;
          markEstimated(current, ipv4Hours);
        }
      }
      if (current.state !== 'terminated' && current.storage_gb !== null && current.storage_gb > 0) {
        gbHours.projected += current.storage_gb * remainingHours;
        markEstimated(current, gbHours);
      }
    }
    totals.push(own);
  }

  const figure = (acc: Accumulator, allowance: number, scale: (value: number) => number, per = 1): UsageFigure => {
    const used = acc.used / per;
    const projected = (acc.used + acc.projected) / per;
    return {
      used: scale(used),
      projected: scale(projected),
      allowance,
      remaining: scale(Math.max(0, allowance - used)),
      projected_over: projected > allowance,
      estimated: acc.estimated,
    };
  };

  const byType: InstanceTypeHours[] = [...hoursByType]
    .sort(([typeA, a], [typeB, b]) => b - a || typeA.localeCompare(typeB))
    .map(([type, hours]) => ({ instance_type: type, free_tier: freeTier.has(type), hours: hours2(hours) }));

  const topInstances: InstanceUsage[] = totals
    .filter((t) => t.instanceHours > 0 || t.gbHours > 0 || t.ipv4Hours > 0)
    .sort((a, b) => b.instanceHours - a.instanceHours || b.gbHours - a.gbHours || a.instance_id.localeCompare(b.instance_id))
    .slice(0, TOP_INSTANCES)
    .map((t) => ({
      instance_id: t.instance_id,
      name: t.name,
      instance_type: t.instance_type,
      instance_hours: hours2(t.instanceHours),
      ebs_gb_months: gbMonths3(t.gbHours / monthHours),
      public_ipv4_hours: hours2(t.ipv4Hours),
      estimated: t.estimated,
    }));

  return {
    month,
    from: start.toISOString(),
    to: end.toISOString(),
    as_of: now.toISOString(),
    complete: nowMs >= endMs,
    instance_hours: {
      ...figure(instanceHours, allowances.instanceHours, hours2),
      by_type: byType,
      free_tier_types: [...allowances.freeTierTypes],
    },
    ebs_gb_months: figure(gbHours, allowances.ebsGbMonths, gbMonths3, monthHours),
    public_ipv4_hours: figure(ipv4Hours, allowances.publicIpv4Hours, hours2),
    top_instances: topInstances,
    estimated_instances: [...estimatedInstances].sort(),
  };
}

/**
 * The allowances a new running instance (a create or a start) would push past: its own projection from now
 * to the report's month end added to each figure it contributes to (instance hours only for a free-tier
 * type, public IPv4 only with a public address, EBS only with storage). Returns just the figures that would
 * then be over their allowance, already-over ones included, since the new instance adds to them.
 */
export function projectedWith(
  report: UsageReport,
  extra: { instanceType: string; storageGb: number; publicIp: boolean },
  now: Date,
): { field: UsageFigureName; projected: number; allowance: number }[] {
  const fromMs = Date.parse(report.from);
  const toMs = Date.parse(report.to);
  const hours = Math.max(0, toMs - Math.max(now.getTime(), fromMs)) / HOUR_MS;
  const monthHours = (toMs - fromMs) / HOUR_MS;
  const additions: Array<{ field: UsageFigureName; add: number; scale: (value: number) => number }> = [
    { field: 'instance_hours', add: report.instance_hours.free_tier_types.includes(extra.instanceType) ? hours : 0, scale: hours2 },
    { field: 'ebs_gb_months', add: extra.storageGb > 0 ? (extra.storageGb * hours) / monthHours : 0, scale: gbMonths3 },
    { field: 'public_ipv4_hours', add: extra.publicIp ? hours : 0, scale: hours2 },
  ];
  const over: { field: UsageFigureName; projected: number; allowance: number }[] = [];
  for (const { field, add, scale } of additions) {
    if (add <= 0) continue;
    const projected = report[field].projected + add;
    if (projected > report[field].allowance) over.push({ field, projected: scale(projected), allowance: report[field].allowance });
  }
  return over;
}
