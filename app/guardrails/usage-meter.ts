/**
 * The free-tier meter over the recorded state history (instance_history, written by the store's triggers),
 * and the guard a create or start passes: with FREE_TIER_GUARD=refuse, one whose projection would pass an
 * allowance is refused (FreeTierExceededError, 422, with the numbers); with `warn` it goes ahead and the
 * answer carries a Warning header and the operation a note.
 */
import { FreeTierExceededError, type Overage } from '../domain/errors.js';
import { computeUsage, monthBounds, projectedWith, type UsageFigureName, type UsageReport } from '../domain/usage.js';
import { recordOf } from '../domain/instances.js';
import type { AsyncStore, Repositories } from '../store/ports.js';
import type { GuardrailsConfig } from './config.js';


export interface UsageMeter {
  /** The month's use (YYYY-MM, default this month in UTC). RangeError for a malformed or future month. */
  report(month?: string): Promise<UsageReport>;
  /**
   * The free tier's verdict on a new running instance: nothing, or a warning to pass on; throws
   * FreeTierExceededError when the guard refuses.
   */
  admit(instance: { instanceType: string; storageGb: number }, via?: Reader): Promise<{ warning?: string | undefined }>;
  /** The same for starting a recorded instance. */
  admitStart(instanceId: string, via?: Reader): Promise<{ warning?: string | undefined }>;
}

/** Where the meter reads: the store, or the transaction that admits an operation (SQLite has one connection). */
type Reader = Pick<Repositories, 'instances'>;

const UNITS: Record<UsageFigureName, string> = {
  instance_hours: 'instance hours',
  ebs_gb_months: 'EBS GB-months',
  public_ipv4_hours: 'public IPv4 hours',
};

export function describeOverages(overages: readonly Overage[]): string {
  return overages.map((o) => `${UNITS[o.field]} would reach ${o.projected} of the ${o.allowance} free this month`).join('; ');
}

export function createUsageMeter(deps: {
  store: Pick<AsyncStore, 'instances'>;
  config: Pick<GuardrailsConfig, 'freeTier'>;
  clock: () => Date;
}): UsageMeter {
  const { store, clock } = deps;
  const { freeTier } = deps.config;
  const allowances = {
    instanceHours: freeTier.instanceHours,
    ebsGbMonths: freeTier.ebsGbMonths,
    publicIpv4Hours: freeTier.publicIpv4Hours,
    freeTierTypes: freeTier.instanceTypes,
  };

  async function report(month?: string, via: Reader = store): Promise<UsageReport> {
    const now = clock();
    const wanted = month ?? now.toISOString().slice(0, 7);
    const { start, end } = monthBounds(wanted);
    const rows = await via.instances.history(start.toISOString(), end.toISOString());
    const changes = rows.map((row) => ({
      ...row, storage_gb: row.storage_gb === null ? null : Number(row.storage_gb),
      public_ip: Number(row.public_ip) === 1, estimated: Number(row.estimated) === 1,
    }));
    return computeUsage(changes, wanted, now, allowances);
  }

  async function admit(instance: { instanceType: string; storageGb: number }, via: Reader = store): Promise<{ warning?: string | undefined }> {
    if (freeTier.guard === 'off') return {};
    const now = clock();
    // A new instance gets a public address in a default VPC: counted as one, which errs on the side of the bill.
    const overages = projectedWith(await report(undefined, via), { ...instance, publicIp: true }, now);
    if (overages.length === 0) return {};
    const message = `The free tier would be exceeded: ${describeOverages(overages)}`;
    if (freeTier.guard === 'refuse') throw new FreeTierExceededError(`${message} (FREE_TIER_GUARD=refuse)`, overages);
    return { warning: message };
  }

  return {
    report: (month) => report(month),
    admit,
    async admitStart(instanceId, via = store) {
      if (freeTier.guard === 'off') return {};
      const row = await recordOf(via.instances, instanceId);
      if (row.state === 'running' || row.state === 'pending') return {}; // starting it adds nothing
      return admit({ instanceType: row.instance_type, storageGb: 0 }, via); // its volume is counted already
    },
  };
}
