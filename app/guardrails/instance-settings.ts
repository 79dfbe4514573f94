/**
 * PATCH /instances/{id}: changing or clearing an instance's expiry, its action at expiry and its off-hours
 * schedule. The expiry is mirrored to EC2 as the `ec2-creator:expires-at` tag (written first: if EC2
 * refuses, nothing changes), so a person in the AWS console sees it.
 */
import { ConflictError, PolicyError, ValidationError } from '../domain/errors.js';
import { recordOf, toApiInstance } from '../domain/instances.js';
import type { KeyFiles } from '../domain/login-user.js';
import { runContextOf, type OpContext } from '../domain/context.js';
import { expiryFrom, expiryProblems, scheduleProblems, type Schedule } from '../domain/schedule.js';
import type { Ec2 } from '../ec2/scripts.js';
import type { Logger } from '../logger.js';
import type { Instance } from '../schemas/instance.js';
import type { UpdateInstanceRequest } from '../schemas/requests.js';
import type { InstancesStore } from '../store/ports.js';
import type { GuardrailsConfig } from './config.js';

/** The EC2 tag that shows an instance's expiry in the console. */
export const EXPIRES_AT_TAG = 'ec2-creator:expires-at';

export interface InstanceSettings {
  update(instanceId: string, patch: UpdateInstanceRequest, ctx: OpContext): Promise<Instance>;
}

export function createInstanceSettings(deps: {
  instances: InstancesStore;
  ec2: Pick<Ec2, 'tagInstance'>;
  config: GuardrailsConfig;
  clock: () => Date;
  logger: Logger;
  keyFiles?: KeyFiles | undefined;
  describeTimeoutMs: number;
}): InstanceSettings {
  const { instances, ec2, config, clock, logger } = deps;

  function newExpiry(patch: UpdateInstanceRequest, recorded: string | null, now: Date): string | null {
    if (patch.expires_at !== undefined && patch.ttl_hours !== undefined) {
      throw new ValidationError('The request body is invalid', [{ field: 'ttl_hours', message: 'give either expires_at or ttl_hours, not both' }]);
    }
    if (patch.expires_at === null) return null;
    if (patch.expires_at === undefined && patch.ttl_hours === undefined) return recorded;
    const expiry = expiryFrom({ expires_at: patch.expires_at ?? undefined, ttl_hours: patch.ttl_hours }, { defaultTtlHours: 0 }, now);
    if (expiry === null) return recorded;
    const problems = expiryProblems(expiry, now, config.maxTtlHours);
    if (problems.length > 0) {
      throw new PolicyError('The expiry is outside the launch policy', problems.map((p) => ({
        ...p, field: patch.ttl_hours !== undefined ? 'ttl_hours' : p.field,
      })));
    }
    return expiry.toISOString();
  }

  return {
    async update(instanceId, patch, ctx) {
      const row = await recordOf(instances, instanceId);
      if (row.state === 'terminated') throw new ConflictError(`Instance ${instanceId} is terminated; there is nothing left to schedule`);
      if (patch.schedule) {
        const problems = scheduleProblems(patch.schedule as Schedule);
        if (problems.length > 0) throw new ValidationError('The schedule is invalid', problems);
      }
      const expiresAt = newExpiry(patch, row.expires_at, clock());
      if (patch.on_expiry !== undefined && expiresAt === null) {
        throw new ValidationError('The request body is invalid', [{
          field: 'on_expiry', message: 'the instance has no expiry; give expires_at or ttl_hours with it',
        }]);
      }
      const onExpiry = expiresAt === null ? null : (patch.on_expiry ?? row.on_expiry ?? config.defaultOnExpiry);
      const schedule = patch.schedule === undefined ? row.schedule : patch.schedule === null ? null : JSON.stringify(patch.schedule);
      if (expiresAt !== row.expires_at) {
        await ec2.tagInstance(instanceId, expiresAt === null ? { remove: [EXPIRES_AT_TAG] } : { set: { [EXPIRES_AT_TAG]: expiresAt } },
          runContextOf(ctx, deps.describeTimeoutMs));
      }
      const updated = await instances.setGuardrails(instanceId, { expiresAt, onExpiry, schedule, scheduleSince: clock().toISOString() });
      logger.info('instance guardrails changed', {
        request_id: ctx.requestId, actor: ctx.actor, instance_id: instanceId,
        expires_at: expiresAt, on_expiry: onExpiry, schedule: schedule === null ? null : JSON.parse(schedule),
      });
      return toApiInstance(updated, deps.keyFiles);
    },
  };
}
