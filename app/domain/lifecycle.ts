/**
 * The lifecycle service: the instances service's changes run as operations of the engine —
 * recorded, capped, one per instance, idempotent — plus reconciliation (single flight) and start-up recovery.
 * What HTTP answers is decided by app/http; this module hands back Submissions.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { ScriptTimeouts } from '../config.js';
import type { OrphanOutcome, OrphanScript, OrphanScripts } from '../ec2/runner.js';
import type { Logger } from '../logger.js';
import type { Operation } from '../schemas/operation.js';
import type { Instance } from '../schemas/instance.js';
import type { CreateInstanceRequest } from '../schemas/requests.js';
import type { InstancesRepository } from '../store/instances-repo.js';
import type { OperationKind, OperationRow, OperationsRepository } from '../store/operations-repo.js';
import { ConflictError } from './errors.js';
import type { OpContext } from './context.js';
import type { InstancesService } from './instances.js';
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
  /**
   * Start-up: interrupts what a previous process left in flight, waits for (or, past its time bound, kills)
   * any script of it still running, then reconciles: launches found by client token are recorded, the
   * others failed. Everything before its first await is done synchronously.
   */
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
  /** Finds and settles scripts a dead server left running (start-up); without it none are looked for. */
  orphans?: OrphanScripts | undefined;
  /** The time bound of each kind of script (ms), which an orphaned script is held to as well. */
  timeouts?: Partial<ScriptTimeouts> | undefined;
  /** The bound where `timeouts` names none: the runner's own timeout. */
  defaultTimeoutMs: number;
}

/**
 * The EC2 ClientToken of a launch made under an Idempotency-Key: deterministic, so every retry (also after
 * a restart) sends the same token and real EC2 deduplicates; at most 64 characters of [A-Za-z0-9_-].
 */
export function clientTokenForKey(scope: string, key: string): string {
  return `idem-${createHash('sha256').update(`${scope}\n${key}`).digest('base64url')}`;
}

const INTERRUPTED_NOTE = 'interrupted: the server stopped while this operation was in flight';

const SCRIPT_KIND: Record<OperationKind, keyof ScriptTimeouts> = {
  create: 'create', start: 'start', stop: 'stop', terminate: 'terminate', sync: 'describe',
};

/** What the note of an operation whose script outlived the server says about that script. */
function orphanNote(pgid: number, outcome: OrphanOutcome, boundMs: number): string {
  if (outcome === 'finished') return `the script (process group ${pgid}) outlived the server and finished`;
  if (outcome === 'killed') return `the script (process group ${pgid}) outlived the server and was killed at its time bound (${boundMs} ms)`;
  return `the script (process group ${pgid}) outlived the server and could not be stopped`;
}

export function createLifecycleService(deps: LifecycleDeps): LifecycleService {
  const { engine, instancesService, instances, operations, reconciler, logger } = deps;
  let currentSync: { operationId: string; done: Promise<SyncCounts> } | undefined;

  /** The context the operation's scripts run under: each one's process group is recorded on the operation. */
  const scriptsOf = (ctx: OpContext, operationId: string): OpContext => ({
    ...ctx,
    onScript: (pgid) => operations.setScriptGroup(operationId, pgid),
  });
  /** Client tokens of the launches accepted and not finished (their intent may not be recorded yet). */
  const launchesInFlight = (): string[] =>
    operations.unfinished().flatMap((op) => (op.kind === 'create' && op.client_token ? [op.client_token] : []));
  const boundOf = (kind: OperationKind): number =>
    deps.timeouts?.[SCRIPT_KIND[kind]] ?? deps.defaultTimeoutMs;

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
      run: (op) => {
        const scripted = scriptsOf(ctx, op.id);
        if (kind === 'start') return instancesService.start(instanceId, scripted);
        if (kind === 'stop') return instancesService.stop(instanceId, scripted);
        return instancesService.destroy(instanceId, scripted);
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
        // The quota counts a launch from the moment it is accepted, queued or running: creates sent together
        // never exceed it, and an asynchronous one is refused here, before its 202, rather than failing later.
        admit: () => instancesService.admitLaunch(clientToken, launchesInFlight()),
        idempotency: options.idempotency,
        remember: options.remember,
        result: (instance) => instance,
        run: (op) =>
          instancesService.create(request, scriptsOf(ctx, op.id), {
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
      // The server takes no request before this returns its promise, so what the store says about work in
      // flight (interrupted, or a script still running) is in place before any request reads it.
      const abandoned = engine.recoverAbandoned(INTERRUPTED_NOTE);
      engine.purgeIdempotencyKeys();
      const watched = findOrphans(ctx);
      // Also after a clean shutdown that had to interrupt something: records left in a transitional state,
      // and launches left without an instance id (they count against MAX_INSTANCES until resolved).
      const launches = instances.unresolvedLaunches();
      const transitional = instances.live().some((row) => ['pending', 'stopping', 'shutting-down'].includes(row.state));
      if (abandoned.length === 0 && watched.length === 0 && launches.length === 0 && !transitional) return;

      // What a script that outlived the server did can only be judged once it has ended.
      const outcomes = new Map<string, string>();
      await Promise.all(watched.map(async ({ op, orphan, deadlineMs, boundMs }) => {
        const outcome = await (deps.orphans as OrphanScripts).settle(orphan, deadlineMs);
        if (outcome !== 'unstoppable') operations.setScriptGroup(op.id, null);
        outcomes.set(op.id, orphanNote(orphan.pgid, outcome, boundMs));
        const line = { request_id: ctx.requestId, operation_id: op.id, process_group: orphan.pgid, script: orphan.script, outcome };
        if (outcome === 'unstoppable') logger.error('the script that outlived the previous server could not be stopped', line);
        else logger.info('the script that outlived the previous server is done', line);
      }));

      let failure: string | undefined;
      try {
        await freshSync(ctx);
      } catch (error) {
        failure = error instanceof Error ? error.message : String(error);
      }

      const noted = new Map<string, OperationRow>();
      for (const op of [...abandoned, ...watched.map((w) => w.op)]) noted.set(op.id, op);
      for (const op of noted.values()) {
        const parts = [op.note ?? INTERRUPTED_NOTE];
        const script = outcomes.get(op.id);
        if (script) parts.push(script);
        parts.push(failure === undefined ? resolution(op) : `reconciliation at start-up failed: ${failure}`);
        operations.setNote(op.id, parts.join('; '));
      }

      const after = launches.map((launch) => instances.findByClientToken(launch.client_token));
      logger.info('start-up recovery done', {
        request_id: ctx.requestId,
        interrupted: abandoned.map((o) => o.id),
        orphaned_scripts: watched.map((w) => w.orphan.pgid),
        launches_recorded: after.flatMap((row) => (row?.instance_id ? [row.instance_id] : [])),
        launches_failed: after.flatMap((row) => (row && !row.instance_id && row.launch_status === 'failed' ? [row.client_token] : [])),
        reconciliation_failed: failure,
      });
    },
  };

  /**
   * Operations whose script may have outlived the previous server. A recorded process group that is gone, or
   * that now belongs to something else, is cleared at once; one that is still our script stays recorded (so
   * a retry of the same request waits) and is watched until it ends or its time bound runs out.
   */
  function findOrphans(ctx: OpContext): Array<{ op: OperationRow; orphan: OrphanScript; deadlineMs: number; boundMs: number }> {
    const watched = [];
    for (const op of operations.withScriptGroup()) {
      const pgid = op.script_pgid as number;
      const orphan = deps.orphans?.find(pgid, Date.parse(op.started_at ?? op.created_at));
      if (!orphan) {
        operations.setScriptGroup(op.id, null);
        continue;
      }
      const boundMs = boundOf(op.kind);
      const deadlineMs = orphan.startedAtMs + boundMs; // when the dead server's runner would have killed it
      const waitMs = Math.max(0, Math.round(deadlineMs - Date.now()));
      operations.setNote(op.id, `${op.note ?? INTERRUPTED_NOTE}; the script (process group ${pgid}) outlived the server: waiting up to ${waitMs} ms for it before judging what it did`);
      logger.warn('a script outlived the previous server; waiting for it', {
        request_id: ctx.requestId, operation_id: op.id, process_group: pgid, script: orphan.script, wait_ms: waitMs,
      });
      watched.push({ op, orphan, deadlineMs, boundMs });
    }
    return watched;
  }

  /** A sync that read EC2 after now: one already in flight may have read it before the orphans ended. */
  async function freshSync(ctx: OpContext): Promise<void> {
    const flight = sync(ctx);
    if (!flight.shared) {
      await flight.done;
      return;
    }
    await flight.done.catch(() => undefined);
    await sync(ctx).done;
  }

  /** What start-up reconciliation found for an interrupted operation: only what is known. */
  function resolution(op: OperationRow): string {
    if (op.kind === 'create' && op.client_token) {
      const row = instances.findByClientToken(op.client_token);
      if (!row) return 'reconciled at start-up: it had not started a launch';
      if (row.instance_id) {
        operations.setInstance(op.id, row.instance_id);
        return `reconciled at start-up: EC2 had the launch (found by its client token), recorded as ${row.instance_id} (${row.state})`;
      }
      if (row.launch_status === 'failed') {
        return 'reconciled at start-up: no instance carries its client token, nothing was launched';
      }
      return 'reconciled at start-up: no instance carries its client token yet; the launch stays unresolved until a sync finds it or gives it up';
    }
    if (op.instance_id) {
      return `reconciled at start-up: the instance is ${instances.findByInstanceId(op.instance_id)?.state ?? 'unknown'}`;
    }
    return 'reconciled at start-up';
  }
}
