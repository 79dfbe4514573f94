/**
 * The lifecycle service (issue 5): the instances service's changes run as operations of the engine —
 * recorded, capped, one per instance, idempotent — plus reconciliation (single flight) and start-up recovery.
 * What HTTP answers is decided by app/http; this module hands back Submissions.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Logger } from '../logger.js';
import type { Operation } from '../schemas/operation.js';
import type { Instance } from '../schemas/instance.js';
import type { CreateInstanceRequest } from '../schemas/requests.js';
import type { InstancesRepository } from '../store/instances-repo.js';
import type { OperationsRepository } from '../store/operations-repo.js';
import { ConflictError } from './errors.js';
import type { InstancesService, OpContext } from './instances.js';
import {
  idempotencyScope, type OperationsEngine, type StoredResponse, type Submission,
} from './operations.js';
import { checkLaunchRequest, type LaunchPolicy } from './policy.js';
import type { Reconciler, SyncCounts } from './reconcile.js';

export interface MutationOptions<T> {
  idempotency?: { key: string; fingerprint: string } | undefined;
  remember?: { success(value: T): StoredResponse; failure(error: unknown): StoredResponse | undefined } | undefined;
}

export interface LifecycleService {
  create(request: CreateInstanceRequest, ctx: OpContext, options?: MutationOptions<Instance>): Submission<Instance>;
  start(instanceId: string, ctx: OpContext, options?: MutationOptions<Instance>): Submission<Instance>;
  stop(instanceId: string, ctx: OpContext, options?: MutationOptions<Instance>): Submission<Instance>;
  destroy(instanceId: string, ctx: OpContext, options?: MutationOptions<Instance>): Submission<Instance>;
  /** Reconciles with EC2; a sync already in flight is shared, not repeated. */
  sync(ctx: OpContext): { operationId: string; done: Promise<SyncCounts>; shared: boolean };
  /** Start-up: interrupts what a previous process left in flight and reconciles those instances. */
  recover(ctx: OpContext): Promise<void>;
  /** One operation as the API shows it. */
  operation(id: string): Operation;
}

export interface LifecycleDeps {
  engine: OperationsEngine;
  instancesService: InstancesService;
  instances: InstancesRepository;
  operations: OperationsRepository;
  reconciler: Reconciler;
  policy: LaunchPolicy;
  logger: Logger;
}

/**
 * The EC2 ClientToken of a launch made under an Idempotency-Key: deterministic, so every retry (also after
 * a restart) sends the same token and real EC2 deduplicates; at most 64 characters of [A-Za-z0-9_-].
 */
export function clientTokenForKey(scope: string, key: string): string {
  return `idem-${createHash('sha256').update(`${scope}\n${key}`).digest('base64url')}`;
}

const INTERRUPTED_NOTE = 'interrupted: the server stopped while this operation was in flight';

export function createLifecycleService(deps: LifecycleDeps): LifecycleService {
  const { engine, instancesService, instances, operations, reconciler, logger } = deps;
  let currentSync: { operationId: string; done: Promise<SyncCounts> } | undefined;

  function change(
    kind: 'start' | 'stop' | 'terminate',
    instanceId: string,
    ctx: OpContext,
    options: MutationOptions<Instance> = {},
  ): Submission<Instance> {
    const record = instancesService.recorded(instanceId); // 404 before anything is recorded
    if (kind !== 'terminate' && record.state === 'terminated') {
      throw new ConflictError(`Instance ${instanceId} is terminated; it cannot ${kind}`);
    }
    return engine.submit({
      kind,
      instanceId,
      ctx,
      idempotency: options.idempotency,
      remember: options.remember,
      result: (instance) => instance,
      run: () => {
        if (kind === 'start') return instancesService.start(instanceId, ctx);
        if (kind === 'stop') return instancesService.stop(instanceId, ctx);
        return instancesService.destroy(instanceId, ctx);
      },
    });
  }

  function sync(ctx: OpContext): { operationId: string; done: Promise<SyncCounts>; shared: boolean } {
    if (currentSync) {
      logger.debug('sync joined the one in flight', { request_id: ctx.requestId, operation_id: currentSync.operationId });
      return { ...currentSync, shared: true };
    }
    const submission = engine.submit<SyncCounts>({
      kind: 'sync',
      capped: false,
      ctx,
      run: () => reconciler.syncOnce(ctx),
      result: (counts) => counts,
    });
    if (submission.type !== 'started') throw new Error('a sync without an idempotency key always starts');
    const flight = { operationId: submission.operation.id, done: submission.done };
    currentSync = flight;
    const clear = () => {
      if (currentSync === flight) currentSync = undefined;
    };
    submission.done.then(clear, clear);
    return { ...flight, shared: false };
  }

  return {
    create(request, ctx, options = {}) {
      checkLaunchRequest(deps.policy, request); // 422 before anything is recorded
      const clientToken = options.idempotency
        ? clientTokenForKey(idempotencyScope(ctx), options.idempotency.key)
        : `ec2c-${randomUUID()}`;
      return engine.submit({
        kind: 'create',
        clientToken,
        ctx,
        idempotency: options.idempotency,
        remember: options.remember,
        result: (instance) => instance,
        run: (op) =>
          instancesService.create(request, ctx, {
            clientToken,
            onInstance: (instanceId) => op.setInstance(instanceId),
            onAdopted: (instanceId) =>
              op.note(`an earlier attempt had reached EC2: instance ${instanceId} found by its client token, not launched again`),
          }),
      });
    },
    start: (instanceId, ctx, options) => change('start', instanceId, ctx, options),
    stop: (instanceId, ctx, options) => change('stop', instanceId, ctx, options),
    destroy: (instanceId, ctx, options) => change('terminate', instanceId, ctx, options),
    sync,
    operation: (id) => engine.get(id),

    async recover(ctx) {
      const abandoned = engine.recoverAbandoned(INTERRUPTED_NOTE);
      engine.purgeIdempotencyKeys();
      // Also after a clean shutdown that had to interrupt something: records left in a transitional state.
      const transitional = instances.live().some((row) => ['pending', 'stopping', 'shutting-down'].includes(row.state));
      if (abandoned.length === 0 && instances.unresolvedLaunches().length === 0 && !transitional) return;
      let failure: string | undefined;
      try {
        await sync(ctx).done;
      } catch (error) {
        failure = error instanceof Error ? error.message : String(error);
      }
      for (const op of abandoned) {
        if (failure !== undefined) {
          operations.setNote(op.id, `${INTERRUPTED_NOTE}; reconciliation at start-up failed: ${failure}`);
          continue;
        }
        if (op.kind === 'create' && op.client_token) {
          const row = instances.findByClientToken(op.client_token);
          if (row?.instance_id) {
            operations.setInstance(op.id, row.instance_id);
            operations.setNote(op.id, `${INTERRUPTED_NOTE}; reconciled at start-up: EC2 had the launch (found by its client token), recorded as ${row.instance_id} (${row.state})`);
          } else {
            operations.setNote(op.id, `${INTERRUPTED_NOTE}; reconciled at start-up: no instance carries its client token, nothing was launched`);
          }
        } else if (op.instance_id) {
          const row = instances.findByInstanceId(op.instance_id);
          operations.setNote(op.id, `${INTERRUPTED_NOTE}; reconciled at start-up: the instance is ${row?.state ?? 'unknown'}`);
        } else {
          operations.setNote(op.id, `${INTERRUPTED_NOTE}; reconciled at start-up`);
        }
      }
      if (abandoned.length) logger.info('start-up recovery done', { request_id: ctx.requestId, interrupted: abandoned.map((o) => o.id) });
    },
  };
}
