/**
 * The lifecycle service, the one owner of every change of an instance. Create, start, stop and terminate
 * are admitted here (launch policy, the instance's state, the quota: refused before anything is recorded),
 * then run as operations of the engine — recorded, capped, one per instance, idempotent — whose scripts
 * and recorded outcome are here too. Plus reconciliation (single flight) and start-up recovery.
 * What HTTP answers is decided by app/http; this module hands back Submissions.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { ScriptTimeouts } from '../config.js';
import type { OrphanOutcome, OrphanScript, OrphanScripts, RunContext } from '../ec2/runner.js';
import type { Ec2 } from '../ec2/scripts.js';
import type { Logger } from '../logger.js';
import { silentNotifier, type InstanceEventType, type Notifier } from '../notify/events.js';
import type { Operation } from '../schemas/operation.js';
import type { Instance } from '../schemas/instance.js';
import type { CreateInstanceRequest } from '../schemas/requests.js';
import type { Ec2Image, Ec2Instance } from '../schemas/script-outputs.js';
import type { InstanceRow, InstancesRepository, LaunchedRow, RecordedState } from '../store/instances-repo.js';
import type { OperationKind, OperationRow, OperationsRepository } from '../store/operations-repo.js';
import { ConflictError, PolicyError, ScriptError, type ScriptFailure } from './errors.js';
import { runContextOf, type OpContext } from './context.js';
import { GONE_FROM_EC2, recordOf, snapshotOf, toApiInstance, type ChangeTracker } from './instances.js';
import { loginUserFor, type KeyFiles } from './login-user.js';
import {
  idempotencyScope, type OperationHandle, type OperationsEngine, type StoredResponse, type Submission,
} from './operations.js';
import { checkImageFits, checkInstanceQuota, checkLaunchRequest, type LaunchPolicy } from './policy.js';
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
  /** Where the configured key pair's private key is, for ssh_string. */
  keyFiles?: KeyFiles;
  instances: InstancesRepository;
  operations: OperationsRepository;
  ec2: Ec2;
  reconciler: Reconciler;
  /** Where changes under way are told, for readers of EC2 that must not put back an older state. */
  changes: ChangeTracker;
  policy: LaunchPolicy;
  /** The EC2 key pair new instances get. */
  keyName: string;
  logger: Logger;
  /** Told after each recorded lifecycle change; never awaited. */
  notifier?: Notifier | undefined;
  /** The time bound of each kind of script (ms): the runner's, and the one an orphaned script is held to. */
  timeouts: ScriptTimeouts;
  /** Finds and settles scripts a dead server left running (start-up); without it none are looked for. */
  orphans?: OrphanScripts | undefined;
}

/**
 * The EC2 ClientToken of a launch made under an Idempotency-Key: deterministic, so every retry (also after
 * a restart) sends the same token and real EC2 deduplicates; at most 64 characters of [A-Za-z0-9_-].
 */
export function clientTokenForKey(scope: string, key: string): string {
  return `idem-${createHash('sha256').update(`${scope}\n${key}`).digest('base64url')}`;
}

/** The client token of a launch: derived from its Idempotency-Key, else a new one (recorded before the script runs). */
function clientTokenFor(ctx: OpContext, idempotency: { key: string } | undefined): string {
  return idempotency ? clientTokenForKey(idempotencyScope(ctx), idempotency.key) : `ec2c-${randomUUID()}`;
}

/**
 * Script failures after which we KNOW nothing was launched: create_instance.sh refuses bad arguments (2),
 * missing key pair/AMI (3) and missing aws/jq (8) before it calls run-instances, and a script that could
 * not be spawned did nothing. Every other failure (timeout, throttling, garbage output, a signal, …) may
 * have happened after EC2 accepted the launch, so the outcome is "unknown" and we look for the client token.
 */
const NOTHING_LAUNCHED: ReadonlySet<ScriptFailure> = new Set(['invalid-argument', 'not-found', 'missing-dependency', 'spawn']);

type ChangeKind = 'start' | 'stop' | 'terminate';

/** The state an instance shows from the moment an operation on it starts. */
const TRANSITIONAL: Record<ChangeKind, RecordedState> = {
  start: 'pending', stop: 'stopping', terminate: 'shutting-down',
};

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
  const { engine, instances, operations, ec2, reconciler, changes, policy, logger } = deps;
  const notifier = deps.notifier ?? silentNotifier;
  const present = (row: LaunchedRow): Instance => toApiInstance(row, deps.keyFiles);
  let currentSync: { operationId: string; done: Promise<SyncCounts> } | undefined;

  /** Announces a recorded change and hands the instance back, so call sites stay one expression. */
  const announce = (type: InstanceEventType, instance: Instance, ctx: OpContext): Instance => {
    notifier.notify({ type, instance, requestId: ctx.requestId, at: instance.updated_at });
    return instance;
  };
  const run = (ctx: OpContext, kind: keyof ScriptTimeouts): RunContext => runContextOf(ctx, deps.timeouts[kind]);
  /** The context the operation's scripts run under: each one's process group is recorded on the operation. */
  const scriptsOf = (ctx: OpContext, operationId: string): OpContext => ({
    ...ctx,
    onScript: (pgid) => operations.setScriptGroup(operationId, pgid),
  });
  /** Client tokens of the launches accepted and not finished (their intent may not be recorded yet). */
  const launchesInFlight = (): string[] =>
    operations.unfinished().flatMap((op) => (op.kind === 'create' && op.client_token ? [op.client_token] : []));

  /**
   * Validates and admits the launch, then runs it as an operation: resolve the image and security group,
   * record the intent, launch, record the result.
   */
  function create(request: CreateInstanceRequest, ctx: OpContext, options: MutationOptions<Instance> = {}): Submission<Instance> {
    checkLaunchRequest(policy, request); // 422 before anything is recorded
    const clientToken = clientTokenFor(ctx, options.idempotency);
    return engine.submit({
      kind: 'create',
      clientToken,
      ctx,
      // The quota counts a launch from the moment it is accepted, queued or running: creates sent together
      // never exceed it, and an asynchronous one is refused here, before its 202, rather than failing later.
      admit: () => admitLaunch(clientToken),
      idempotency: options.idempotency,
      remember: options.remember,
      result: (instance) => instance,
      run: (op) => launch(request, clientToken, scriptsOf(ctx, op.id), op),
    });
  }

  /** What counts against MAX_INSTANCES besides the launch under `own` (a retry must not count itself). */
  function launchesCounted(own: string, inFlight: Iterable<string>): number {
    const tokens = new Set<string>(inFlight);
    for (const row of instances.live()) tokens.add(row.client_token);
    for (const row of instances.unresolvedLaunches()) tokens.add(row.client_token);
    tokens.delete(own);
    return tokens.size;
  }

  /**
   * Refuses (QuotaExceededError) a launch that would exceed MAX_INSTANCES, counting live records, unresolved
   * launches and the other launches accepted and not finished. A retry of a launch that reached EC2 launches
   * nothing: it answers with that instance.
   */
  function admitLaunch(clientToken: string): void {
    if (instances.findByClientToken(clientToken)?.instance_id) return;
    checkInstanceQuota(launchesCounted(clientToken, launchesInFlight()), policy.maxInstances);
  }

  /**
   * The quota while the launch runs: before any script, and again right before the intent is written. The
   * launch was admitted with the others in flight counted; this catches what was recorded since, e.g. an import.
   */
  function recheckQuota(clientToken: string): void {
    checkInstanceQuota(launchesCounted(clientToken, []), policy.maxInstances);
  }

  /** The launch the create operation `op` runs. */
  async function launch(request: CreateInstanceRequest, clientToken: string, ctx: OpContext, op: OperationHandle): Promise<Instance> {
    const earlier = instances.findByClientToken(clientToken);
    const answered = earlier ? await earlierAttempt(earlier, clientToken, ctx, op) : undefined;
    if (answered) return answered;
    recheckQuota(clientToken);
    const { image, securityGroupId } = await resolveImageAndGroup(request, ctx);
    recordIntent(request, clientToken, { retry: earlier !== undefined, loginUser: loginUserFor(image), securityGroupId });
    try {
      const launched = await runLaunch(request, clientToken, { image, securityGroupId }, ctx);
      return recordLaunched(clientToken, launched, ctx, op);
    } catch (error) {
      return await recordFailedLaunch(error, clientToken, ctx, op);
    }
  }

  /**
   * A retry under the same client token (Idempotency-Key, or a launch interrupted by a crash). If the first
   * attempt got as far as EC2, its instance carries the token: it is the answer, never a second launch.
   */
  async function earlierAttempt(
    earlier: InstanceRow,
    clientToken: string,
    ctx: OpContext,
    op: OperationHandle,
  ): Promise<Instance | undefined> {
    if (earlier.instance_id) {
      op.setInstance(earlier.instance_id);
      return present(earlier as LaunchedRow);
    }
    const adopted = await adoptByToken(clientToken, ctx);
    if (!adopted) return undefined;
    logger.warn('an earlier attempt of this launch reached EC2; recorded its instance instead of launching again', {
      request_id: ctx.requestId, instance_id: adopted.instance_id, client_token: clientToken,
    });
    return recordAdopted(adopted, ctx, op);
  }

  /** The AMI, which must exist and fit the instance type, and the security group when one is asked for. */
  async function resolveImageAndGroup(
    request: CreateInstanceRequest,
    ctx: OpContext,
  ): Promise<{ image: Ec2Image; securityGroupId: string | null }> {
    let image: Ec2Image;
    try {
      image = await ec2.describeImage(request.ami, run(ctx, 'describe'));
    } catch (error) {
      if (error instanceof ScriptError && error.failure === 'not-found') {
        throw new PolicyError('The AMI does not exist', [{ field: 'ami', message: `${request.ami} does not exist or is not visible to this account` }]);
      }
      throw error;
    }
    checkImageFits(image, request.instance_type);
    const securityGroupId = request.create_security_group
      ? (await ec2.ensureSecurityGroup({}, run(ctx, 'create'))).id
      : null;
    return { image, securityGroupId };
  }

  /** Intent first: if we die from here on, the row and its client token let reconciliation find the instance. */
  function recordIntent(
    request: CreateInstanceRequest,
    clientToken: string,
    intent: { retry: boolean; loginUser: string; securityGroupId: string | null },
  ): void {
    recheckQuota(clientToken); // no await between this check and the write
    if (intent.retry) {
      instances.relaunch(clientToken); // same row, same token, nothing reached EC2
      return;
    }
    instances.insertLaunch({
      clientToken,
      name: request.name,
      ami: request.ami,
      instanceType: request.instance_type,
      storageGb: request.storage_gb,
      keyName: deps.keyName,
      securityGroupId: intent.securityGroupId,
      loginUser: intent.loginUser,
    });
  }

  /** The script need not read the image again: its root device is what the new volume is sized on. */
  function runLaunch(
    request: CreateInstanceRequest,
    clientToken: string,
    resolved: { image: Ec2Image; securityGroupId: string | null },
    ctx: OpContext,
  ): Promise<Ec2Instance> {
    return ec2.createInstance(
      {
        name: request.name,
        ami: request.ami,
        instanceType: request.instance_type,
        storageGb: request.storage_gb,
        keyName: deps.keyName,
        clientToken,
        securityGroupId: resolved.securityGroupId ?? undefined,
        rootDevice: resolved.image.root_device_name,
      },
      run(ctx, 'create'),
    );
  }

  function recordLaunched(clientToken: string, launched: Ec2Instance, ctx: OpContext, op: OperationHandle): Instance {
    op.setInstance(launched.id);
    return announce('created', present(instances.completeLaunch(clientToken, snapshotOf(launched))), ctx);
  }

  /**
   * A launch script that failed. When it cannot have launched anything, the launch is failed; otherwise its
   * outcome is unknown, and EC2 is asked for the client token: an instance found is recorded, never orphaned.
   * Throws the script's failure unless EC2 has the instance.
   */
  async function recordFailedLaunch(error: unknown, clientToken: string, ctx: OpContext, op: OperationHandle): Promise<Instance> {
    const message = error instanceof Error ? error.message : String(error);
    if (error instanceof ScriptError && NOTHING_LAUNCHED.has(error.failure)) {
      instances.failLaunch(clientToken, 'failed', message);
      if (error.failure === 'not-found') {
        // describe_image.sh saw the AMI a moment ago, so this is almost always the configured key pair.
        throw new ScriptError('other', error.script, `EC2 refused the launch: ${message} (is KEY_NAME=${deps.keyName} a key pair in this region?)`, error.details);
      }
      throw error;
    }
    instances.failLaunch(clientToken, 'unknown', message);
    try {
      const adopted = await adoptByToken(clientToken, ctx);
      if (adopted) {
        logger.warn('launch script failed but EC2 has the instance; recorded it', {
          request_id: ctx.requestId, instance_id: adopted.instance_id, client_token: clientToken, error: message,
        });
        return recordAdopted(adopted, ctx, op);
      }
    } catch (lookupError) {
      logger.warn('could not look for the launch by client token', {
        request_id: ctx.requestId, client_token: clientToken, error: String(lookupError),
      });
    }
    throw error;
  }

  /** The instance EC2 launched under `clientToken`, recorded on its launch; undefined when EC2 has none. */
  async function adoptByToken(clientToken: string, ctx: OpContext): Promise<LaunchedRow | undefined> {
    const { instances: found } = await ec2.listInstances({ all: true }, run(ctx, 'describe'));
    const match = found.find((i) => i.client_token === clientToken);
    return match ? instances.completeLaunch(clientToken, snapshotOf(match)) : undefined;
  }

  function recordAdopted(adopted: LaunchedRow, ctx: OpContext, op: OperationHandle): Instance {
    op.setInstance(adopted.instance_id);
    op.note(`an earlier attempt had reached EC2: instance ${adopted.instance_id} found by its client token, not launched again`);
    return announce('created', present(adopted), ctx);
  }

  /**
   * The record a change may run on: NotFoundError without one, ConflictError when it is terminated (only a
   * terminate may run on one again). Checked before anything is recorded, and again when the operation
   * runs: a read may have found the instance gone from EC2 while the operation waited in line.
   */
  function changeable(kind: ChangeKind, instanceId: string): LaunchedRow {
    const row = recordOf(instances, instanceId);
    if (kind !== 'terminate' && row.state === 'terminated') {
      throw new ConflictError(`Instance ${instanceId} is terminated; it cannot ${kind}`);
    }
    return row;
  }

  function change(kind: ChangeKind, instanceId: string, ctx: OpContext, options: MutationOptions<Instance> = {}): Submission<Instance> {
    changeable(kind, instanceId); // 404 or 409 before anything is recorded
    return engine.submit({
      kind,
      instanceId,
      ctx,
      idempotency: options.idempotency,
      remember: options.remember,
      result: (instance) => instance,
      run: (op) => {
        const scripted = scriptsOf(ctx, op.id);
        return kind === 'terminate' ? terminate(instanceId, scripted) : startOrStop(kind, instanceId, scripted);
      },
    });
  }

  /**
   * After a failed change the record must not keep the transitional state it showed: re-read EC2
   * (reconcile), and when even that fails, put back the state recorded before the operation.
   */
  async function reconcileAfterFailure(instanceId: string, before: RecordedState, ctx: OpContext): Promise<void> {
    try {
      instances.refresh(snapshotOf(await ec2.describeInstance(instanceId, run(ctx, 'describe'))));
    } catch (error) {
      if (error instanceof ScriptError && error.failure === 'not-found') {
        instances.markTerminated(instanceId, GONE_FROM_EC2);
        return;
      }
      logger.debug('refresh after failure did not succeed', { request_id: ctx.requestId, instance_id: instanceId, error: String(error) });
      instances.setState(instanceId, before);
    }
  }

  async function startOrStop(kind: 'start' | 'stop', instanceId: string, ctx: OpContext): Promise<Instance> {
    const before = changeable(kind, instanceId).state;
    const endChange = changes.begin(instanceId);
    instances.setState(instanceId, TRANSITIONAL[kind]);
    try {
      const result = kind === 'start'
        ? await ec2.startInstance(instanceId, run(ctx, 'start'))
        : await ec2.stopInstance(instanceId, run(ctx, 'stop'));
      return announce(kind === 'start' ? 'started' : 'stopped', present(instances.refresh(snapshotOf(result))), ctx);
    } catch (error) {
      if (error instanceof ScriptError && error.failure === 'not-found') {
        instances.markTerminated(instanceId, GONE_FROM_EC2);
        throw new ConflictError(`Instance ${instanceId} no longer exists in EC2; its record is now terminated`);
      }
      await reconcileAfterFailure(instanceId, before, ctx);
      if (error instanceof ScriptError && error.failure === 'conflict') {
        throw new ConflictError(`Instance ${instanceId} cannot ${kind} in its current state: ${error.message}`);
      }
      throw error;
    } finally {
      endChange();
    }
  }

  async function terminate(instanceId: string, ctx: OpContext): Promise<Instance> {
    const before = changeable('terminate', instanceId).state;
    const endChange = changes.begin(instanceId);
    if (before !== 'terminated') instances.setState(instanceId, TRANSITIONAL.terminate);
    try {
      const result = await ec2.destroyInstance(instanceId, run(ctx, 'terminate'));
      instances.refresh(snapshotOf(result));
      // shutting-down only ever leads to terminated: the record says so now, so lists stop showing it.
      return announce('terminated', present(instances.markTerminated(instanceId, null)), ctx);
    } catch (error) {
      if (error instanceof ScriptError && error.failure === 'not-found') {
        return present(instances.markTerminated(instanceId, GONE_FROM_EC2));
      }
      if (before !== 'terminated') await reconcileAfterFailure(instanceId, before, ctx);
      if (error instanceof ScriptError && error.failure === 'conflict') {
        throw new ConflictError(`Instance ${instanceId} cannot be destroyed: ${error.message}`);
      }
      throw error;
    } finally {
      endChange();
    }
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
    create,
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
      const boundMs = deps.timeouts[SCRIPT_KIND[op.kind]];
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
