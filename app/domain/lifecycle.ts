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
import type { Ec2Image, Ec2Instance, ScriptProgress } from '../schemas/script-outputs.js';
import type { InstanceRow, LaunchedRow, RecordedState } from '../store/instances-repo.js';
import type { OperationKind, OperationRow } from '../store/operations-repo.js';
import type { AsyncStore, InstancesStore, Transaction } from '../store/ports.js';
import { ConflictError, IncorrectStateError, PolicyError, ScriptError, ValidationError, type ScriptFailure } from './errors.js';
import { backoffPauses, mayBeUnseen } from './consistency.js';
import { runContextOf, type OpContext } from './context.js';
import { GONE_FROM_EC2, isoTime, recordOf, snapshotOf, toApiInstance, type ChangeTracker } from './instances.js';
import { loginUserFor, type KeyFiles } from './login-user.js';
import {
  idempotencyScope, type OperationHandle, type OperationsEngine, type StoredResponse, type Submission,
} from './operations.js';
import { checkImageFits, checkInstanceQuota, checkLaunchRequest, type LaunchPolicy } from './policy.js';
import { expiryFrom, expiryProblems, scheduleProblems, type Schedule } from './schedule.js';
import type { GuardrailsConfig } from '../guardrails/config.js';
import { managedGroupName, managedGroupRules, type ManagedGroupRules } from '../guardrails/network.js';
import { checkUserTags, userTagsOf } from '../guardrails/tags.js';
import type { Reconciler, SyncCounts } from './reconcile.js';

export interface MutationOptions<T> {
  idempotency?: { key: string; fingerprint: string } | undefined;
  /** Told the free tier's warning, when a create or start goes ahead past an allowance (FREE_TIER_GUARD=warn). */
  onWarning?: ((warning: string) => void) | undefined;
  remember?: { success(value: T): StoredResponse; failure(error: unknown): StoredResponse | undefined } | undefined;
}

export interface LifecycleService {
  create(request: CreateInstanceRequest, ctx: OpContext, options?: MutationOptions<Instance>): Promise<Submission<Instance>>;
  start(instanceId: string, ctx: OpContext, options?: MutationOptions<Instance>): Promise<Submission<Instance>>;
  stop(instanceId: string, ctx: OpContext, options?: MutationOptions<Instance>): Promise<Submission<Instance>>;
  destroy(instanceId: string, ctx: OpContext, options?: MutationOptions<Instance>): Promise<Submission<Instance>>;
  /** Reconciles with EC2; a sync already in flight is shared, not repeated. */
  sync(ctx: OpContext): Promise<{ operationId: string; done: Promise<SyncCounts>; shared: boolean }>;
  /**
   * Start-up: interrupts what a previous process left in flight, waits for (or, past its time bound, kills)
   * any script of it still running, then reconciles: launches found by client token are recorded, the
   * others failed. `settled` resolves once the records say what is in flight (take no request before);
   * `done` once the reconciliation is over.
   */
  recover(ctx: OpContext, scope?: RecoveryScope): { settled: Promise<void>; done: Promise<void> };
  /** One operation as the API shows it. */
  operation(id: string): Promise<Operation>;
}

/** Whose work a recovery takes over: by default all of it (one server per database, this one just started). */
export interface RecoveryScope {
  /** Whether an unfinished operation belongs to a server that is gone. */
  abandoned(op: OperationRow): boolean;
  /** Whether the operation's script ran on this machine, where its process group can be looked at. */
  local(op: OperationRow): boolean;
  /** What the note of each interrupted operation says. */
  note: string;
}

export interface LifecycleDeps {
  engine: OperationsEngine;
  /** Where the configured key pair's private key is, for ssh_string. */
  keyFiles?: KeyFiles;
  store: Pick<AsyncStore, 'instances' | 'operations' | 'transaction'>;
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
  /** Expiry, schedules and how open a security group may be. */
  guardrails: GuardrailsConfig;
  /** The time (tests move it). */
  clock?: (() => Date) | undefined;
  /** The free-tier guard every create and start passes (none: no guard). */
  freeTier?: FreeTierGuard | undefined;
  /**
   * How long a launch whose outcome is unknown is looked for by its client token before its request is
   * answered (ms; EC2 may not show a launch at once). Later syncs go on looking.
   */
  launchLookupMs?: number | undefined;
  /** How long after a launch EC2 not showing it proves nothing (ms; see consistency.ts). */
  consistencyWindowMs?: number | undefined;
}

/** What the free-tier meter says of one more running instance: go ahead, go ahead with a warning, or refuse (throws). */
export interface FreeTierGuard {
  /** Reads through `via`: the transaction admitting the operation. */
  admit(instance: { instanceType: string; storageGb: number }, via: Transaction): Promise<{ warning?: string | undefined }>;
  admitStart(instanceId: string, via: Transaction): Promise<{ warning?: string | undefined }>;
}

/**
 * A launch request with its guardrails settled when it is accepted: the expiry as a time, the schedule and
 * the action at expiry as they will be recorded (defaults applied). This is what the operation records and
 * what runs, on whichever replica.
 */
export type SettledLaunchRequest = Omit<CreateInstanceRequest, 'expires_at' | 'ttl_hours' | 'on_expiry' | 'schedule'> & {
  expires_at: string | null;
  on_expiry: 'stop' | 'terminate' | null;
  schedule: Schedule | null;
};

/** The request's guardrails, checked and settled: 400 for malformed values, 422 for what policy refuses. */
export function settleLaunchRequest(request: CreateInstanceRequest, guardrails: GuardrailsConfig, now: Date): SettledLaunchRequest {
  checkUserTags(request.tags);
  managedGroupRules(request, guardrails);
  if (request.expires_at !== undefined && request.ttl_hours !== undefined) {
    throw new ValidationError('The request body is invalid', [{ field: 'ttl_hours', message: 'give either expires_at or ttl_hours, not both' }]);
  }
  const schedule = request.schedule === undefined ? guardrails.defaultSchedule : (request.schedule as Schedule | null);
  if (request.schedule) {
    const problems = scheduleProblems(request.schedule as Schedule);
    if (problems.length > 0) throw new ValidationError('The schedule is invalid', problems);
  }
  const expiry = expiryFrom(request, { defaultTtlHours: guardrails.defaultTtlHours }, now);
  if (expiry !== null && (request.expires_at !== undefined || request.ttl_hours !== undefined)) {
    const problems = expiryProblems(expiry, now, guardrails.maxTtlHours);
    if (problems.length > 0) {
      throw new PolicyError('The expiry is outside the launch policy', problems.map((p) => ({
        ...p, field: request.ttl_hours !== undefined ? 'ttl_hours' : p.field,
      })));
    }
  }
  const { ttl_hours: _ttl, ...rest } = request;
  return {
    ...rest,
    expires_at: expiry === null ? null : expiry.toISOString(),
    on_expiry: expiry === null ? null : (request.on_expiry ?? guardrails.defaultOnExpiry),
    schedule,
  };
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
 * Script failures after which we KNOW nothing was launched: create_instance.sh refuses bad arguments (2) and
 * missing aws/jq (8) before it calls run-instances, EC2 refuses a missing key pair, image or group (3) before
 * it launches anything, and a script that could not be spawned did nothing. A not-found about the instance
 * itself (EC2's reads lagging behind the launch) is no such proof. Every other failure (timeout, throttling,
 * garbage output, a signal, …) may have happened after EC2 accepted the launch, so the outcome is "unknown"
 * and we look for the client token. A failure whose error document names the instance launched nothing
 * less: the launch happened.
 */
const NOTHING_LAUNCHED: ReadonlySet<ScriptFailure> = new Set(['invalid-argument', 'not-found', 'missing-dependency', 'spawn']);

function nothingLaunched(error: unknown): error is ScriptError {
  return error instanceof ScriptError && NOTHING_LAUNCHED.has(error.failure) && error.details.instanceId === undefined
    && !(error.details.code ?? '').startsWith('InvalidInstanceID');
}

/** How long an unknown launch is looked for by its token before its request is answered, by default. */
const LAUNCH_LOOKUP_MS = 30_000;
/** The pauses between the syncs that look again for what EC2 did not show yet (then start-up, or a sync, does). */
const SETTLE_LATER_PAUSES_MS = [15_000, 30_000, 60_000, 120_000, 240_000];

type ChangeKind = 'start' | 'stop' | 'terminate';

/** The state an instance shows from the moment an operation on it starts. */
const TRANSITIONAL: Record<ChangeKind, RecordedState> = {
  start: 'pending', stop: 'stopping', terminate: 'shutting-down',
};

const INTERRUPTED_NOTE = 'interrupted: the server stopped while this operation was in flight';

const EVERYTHING: RecoveryScope = { abandoned: () => true, local: () => true, note: INTERRUPTED_NOTE };

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
  const { engine, store, ec2, reconciler, changes, policy, logger } = deps;
  const { instances, operations } = store;
  const notifier = deps.notifier ?? silentNotifier;
  const present = (row: LaunchedRow): Instance => toApiInstance(row, deps.keyFiles);
  const clock = deps.clock ?? (() => new Date());
  const { freeTier } = deps;
  let currentSync: Promise<{ operationId: string; done: Promise<SyncCounts> }> | undefined;

  /** Announces a recorded change and hands the instance back, so call sites stay one expression. */
  const announce = (type: InstanceEventType, instance: Instance, ctx: OpContext): Instance => {
    notifier.notify({ type, instance, requestId: ctx.requestId, at: instance.updated_at });
    return instance;
  };
  const run = (ctx: OpContext, kind: keyof ScriptTimeouts): RunContext => runContextOf(ctx, deps.timeouts[kind]);
  /**
   * The context the operation's scripts run under: each one's process group is recorded on the operation,
   * in the order the scripts start and end (a later write never overtakes an earlier one).
   */
  const scriptsOf = (ctx: OpContext, operationId: string): OpContext => {
    let written: Promise<void> = Promise.resolve();
    return {
      ...ctx,
      onScript: (pgid) => {
        written = written.then(() => operations.setScriptGroup(operationId, pgid)).catch((error: unknown) => {
          logger.error('the process group of a script could not be recorded', {
            request_id: ctx.requestId, operation_id: operationId, process_group: pgid, error: String(error),
          });
        });
      },
    };
  };
  /** Client tokens of the launches accepted and not finished (their intent may not be recorded yet). */
  const launchesInFlight = async (tx: Transaction): Promise<string[]> =>
    (await tx.operations.unfinished()).flatMap((op) => (op.kind === 'create' && op.client_token ? [op.client_token] : []));
  /** Counting the launches and writing one happen one at a time, whichever server does them. */
  const QUOTA = 'launch-quota';

  /**
   * Validates and admits the launch, then runs it as an operation: resolve the image and security group,
   * record the intent, launch, record the result.
   */
  async function create(asked: CreateInstanceRequest, ctx: OpContext, options: MutationOptions<Instance> = {}): Promise<Submission<Instance>> {
    checkLaunchRequest(policy, asked); // 422 before anything is recorded
    const clientToken = clientTokenFor(ctx, options.idempotency);
    // Settled and judged once the engine knows this is no replay of an Idempotency-Key: a retry is answered
    // as the first attempt was, even after its expiry or with its own instance now counted in the free tier.
    let settled: SettledLaunchRequest | undefined;
    const settle = (): SettledLaunchRequest => (settled ??= settleLaunchRequest(asked, deps.guardrails, clock()));
    let warning: string | undefined;
    return engine.submit({
      kind: 'create',
      clientToken,
      ctx,
      // The quota counts a launch from the moment it is accepted, queued or running: creates sent together
      // never exceed it, and an asynchronous one is refused here, before its 202, rather than failing later.
      admit: async (tx) => {
        settle();
        await admitLaunch(tx, clientToken);
        warning = (await freeTier?.admit({ instanceType: asked.instance_type, storageGb: asked.storage_gb }, tx))?.warning;
        if (warning) options.onWarning?.(warning);
      },
      idempotency: options.idempotency,
      remember: options.remember,
      result: (instance) => instance,
      get request() {
        return settle();
      },
      run: async (op) => {
        if (warning) await op.note(warning);
        return launch(settle(), clientToken, scriptsOf(ctx, op.id), op);
      },
    });
  }

  /** An operation another server accepted and queued, run here from its record. */
  function runRecorded(row: OperationRow, op: OperationHandle): Promise<Instance> {
    const ctx = scriptsOf({ requestId: row.request_id ?? undefined, actor: row.actor ?? undefined, clientAddress: row.client_address ?? undefined }, row.id);
    if (row.kind === 'create') {
      if (row.request === null || row.client_token === null) throw new Error(`operation ${row.id} does not record its launch request`);
      return launch(JSON.parse(row.request) as SettledLaunchRequest, row.client_token, ctx, op);
    }
    if (row.kind === 'sync' || row.instance_id === null) throw new Error(`operation ${row.id} cannot be run from its record`);
    return runChange(row.kind, row.instance_id, ctx);
  }
  engine.runRecorded(runRecorded);

  /** What counts against MAX_INSTANCES besides the launch under `own` (a retry must not count itself). */
  async function launchesCounted(tx: Transaction, own: string, inFlight: Iterable<string>): Promise<number> {
    const tokens = new Set<string>(inFlight);
    for (const row of await tx.instances.live()) tokens.add(row.client_token);
    for (const row of await tx.instances.unresolvedLaunches()) tokens.add(row.client_token);
    tokens.delete(own);
    return tokens.size;
  }

  /**
   * Refuses (QuotaExceededError) a launch that would exceed MAX_INSTANCES, counting live records, unresolved
   * launches and the other launches accepted and not finished. A retry of a launch that reached EC2 launches
   * nothing: it answers with that instance.
   */
  async function admitLaunch(tx: Transaction, clientToken: string): Promise<void> {
    await tx.serialize(QUOTA);
    if ((await tx.instances.findByClientToken(clientToken))?.instance_id) return;
    checkInstanceQuota(await launchesCounted(tx, clientToken, await launchesInFlight(tx)), policy.maxInstances);
  }

  /**
   * The quota while the launch runs: before any script, and again right before the intent is written. The
   * launch was admitted with the others in flight counted; this catches what was recorded since, e.g. an import.
   */
  async function recheckQuota(tx: Transaction, clientToken: string): Promise<void> {
    await tx.serialize(QUOTA);
    checkInstanceQuota(await launchesCounted(tx, clientToken, []), policy.maxInstances);
  }

  /** The launch the create operation `op` runs. */
  async function launch(request: SettledLaunchRequest, clientToken: string, ctx: OpContext, op: OperationHandle): Promise<Instance> {
    const earlier = await instances.findByClientToken(clientToken);
    const answered = earlier ? await earlierAttempt(earlier, clientToken, ctx, op) : undefined;
    if (answered) return answered;
    await store.transaction((tx) => recheckQuota(tx, clientToken));
    const { image, securityGroupId } = await resolveImageAndGroup(request, ctx);
    await recordIntent(request, clientToken, { retry: earlier !== undefined, loginUser: loginUserFor(image), securityGroupId, owner: ctx.actor ?? null });
    const binding = bindWhenNamed(clientToken, ctx, op);
    try {
      const launched = await runLaunch(request, clientToken, { image, securityGroupId }, ctx, binding.onProgress);
      await binding.bound();
      return await recordLaunched(clientToken, launched, ctx, op);
    } catch (error) {
      await binding.bound();
      const launchedId = binding.instanceId ?? (error instanceof ScriptError ? error.details.instanceId : undefined);
      if (launchedId !== undefined) return await recordLaunchedButUnsettled(launchedId, error, clientToken, ctx, op);
      return await recordFailedLaunch(error, clientToken, ctx, op);
    } finally {
      binding.end();
    }
  }

  /**
   * Records the launch the moment EC2 names its instance, while the script still waits for it to run: the
   * operation holds the instance first (a stop or delete of it is refused, naming the launch), then the
   * record shows it, pending, in reads, lists and the event stream. Reads and syncs leave its state to the
   * launch until the launch has recorded its outcome (EC2 may not even show it yet).
   */
  function bindWhenNamed(clientToken: string, ctx: OpContext, op: OperationHandle) {
    let instanceId: string | undefined;
    let endChange: (() => void) | undefined;
    let bound: Promise<void> = Promise.resolve();
    return {
      onProgress(progress: ScriptProgress): void {
        if (progress.event !== 'launched' || progress.client_token !== clientToken || instanceId !== undefined) return;
        const id = progress.instance_id;
        instanceId = id;
        endChange = changes.begin(id);
        bound = (async () => {
          await op.setInstance(id);
          await instances.bindLaunch(clientToken, id, isoTime(progress.launch_time));
          logger.info('launch recorded as pending: EC2 named its instance', {
            request_id: ctx.requestId, operation_id: op.id, instance_id: id, client_token: clientToken,
          });
        })().catch((error: unknown) => {
          logger.error('the instance EC2 named for a launch could not be recorded yet; its outcome will be', {
            request_id: ctx.requestId, operation_id: op.id, instance_id: id, error: String(error),
          });
        });
      },
      get instanceId(): string | undefined {
        return instanceId;
      },
      bound: () => bound,
      end: () => endChange?.(),
    };
  }

  /**
   * EC2 launched the instance, but the script did not see it run: its wait ran out or was cut short, or the
   * instance became something else (e.g. terminated for want of capacity). The record takes what EC2 shows
   * now. A launch is a launch: unless the instance ended up other than pending or running, the create
   * succeeds with the state EC2 last showed, and the operation's note says why it is not running yet.
   */
  async function recordLaunchedButUnsettled(
    instanceId: string, error: unknown, clientToken: string, ctx: OpContext, op: OperationHandle,
  ): Promise<Instance> {
    await op.setInstance(instanceId);
    await instances.bindLaunch(clientToken, instanceId, null);
    let row = await recordOf(instances, instanceId);
    try {
      row = await instances.completeLaunch(clientToken, snapshotOf(await ec2.describeInstance(instanceId, run(ctx, 'describe'))));
    } catch (readError) {
      logger.info('the instance of a launch is not readable yet; its record stays pending', {
        request_id: ctx.requestId, instance_id: instanceId, error: String(readError),
      });
    }
    const why = error instanceof Error ? error.message : String(error);
    if (row.state !== 'pending' && row.state !== 'running') {
      const message = `EC2 launched ${instanceId}, but it became ${row.state} before it was running: ${why}`;
      throw error instanceof ScriptError ? new ScriptError(error.failure === 'incorrect-state' ? 'other' : error.failure, error.script, message, error.details) : error;
    }
    await op.note(`EC2 launched ${instanceId}; the launch's wait ended before it was running (${why}); the record shows what EC2 showed last (${row.state})`);
    logger.warn('launched, but not seen running: recorded as EC2 showed it', {
      request_id: ctx.requestId, instance_id: instanceId, state: row.state, error: why,
    });
    return announce('created', present(row), ctx);
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
      await op.setInstance(earlier.instance_id);
      return present(await refreshedOrAsRecorded(earlier as LaunchedRow, ctx));
    }
    const adopted = await adoptByToken(clientToken, ctx);
    if (!adopted) return undefined;
    logger.warn('an earlier attempt of this launch reached EC2; recorded its instance instead of launching again', {
      request_id: ctx.requestId, instance_id: adopted.instance_id, client_token: clientToken,
    });
    return await recordAdopted(adopted, ctx, op);
  }

  /** The AMI, which must exist and fit the instance type, and the security group when one is asked for. */
  async function resolveImageAndGroup(
    request: SettledLaunchRequest,
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
    const rules = managedGroupRules(request, deps.guardrails);
    if (rules) return { image, securityGroupId: await managedGroup(rules, ctx) };
    if (request.security_group_ids) {
      await checkExistingGroups(request.security_group_ids, ctx);
      return { image, securityGroupId: request.security_group_ids[0] ?? null };
    }
    return { image, securityGroupId: null };
  }

  /** The managed group for these rules, converged to exactly them. */
  async function managedGroup(rules: ManagedGroupRules, ctx: OpContext): Promise<string> {
    const name = managedGroupName(rules, (text) => createHash('sha256').update(text).digest('hex'));
    return (await ec2.ensureSecurityGroup({ name, sshCidrs: rules.sshCidrs, webCidrs: rules.webCidrs }, run(ctx, 'create'))).id;
  }

  /** Existing groups must exist, in the VPC the instance launches into (the region's default VPC). */
  async function checkExistingGroups(ids: readonly string[], ctx: OpContext): Promise<void> {
    let found: Awaited<ReturnType<Ec2['describeSecurityGroups']>>;
    try {
      found = await ec2.describeSecurityGroups([...ids], run(ctx, 'describe'));
    } catch (error) {
      if (error instanceof ScriptError && error.failure === 'not-found') {
        throw new PolicyError('A security group does not exist', [{ field: 'security_group_ids', message: error.message }]);
      }
      throw error;
    }
    const elsewhere = found.groups.filter((group) => group.vpc_id !== found.default_vpc_id);
    if (elsewhere.length > 0) {
      throw new PolicyError('A security group is in another VPC', elsewhere.map((group) => ({
        field: 'security_group_ids',
        message: `${group.id} is in ${group.vpc_id ?? 'no VPC'}, but the instance launches into the default VPC ${found.default_vpc_id ?? '(none)'}`,
      })));
    }
  }

  /** Intent first: if we die from here on, the row and its client token let reconciliation find the instance. */
  async function recordIntent(
    request: SettledLaunchRequest,
    clientToken: string,
    intent: { retry: boolean; loginUser: string; securityGroupId: string | null; owner: string | null },
  ): Promise<void> {
    await store.transaction(async (tx) => {
      await recheckQuota(tx, clientToken); // checked and written in one transaction
      if (intent.retry) {
        await tx.instances.relaunch(clientToken); // same row, same token, nothing reached EC2
        return;
      }
      await tx.instances.insertLaunch({
        clientToken,
        name: request.name,
        ami: request.ami,
        instanceType: request.instance_type,
        storageGb: request.storage_gb,
        keyName: deps.keyName,
        securityGroupId: intent.securityGroupId,
        loginUser: intent.loginUser,
        owner: intent.owner,
        tags: JSON.stringify(userTagsOf(request.tags ?? {})), // sorted, as sync records them
        expiresAt: request.expires_at,
        onExpiry: request.on_expiry,
        schedule: request.schedule === null ? null : JSON.stringify(request.schedule),
        scheduleSince: clock().toISOString(),
      });
    });
  }

  /** The script need not read the image again: its root device is what the new volume is sized on. */
  function runLaunch(
    request: SettledLaunchRequest,
    clientToken: string,
    resolved: { image: Ec2Image; securityGroupId: string | null },
    ctx: OpContext,
    onProgress: (progress: ScriptProgress) => void,
  ): Promise<Ec2Instance> {
    return ec2.createInstance(
      {
        name: request.name,
        ami: request.ami,
        instanceType: request.instance_type,
        storageGb: request.storage_gb,
        keyName: deps.keyName,
        clientToken,
        securityGroupIds: request.security_group_ids ? [...request.security_group_ids]
          : resolved.securityGroupId ? [resolved.securityGroupId] : undefined,
        rootDevice: resolved.image.root_device_name,
        tags: request.tags,
        owner: ctx.actor,
        expiresAt: request.expires_at,
      },
      { ...run(ctx, 'create'), onProgress },
    );
  }

  async function recordLaunched(clientToken: string, launched: Ec2Instance, ctx: OpContext, op: OperationHandle): Promise<Instance> {
    await op.setInstance(launched.id);
    return announce('created', present(await instances.completeLaunch(clientToken, snapshotOf(launched))), ctx);
  }

  /**
   * A launch script that failed. When it cannot have launched anything, the launch is failed; otherwise its
   * outcome is unknown, and EC2 is asked for the client token: an instance found is recorded, never orphaned.
   * Throws the script's failure unless EC2 has the instance.
   */
  async function recordFailedLaunch(error: unknown, clientToken: string, ctx: OpContext, op: OperationHandle): Promise<Instance> {
    const message = error instanceof Error ? error.message : String(error);
    if (nothingLaunched(error)) {
      await instances.failLaunch(clientToken, 'failed', message);
      if (error.failure === 'not-found') throw new ScriptError('other', error.script, refusedLaunchMessage(error), error.details);
      throw error;
    }
    await instances.failLaunch(clientToken, 'unknown', message);
    const lookupMs = deps.launchLookupMs ?? LAUNCH_LOOKUP_MS;
    for (const pauseMs of [0, ...backoffPauses(lookupMs)]) {
      if (pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, pauseMs));
      try {
        const adopted = await adoptByToken(clientToken, ctx);
        if (adopted) {
          logger.warn('launch script failed but EC2 has the instance; recorded it', {
            request_id: ctx.requestId, instance_id: adopted.instance_id, client_token: clientToken, error: message,
          });
          return await recordAdopted(adopted, ctx, op);
        }
      } catch (lookupError) {
        logger.warn('could not look for the launch by client token', {
          request_id: ctx.requestId, client_token: clientToken, error: String(lookupError),
        });
      }
    }
    settleLater(ctx);
    const unknown = `The outcome of the launch is not known: ${message}. EC2 showed no instance with its client token `
      + `${clientToken} within ${Math.round(lookupMs / 1000)} s (its reads can lag behind a launch); the launch stays counted `
      + 'against MAX_INSTANCES and is recorded as soon as EC2 shows it (later syncs and start-up look for it). Retry with the '
      + 'same Idempotency-Key to resume it without a second launch.';
    logger.warn('the outcome of a launch is not known yet', { request_id: ctx.requestId, client_token: clientToken, error: message });
    throw error instanceof ScriptError ? new ScriptError(error.failure, error.script, unknown, error.details) : error;
  }

  /** What EC2's refusal of a launch means, in the words of what it refused. */
  function refusedLaunchMessage(error: ScriptError): string {
    const code = error.details.code ?? '';
    if (code.startsWith('InvalidKeyPair')) return `EC2 refused the launch: ${error.message} (is KEY_NAME=${deps.keyName} a key pair in this region?)`;
    return `EC2 refused the launch: ${error.message}`;
  }

  /** The record refreshed from EC2; as recorded when EC2 cannot be read (or does not show it yet). */
  async function refreshedOrAsRecorded(row: LaunchedRow, ctx: OpContext): Promise<LaunchedRow> {
    if (row.state === 'terminated') return row;
    try {
      return await instances.refresh(snapshotOf(await ec2.describeInstance(row.instance_id, run(ctx, 'describe'))));
    } catch (error) {
      logger.debug('could not refresh the record of an earlier attempt', { request_id: ctx.requestId, instance_id: row.instance_id, error: String(error) });
      return row;
    }
  }

  let settling: NodeJS.Timeout | undefined;
  /**
   * Looks again, by syncs with growing pauses, for what EC2 did not show yet: launches left unresolved, and
   * records it does not show yet. Stops once nothing is left to find, the pauses are used up, or the server
   * shuts down (start-up looks again).
   */
  function settleLater(ctx: OpContext, pauses: readonly number[] = SETTLE_LATER_PAUSES_MS): void {
    if (settling || pauses.length === 0) return;
    const [pause, ...rest] = pauses as [number, ...number[]];
    settling = setTimeout(() => {
      settling = undefined;
      void (async () => {
        if (engine.draining) return;
        const counts = await (await sync({ requestId: ctx.requestId })).done;
        if (counts.unconfirmed > 0 || (await instances.unresolvedLaunches()).length > 0) settleLater(ctx, rest);
      })().catch((error: unknown) => {
        logger.warn('a sync looking for what EC2 did not show yet failed; looking again later', { request_id: ctx.requestId, error: String(error) });
        if (!engine.draining) settleLater(ctx, rest);
      });
    }, pause);
    settling.unref();
  }

  /** The instance EC2 launched under `clientToken`, recorded on its launch; undefined when EC2 has none. */
  async function adoptByToken(clientToken: string, ctx: OpContext): Promise<LaunchedRow | undefined> {
    const { instances: found } = await ec2.listInstances({ all: true }, run(ctx, 'describe'));
    const match = found.find((i) => i.client_token === clientToken);
    return match ? await instances.completeLaunch(clientToken, snapshotOf(match)) : undefined;
  }

  async function recordAdopted(adopted: LaunchedRow, ctx: OpContext, op: OperationHandle): Promise<Instance> {
    await op.setInstance(adopted.instance_id);
    await op.note(`an earlier attempt had reached EC2: instance ${adopted.instance_id} found by its client token, not launched again`);
    return announce('created', present(adopted), ctx);
  }

  /**
   * The record a change may run on: NotFoundError without one, ConflictError when it is terminated (only a
   * terminate may run on one again). Checked before anything is recorded, and again when the operation
   * runs: a read may have found the instance gone from EC2 while the operation waited in line.
   */
  async function changeable(kind: ChangeKind, instanceId: string): Promise<LaunchedRow> {
    const row = await recordOf(instances, instanceId);
    if (kind !== 'terminate' && row.state === 'terminated') {
      throw new ConflictError(`Instance ${instanceId} is terminated; it cannot ${kind}`);
    }
    return row;
  }

  async function change(kind: ChangeKind, instanceId: string, ctx: OpContext, options: MutationOptions<Instance> = {}): Promise<Submission<Instance>> {
    await changeable(kind, instanceId); // 404 or 409 before anything is recorded
    let warning: string | undefined;
    return engine.submit({
      kind,
      instanceId,
      ctx,
      idempotency: options.idempotency,
      remember: options.remember,
      result: (instance) => instance,
      admit: kind === 'start' && freeTier ? async (tx) => {
        warning = (await freeTier.admitStart(instanceId, tx)).warning;
        if (warning) options.onWarning?.(warning);
      } : undefined,
      run: async (op) => {
        if (warning) await op.note(warning);
        return runChange(kind, instanceId, scriptsOf(ctx, op.id));
      },
    });
  }

  function runChange(kind: ChangeKind, instanceId: string, ctx: OpContext): Promise<Instance> {
    return kind === 'terminate' ? terminate(instanceId, ctx) : startOrStop(kind, instanceId, ctx);
  }

  /**
   * After a failed change the record must not keep the transitional state it showed: re-read EC2
   * (reconcile), and when even that fails, put back the state recorded before the operation.
   */
  async function reconcileAfterFailure(instanceId: string, before: RecordedState, ctx: OpContext): Promise<void> {
    try {
      await instances.refresh(snapshotOf(await ec2.describeInstance(instanceId, run(ctx, 'describe'))));
    } catch (error) {
      if (error instanceof ScriptError && error.failure === 'not-found' && !(await unseenYet(instanceId))) {
        await instances.markTerminated(instanceId, GONE_FROM_EC2);
        return;
      }
      logger.debug('refresh after failure did not succeed', { request_id: ctx.requestId, instance_id: instanceId, error: String(error) });
      await instances.setState(instanceId, before);
    }
  }

  /** Whether EC2 may simply not show the instance yet: it was launched moments ago (see consistency.ts). */
  async function unseenYet(instanceId: string): Promise<boolean> {
    const row = await instances.findByInstanceId(instanceId);
    return row !== undefined && mayBeUnseen(row, deps.consistencyWindowMs);
  }

  /**
   * EC2 said it does not know the instance. Just after its launch that proves nothing (the change is refused
   * as one that will pass, the record kept as it was); later it means the instance is gone.
   */
  async function notKnownToEc2(instanceId: string, before: RecordedState, doing: string): Promise<never> {
    if (await unseenYet(instanceId)) {
      await instances.setState(instanceId, before);
      throw new IncorrectStateError(`EC2 does not show ${instanceId} yet (it was launched moments ago, and EC2's reads lag behind a launch): retry shortly to ${doing} it`);
    }
    await instances.markTerminated(instanceId, GONE_FROM_EC2);
    throw new ConflictError(`Instance ${instanceId} no longer exists in EC2; its record is now terminated`);
  }

  /** EC2's IncorrectInstanceState, in its own words, as the 409 that passes once the transition is over. */
  function refusedForState(error: ScriptError, doing: string, instanceId: string): IncorrectStateError {
    return new IncorrectStateError(`EC2 refused to ${doing} ${instanceId}: ${error.message}`);
  }

  /** A change whose first write was refused has not begun: readers must not wait for it. */
  async function endingOnFailure(endChange: () => void, write: () => Promise<unknown>): Promise<void> {
    try {
      await write();
    } catch (error) {
      endChange();
      throw error;
    }
  }

  async function startOrStop(kind: 'start' | 'stop', instanceId: string, ctx: OpContext): Promise<Instance> {
    const before = (await changeable(kind, instanceId)).state;
    const endChange = changes.begin(instanceId);
    await endingOnFailure(endChange, () => instances.setState(instanceId, TRANSITIONAL[kind]));
    try {
      const result = kind === 'start'
        ? await ec2.startInstance(instanceId, run(ctx, 'start'))
        : await ec2.stopInstance(instanceId, run(ctx, 'stop'));
      return announce(kind === 'start' ? 'started' : 'stopped', present(await instances.refresh(snapshotOf(result))), ctx);
    } catch (error) {
      if (error instanceof ScriptError && error.failure === 'not-found') return await notKnownToEc2(instanceId, before, kind);
      await reconcileAfterFailure(instanceId, before, ctx);
      if (error instanceof ScriptError && error.failure === 'incorrect-state') throw refusedForState(error, kind, instanceId);
      if (error instanceof ScriptError && error.failure === 'conflict') {
        throw new ConflictError(`Instance ${instanceId} cannot ${kind} in its current state: ${error.message}`);
      }
      throw error;
    } finally {
      endChange();
    }
  }

  async function terminate(instanceId: string, ctx: OpContext): Promise<Instance> {
    const before = (await changeable('terminate', instanceId)).state;
    const endChange = changes.begin(instanceId);
    if (before !== 'terminated') await endingOnFailure(endChange, () => instances.setState(instanceId, TRANSITIONAL.terminate));
    try {
      const result = await ec2.destroyInstance(instanceId, run(ctx, 'terminate'));
      await instances.refresh(snapshotOf(result));
      // shutting-down only ever leads to terminated: the record says so now, so lists stop showing it.
      return announce('terminated', present(await instances.markTerminated(instanceId, null)), ctx);
    } catch (error) {
      if (error instanceof ScriptError && error.failure === 'not-found') {
        // AWS: NotFound after TerminateInstances does not mean the instance is, or will be, terminated.
        if (await unseenYet(instanceId)) return await notKnownToEc2(instanceId, before, 'terminate');
        return present(await instances.markTerminated(instanceId, GONE_FROM_EC2));
      }
      if (before !== 'terminated') await reconcileAfterFailure(instanceId, before, ctx);
      if (error instanceof ScriptError && error.failure === 'incorrect-state') throw refusedForState(error, 'terminate', instanceId);
      if (error instanceof ScriptError && error.failure === 'conflict') {
        throw new ConflictError(`Instance ${instanceId} cannot be destroyed: ${error.message}`);
      }
      throw error;
    } finally {
      endChange();
    }
  }

  async function sync(ctx: OpContext): Promise<{ operationId: string; done: Promise<SyncCounts>; shared: boolean }> {
    if (currentSync) {
      const joined = await currentSync;
      logger.debug('sync joined the one in flight', { request_id: ctx.requestId, operation_id: joined.operationId });
      return { ...joined, shared: true };
    }
    // Claimed before the first await: a second sync asked for meanwhile joins this one.
    const starting = (async () => {
      const submission = await engine.submit<SyncCounts>({
        kind: 'sync',
        capped: false,
        ctx,
        run: () => reconciler.syncOnce(ctx),
        result: (counts) => counts,
      });
      if (submission.type !== 'started') throw new Error('a sync without an idempotency key always starts');
      return { operationId: submission.operation.id, done: submission.done };
    })();
    currentSync = starting;
    const clear = () => {
      if (currentSync === starting) currentSync = undefined;
    };
    starting.then((flight) => flight.done.then(clear, clear), clear);
    return { ...(await starting), shared: false };
  }

  return {
    create,
    start: (instanceId, ctx, options) => change('start', instanceId, ctx, options),
    stop: (instanceId, ctx, options) => change('stop', instanceId, ctx, options),
    destroy: (instanceId, ctx, options) => change('terminate', instanceId, ctx, options),
    sync,
    operation: (id) => engine.get(id),

    recover(ctx, scope = EVERYTHING) {
      // The server takes no request before `settled`, so what the store says about work in flight
      // (interrupted, or a script still running) is in place before any request reads it.
      const settled = (async () => {
        const abandoned = await engine.recoverAbandoned(scope.note, (op) => scope.abandoned(op));
        await engine.purgeIdempotencyKeys();
        return { abandoned, watched: await findOrphans(ctx, scope) };
      })();
      return { settled: settled.then(() => undefined), done: settled.then(({ abandoned, watched }) => reconcileAtStartUp(ctx, abandoned, watched)) };
    },
  };

  async function reconcileAtStartUp(
    ctx: OpContext,
    abandoned: OperationRow[],
    watched: Array<{ op: OperationRow; orphan: OrphanScript; deadlineMs: number; boundMs: number }>,
  ): Promise<void> {
    // Also after a clean shutdown that had to interrupt something: records left in a transitional state,
    // and launches left without an instance id (they count against MAX_INSTANCES until resolved).
    const launches = await instances.unresolvedLaunches();
    const transitional = (await instances.live()).some((row) => ['pending', 'stopping', 'shutting-down'].includes(row.state));
    if (abandoned.length === 0 && watched.length === 0 && launches.length === 0 && !transitional) return;

    // What a script that outlived the server did can only be judged once it has ended.
    const outcomes = new Map<string, string>();
    await Promise.all(watched.map(async ({ op, orphan, deadlineMs, boundMs }) => {
      const outcome = await (deps.orphans as OrphanScripts).settle(orphan, deadlineMs);
      if (outcome !== 'unstoppable') await operations.setScriptGroup(op.id, null);
      outcomes.set(op.id, orphanNote(orphan.pgid, outcome, boundMs));
      const line = { request_id: ctx.requestId, operation_id: op.id, process_group: orphan.pgid, script: orphan.script, outcome };
      if (outcome === 'unstoppable') logger.error('the script that outlived the previous server could not be stopped', line);
      else logger.info('the script that outlived the previous server is done', line);
    }));

    let failure: string | undefined;
    try {
      const counts = await freshSync(ctx);
      // What EC2 did not show yet (a launch moments before the crash) is looked for again, not given up.
      if (counts.unconfirmed > 0) settleLater(ctx);
    } catch (error) {
      failure = error instanceof Error ? error.message : String(error);
    }

    const noted = new Map<string, OperationRow>();
    for (const op of [...abandoned, ...watched.map((w) => w.op)]) noted.set(op.id, op);
    for (const op of noted.values()) {
      const parts = [op.note ?? INTERRUPTED_NOTE];
      const script = outcomes.get(op.id);
      if (script) parts.push(script);
      parts.push(failure === undefined ? await resolution(op) : `reconciliation at start-up failed: ${failure}`);
      await operations.setNote(op.id, parts.join('; '));
    }

    const after = await Promise.all(launches.map((launch) => instances.findByClientToken(launch.client_token)));
    logger.info('start-up recovery done', {
      request_id: ctx.requestId,
      interrupted: abandoned.map((o) => o.id),
      orphaned_scripts: watched.map((w) => w.orphan.pgid),
      launches_recorded: after.flatMap((row) => (row?.instance_id ? [row.instance_id] : [])),
      launches_failed: after.flatMap((row) => (row && !row.instance_id && row.launch_status === 'failed' ? [row.client_token] : [])),
      reconciliation_failed: failure,
    });
  }

  /**
   * Operations whose script may have outlived the previous server. A recorded process group that is gone, or
   * that now belongs to something else, is cleared at once; one that is still our script stays recorded (so
   * a retry of the same request waits) and is watched until it ends or its time bound runs out.
   */
  async function findOrphans(ctx: OpContext, scope: RecoveryScope): Promise<Array<{ op: OperationRow; orphan: OrphanScript; deadlineMs: number; boundMs: number }>> {
    const watched = [];
    for (const op of await operations.withScriptGroup()) {
      if (!scope.abandoned(op)) continue; // a live server's script, on whatever machine
      const pgid = op.script_pgid as number;
      if (!scope.local(op)) {
        await operations.setScriptGroup(op.id, null);
        await operations.setNote(op.id, `${op.note ?? scope.note}; its script (process group ${pgid}) ran on another machine and cannot be watched from here`);
        continue;
      }
      const orphan = deps.orphans?.find(pgid, Date.parse(op.started_at ?? op.created_at));
      if (!orphan) {
        await operations.setScriptGroup(op.id, null);
        continue;
      }
      const boundMs = deps.timeouts[SCRIPT_KIND[op.kind]];
      const deadlineMs = orphan.startedAtMs + boundMs; // when the dead server's runner would have killed it
      const waitMs = Math.max(0, Math.round(deadlineMs - Date.now()));
      await operations.setNote(op.id, `${op.note ?? INTERRUPTED_NOTE}; the script (process group ${pgid}) outlived the server: waiting up to ${waitMs} ms for it before judging what it did`);
      logger.warn('a script outlived the previous server; waiting for it', {
        request_id: ctx.requestId, operation_id: op.id, process_group: pgid, script: orphan.script, wait_ms: waitMs,
      });
      watched.push({ op, orphan, deadlineMs, boundMs });
    }
    return watched;
  }

  /** A sync that read EC2 after now: one already in flight may have read it before the orphans ended. */
  async function freshSync(ctx: OpContext): Promise<SyncCounts> {
    const flight = await sync(ctx);
    if (!flight.shared) return await flight.done;
    await flight.done.catch(() => undefined);
    return await (await sync(ctx)).done;
  }

  /** What start-up reconciliation found for an interrupted operation: only what is known. */
  async function resolution(op: OperationRow): Promise<string> {
    if (op.kind === 'create' && op.client_token) {
      const row = await instances.findByClientToken(op.client_token);
      if (!row) return 'reconciled at start-up: it had not started a launch';
      if (row.instance_id) {
        await operations.setInstance(op.id, row.instance_id);
        return `reconciled at start-up: EC2 had the launch (found by its client token), recorded as ${row.instance_id} (${row.state})`;
      }
      if (row.launch_status === 'failed') {
        return 'reconciled at start-up: no instance carries its client token, nothing was launched';
      }
      return 'reconciled at start-up: no instance carries its client token yet; the launch stays unresolved until a sync finds it or gives it up';
    }
    if (op.instance_id) {
      return `reconciled at start-up: the instance is ${(await instances.findByInstanceId(op.instance_id))?.state ?? 'unknown'}`;
    }
    return 'reconciled at start-up';
  }
}
