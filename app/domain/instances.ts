/**
 * The instances service: launch policy, recording intent before a launch, refreshing records from EC2,
 * and turning the EC2 layer's failures into domain outcomes. Knows nothing of HTTP.
 */
import { randomUUID } from 'node:crypto';
import { DEFAULT_MAX_INSTANCES } from '../auth/config.js';
import type { Ec2 } from '../ec2/scripts.js';
import type { RunContext } from '../ec2/runner.js';
import type { Logger } from '../logger.js';
import { silentNotifier, type InstanceEventType, type Notifier } from '../notify/events.js';
import type { Instance, InstanceList } from '../schemas/instance.js';
import type { CreateInstanceRequest, ListInstancesQuery } from '../schemas/requests.js';
import { DEFAULT_PAGE_SIZE } from '../schemas/requests.js';
import type { Ec2Instance } from '../schemas/script-outputs.js';
import { DEFAULT_MAX_CONCURRENT_READS, type ScriptTimeouts } from '../config.js';
import type { Ec2Snapshot, InstancesRepository, LaunchedRow, RecordedState } from '../store/instances-repo.js';
import { ConflictError, NotFoundError, PolicyError, ScriptError, ValidationError, type ScriptFailure } from './errors.js';
import type { OpContext } from './context.js';
import { loginUserFor, sshString } from './login-user.js';
import { decodeCursor, pageOf } from './pagination.js';
import {
  checkImageFits, checkInstanceQuota, checkLaunchRequest, type LaunchPolicy,
} from './policy.js';

export interface InstancesServiceDeps {
  instances: InstancesRepository;
  ec2: Ec2;
  policy: LaunchPolicy & { keyName: string };
  logger: Logger;
  /** Told after each recorded lifecycle change; never awaited. */
  notifier?: Notifier;
  /** Runner timeout per script kind (ms); the runner's default where unset. */
  timeouts?: Partial<ScriptTimeouts> | undefined;
  /** Read scripts (describe) running at once; DEFAULT_MAX_CONCURRENT_READS when unset. */
  maxConcurrentReads?: number | undefined;
}


/** Where the changes of one instance stood when a read of EC2 began (see ChangeWatch). */
export interface ChangeMark {
  readonly active: boolean;
  readonly seq: number;
}

/**
 * Changes of instances under way. A reader of EC2 takes a mark before it reads; what it read may be recorded
 * as the instance's state only if no change of the instance ran at any moment since: the transitional state a
 * change shows, and the outcome it records, are newer than what EC2 told that reader.
 */
export interface ChangeWatch {
  mark(instanceId: string): ChangeMark;
  mayRecordState(instanceId: string, mark: ChangeMark): boolean;
}

/** How the operations engine drives a launch. */
export interface LaunchOptions {
  /** The EC2 ClientToken (derived from the Idempotency-Key, or made by the caller); one is made when absent. */
  clientToken?: string | undefined;
  /** Told the instance id as soon as EC2 gave one. */
  onInstance?: ((instanceId: string) => void) | undefined;
  /** Told when the launch was found in EC2 by its client token instead of launched (again). */
  onAdopted?: ((instanceId: string) => void) | undefined;
}


/**
 * Script failures after which we KNOW nothing was launched: create_instance.sh refuses bad arguments (2),
 * missing key pair/AMI (3) and missing aws/jq (8) before it calls run-instances, and a script that could
 * not be spawned did nothing. Every other failure (timeout, throttling, garbage output, a signal, …) may
 * have happened after EC2 accepted the launch, so the outcome is "unknown" and we look for the client token.
 */
const NOTHING_LAUNCHED: ReadonlySet<ScriptFailure> = new Set(['invalid-argument', 'not-found', 'missing-dependency', 'spawn']);

/** Unresolved launches older than this with no instance carrying their token are marked failed. */
export const GIVE_UP_AFTER_MS = 15 * 60 * 1000;

export function toApiInstance(row: LaunchedRow): Instance {
  return {
    id: row.instance_id,
    name: row.name,
    state: row.state === 'failed' ? 'terminated' : row.state,
    public_ip: row.public_ip,
    private_ip: row.private_ip,
    ssh_string: sshString(row),
    ami: row.ami,
    instance_type: row.instance_type,
    storage_gb: row.storage_gb,
    key_name: row.key_name,
    security_group_id: row.security_group_id,
    backend_used: 'awscli',
    launch_time: row.launch_time,
    created_at: row.created_at,
    updated_at: row.updated_at,
  };
}

export function snapshotOf(instance: Ec2Instance): Ec2Snapshot {
  return {
    instanceId: instance.id,
    name: instance.name,
    state: instance.state,
    publicIp: instance.public_ip,
    privateIp: instance.private_ip,
    storageGb: instance.storage_gb,
    keyName: instance.key_name,
    securityGroupId: instance.security_group_ids[0] ?? null,
    launchTime: normaliseTime(instance.launch_time),
  };
}

/** EC2 reports "2024-05-01T10:00:00+00:00" or "...000Z"; we answer ISO 8601 UTC with milliseconds. */
function normaliseTime(value: string): string | null {
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? null : new Date(ms).toISOString();
}

export { decodeCursor, encodeCursor } from './pagination.js';

export interface InstancesService {
  create(request: CreateInstanceRequest, ctx?: OpContext, launch?: LaunchOptions): Promise<Instance>;
  get(instanceId: string, ctx?: OpContext): Promise<Instance>;
  list(query: ListInstancesQuery): InstanceList;
  start(instanceId: string, ctx?: OpContext): Promise<Instance>;
  stop(instanceId: string, ctx?: OpContext): Promise<Instance>;
  /** Terminates; resolves with the record (now terminated). */
  destroy(instanceId: string, ctx?: OpContext): Promise<Instance>;
  /** The record, or NotFoundError (no script runs). */
  recorded(instanceId: string): Instance;
  /** Resolves launches left unknown by a crash or an indefinite failure, by their client token. */
  reconcileLaunches(ctx?: OpContext): Promise<{ adopted: string[]; failed: string[] }>;
  /**
   * Refuses (QuotaExceededError) a launch under `clientToken` that would exceed MAX_INSTANCES, counting live
   * records, unresolved launches and the launches in flight that `inFlight` names; synchronous, no script runs.
   */
  admitLaunch(clientToken: string, inFlight: Iterable<string>): void;
  /** Changes of instances under way, for readers of EC2 that must not put back an older state. */
  readonly changes: ChangeWatch;
}

/** At most `max` at once; the others wait, first in first out, however many (never refused). */
function fifoSlots(max: number) {
  let busy = 0;
  const waiting: Array<() => void> = [];
  return async <T>(onWait: (queued: number) => void, work: () => Promise<T>): Promise<T> => {
    if (busy < max) {
      busy += 1;
    } else {
      await new Promise<void>((resolve) => {
        waiting.push(resolve);
        onWait(waiting.length);
      });
    }
    try {
      return await work();
    } finally {
      const next = waiting.shift();
      if (next) next(); // the slot passes straight to the next in line
      else busy -= 1;
    }
  };
}

export function createInstancesService(deps: InstancesServiceDeps): InstancesService {
  const { instances, ec2, policy, logger } = deps;
  const notifier = deps.notifier ?? silentNotifier;
  /** Announces a recorded change and hands the instance back, so call sites stay one expression. */
  const announce = (type: InstanceEventType, instance: Instance, ctx?: OpContext): Instance => {
    notifier.notify({ type, instance, requestId: ctx?.requestId, at: instance.updated_at });
    return instance;
  };
  type ScriptKind = keyof ScriptTimeouts;
  const run = (ctx: OpContext | undefined, kind: ScriptKind = 'describe'): RunContext => ({
    requestId: ctx?.requestId,
    timeoutMs: deps.timeouts?.[kind],
    onProcessGroup: ctx?.onScript,
  });

  function recordOrNotFound(instanceId: string): LaunchedRow {
    const row = instances.findByInstanceId(instanceId);
    if (!row) throw new NotFoundError(`No instance ${instanceId} is recorded by this service`);
    return row;
  }

  // Per instance: how many changes run now, and the sequence number of the latest start or end of one
  // (kept after the change: a read that began before it must still see that it happened).
  const changing = new Map<string, { active: number; seq: number }>();
  let changeSeq = 0;
  function beginChange(instanceId: string): () => void {
    const entry = changing.get(instanceId) ?? { active: 0, seq: 0 };
    changing.set(instanceId, entry);
    entry.active += 1;
    entry.seq = ++changeSeq;
    return () => {
      entry.active -= 1;
      entry.seq = ++changeSeq;
    };
  }
  const changes: ChangeWatch = {
    mark(instanceId) {
      const entry = changing.get(instanceId);
      return { active: (entry?.active ?? 0) > 0, seq: entry?.seq ?? 0 };
    },
    mayRecordState(instanceId, mark) {
      const entry = changing.get(instanceId);
      return !mark.active && (entry?.active ?? 0) === 0 && (entry?.seq ?? 0) === mark.seq;
    },
  };

  const maxInstances = policy.maxInstances ?? DEFAULT_MAX_INSTANCES;
  /** What counts against MAX_INSTANCES besides the launch under `own` (a retry must not count itself). */
  function launchesCounted(own: string, inFlight: Iterable<string>): number {
    const tokens = new Set<string>(inFlight);
    for (const row of instances.live()) tokens.add(row.client_token);
    for (const row of instances.unresolvedLaunches()) tokens.add(row.client_token);
    tokens.delete(own);
    return tokens.size;
  }

  // Reads of EC2: concurrent reads of one instance share one describe, and describes of different instances
  // wait in line behind their own cap, so a burst of reads neither floods AWS nor takes a slot from a change.
  const maxConcurrentReads = deps.maxConcurrentReads ?? DEFAULT_MAX_CONCURRENT_READS;
  const readSlot = fifoSlots(maxConcurrentReads);
  const describing = new Map<string, Promise<LaunchedRow>>();

  async function readThrough(instanceId: string, ctx?: OpContext): Promise<LaunchedRow> {
    const mark = changes.mark(instanceId);
    let described: Ec2Instance;
    try {
      described = await readSlot(
        (queued) => logger.debug('read waits for a free read slot', {
          request_id: ctx?.requestId, instance_id: instanceId, max_concurrent_reads: maxConcurrentReads, queued,
        }),
        () => ec2.describeInstance(instanceId, run(ctx)),
      );
    } catch (error) {
      if (error instanceof ScriptError && error.failure === 'not-found') {
        // While a change runs, it judges what became of the instance; until then the record answers.
        if (!changes.mayRecordState(instanceId, mark)) return recordOrNotFound(instanceId);
        return instances.markTerminated(instanceId, 'EC2 no longer knows this instance');
      }
      throw error;
    }
    const snapshot = snapshotOf(described);
    if (changes.mayRecordState(instanceId, mark)) return instances.refresh(snapshot);
    const kept = recordOrNotFound(instanceId).state as Ec2Snapshot['state']; // a launched record is never "failed"
    logger.debug('read kept the state set by a change of the instance', {
      request_id: ctx?.requestId, instance_id: instanceId, state: kept, ec2_state: snapshot.state,
    });
    return instances.refresh({ ...snapshot, state: kept });
  }

  async function adoptByToken(clientToken: string, ctx?: OpContext): Promise<LaunchedRow | undefined> {
    const { instances: found } = await ec2.listInstances({ all: true }, run(ctx));
    const match = found.find((i) => i.client_token === clientToken);
    return match ? instances.completeLaunch(clientToken, snapshotOf(match)) : undefined;
  }

  /**
   * After a failed change the record must not keep the transitional state it showed: re-read EC2
   * (reconcile), and when even that fails, put back the state recorded before the operation.
   */
  async function reconcileAfterFailure(instanceId: string, before: RecordedState, ctx?: OpContext): Promise<void> {
    try {
      instances.refresh(snapshotOf(await ec2.describeInstance(instanceId, run(ctx))));
    } catch (error) {
      if (error instanceof ScriptError && error.failure === 'not-found') {
        instances.markTerminated(instanceId, 'EC2 no longer knows this instance');
        return;
      }
      logger.debug('refresh after failure did not succeed', { request_id: ctx?.requestId, instance_id: instanceId, error: String(error) });
      instances.setState(instanceId, before);
    }
  }

  /** The state an instance shows from the moment an operation on it starts. */
  const TRANSITIONAL: Record<'start' | 'stop' | 'terminate', RecordedState> = {
    start: 'pending', stop: 'stopping', terminate: 'shutting-down',
  };

  async function change(kind: 'start' | 'stop', instanceId: string, ctx?: OpContext): Promise<Instance> {
    const row = recordOrNotFound(instanceId);
    if (row.state === 'terminated') throw new ConflictError(`Instance ${instanceId} is terminated; it cannot ${kind}`);
    const before = row.state;
    const endChange = beginChange(instanceId);
    instances.setState(instanceId, TRANSITIONAL[kind]);
    try {
      const result = kind === 'start'
        ? await ec2.startInstance(instanceId, run(ctx, 'start'))
        : await ec2.stopInstance(instanceId, run(ctx, 'stop'));
      return announce(kind === 'start' ? 'started' : 'stopped', toApiInstance(instances.refresh(snapshotOf(result))), ctx);
    } catch (error) {
      if (error instanceof ScriptError && error.failure === 'not-found') {
        instances.markTerminated(instanceId, 'EC2 no longer knows this instance');
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

  return {
    async create(request, ctx, launch = {}) {
      checkLaunchRequest(policy, request);
      // A retry under the same client token (Idempotency-Key, or a launch interrupted
      // by a crash). If the first attempt got as far as EC2, its instance carries the token: never launch twice.
      const clientToken = launch.clientToken ?? `ec2c-${randomUUID()}`;
      const earlier = instances.findByClientToken(clientToken);
      if (earlier?.instance_id) {
        launch.onInstance?.(earlier.instance_id);
        return toApiInstance(earlier as LaunchedRow);
      }
      if (earlier) {
        const adopted = await adoptByToken(clientToken, ctx);
        if (adopted) {
          logger.warn('an earlier attempt of this launch reached EC2; recorded its instance instead of launching again', {
            request_id: ctx?.requestId, instance_id: adopted.instance_id, client_token: clientToken,
          });
          launch.onInstance?.(adopted.instance_id);
          launch.onAdopted?.(adopted.instance_id);
          return announce('created', toApiInstance(adopted), ctx);
        }
      }
      // The live-instance quota, before any script runs, and again (synchronously)
      // right before the intent row is written. A launch accepted as an operation was admitted already, with
      // the others in flight counted (admitLaunch); these checks catch what was recorded since, e.g. an import.
      const checkQuota = (): void => checkInstanceQuota(launchesCounted(clientToken, []), maxInstances);
      checkQuota();

      let image;
      try {
        image = await ec2.describeImage(request.ami, run(ctx));
      } catch (error) {
        if (error instanceof ScriptError && error.failure === 'not-found') {
          throw new PolicyError('The AMI does not exist', [{ field: 'ami', message: `${request.ami} does not exist or is not visible to this account` }]);
        }
        throw error;
      }
      checkImageFits(image, request.instance_type);

      let securityGroupId: string | null = null;
      if (request.create_security_group) {
        securityGroupId = (await ec2.ensureSecurityGroup({}, run(ctx, 'create'))).id;
      }

      // Intent first: if we die from here on, the row and its client token let reconciliation find the instance.
      checkQuota(); // no await between this check and the insert
      if (earlier) {
        instances.relaunch(clientToken); // same row, same token, nothing reached EC2
      } else {
        instances.insertLaunch({
          clientToken,
          name: request.name,
          ami: request.ami,
          instanceType: request.instance_type,
          storageGb: request.storage_gb,
          keyName: policy.keyName,
          securityGroupId,
          loginUser: loginUserFor(image),
        });
      }

      try {
        const launched = await ec2.createInstance(
          {
            name: request.name,
            ami: request.ami,
            instanceType: request.instance_type,
            storageGb: request.storage_gb,
            keyName: policy.keyName,
            clientToken,
            securityGroupId: securityGroupId ?? undefined,
          },
          run(ctx, 'create'),
        );
        launch.onInstance?.(launched.id);
        return announce('created', toApiInstance(instances.completeLaunch(clientToken, snapshotOf(launched))), ctx);
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        if (error instanceof ScriptError && NOTHING_LAUNCHED.has(error.failure)) {
          instances.failLaunch(clientToken, 'failed', message);
          if (error.failure === 'not-found') {
            // describe_image.sh saw the AMI a moment ago, so this is almost always the configured key pair.
            throw new ScriptError('other', error.script, `EC2 refused the launch: ${message} (is KEY_NAME=${policy.keyName} a key pair in this region?)`, error.details);
          }
          throw error;
        }
        instances.failLaunch(clientToken, 'unknown', message);
        try {
          const adopted = await adoptByToken(clientToken, ctx);
          if (adopted) {
            logger.warn('launch script failed but EC2 has the instance; recorded it', {
              request_id: ctx?.requestId, instance_id: adopted.instance_id, client_token: clientToken, error: message,
            });
            launch.onInstance?.(adopted.instance_id);
            launch.onAdopted?.(adopted.instance_id);
            return announce('created', toApiInstance(adopted), ctx);
          }
        } catch (lookupError) {
          logger.warn('could not look for the launch by client token', {
            request_id: ctx?.requestId, client_token: clientToken, error: String(lookupError),
          });
        }
        throw error;
      }
    },

    async get(instanceId, ctx) {
      const row = recordOrNotFound(instanceId);
      if (row.state === 'terminated') return toApiInstance(row); // final: nothing left to re-read
      // No instance lock: a read must not wait minutes behind a stop that is polling for "stopped".
      let flight = describing.get(instanceId);
      if (flight) {
        logger.debug('read joined the describe in flight', { request_id: ctx?.requestId, instance_id: instanceId });
      } else {
        const started = readThrough(instanceId, ctx);
        flight = started;
        describing.set(instanceId, started);
        const clear = (): void => {
          if (describing.get(instanceId) === started) describing.delete(instanceId);
        };
        started.then(clear, clear);
      }
      return toApiInstance(await flight);
    },

    list(query) {
      const limit = query.limit ?? DEFAULT_PAGE_SIZE;
      const rows = instances.list({
        state: query.state,
        name: query.name,
        includeTerminated: query.include_terminated ?? false,
        beforeRowId: query.cursor === undefined ? undefined : decodeCursor(query.cursor),
        limit: limit + 1,
      });
      const { items, next_cursor } = pageOf(rows, limit, toApiInstance);
      return { instances: items, next_cursor };
    },

    start: (instanceId, ctx) => change('start', instanceId, ctx),
    stop: (instanceId, ctx) => change('stop', instanceId, ctx),

    async destroy(instanceId, ctx) {
      const row = recordOrNotFound(instanceId);
      const before = row.state;
      const endChange = beginChange(instanceId);
      if (before !== 'terminated') instances.setState(instanceId, TRANSITIONAL.terminate);
      try {
        const result = await ec2.destroyInstance(instanceId, run(ctx, 'terminate'));
        instances.refresh(snapshotOf(result));
        // shutting-down only ever leads to terminated: the record says so now, so lists stop showing it.
        return announce('terminated', toApiInstance(instances.markTerminated(instanceId, null)), ctx);
      } catch (error) {
        if (error instanceof ScriptError && error.failure === 'not-found') {
          return toApiInstance(instances.markTerminated(instanceId, 'EC2 no longer knows this instance'));
        }
        if (before !== 'terminated') await reconcileAfterFailure(instanceId, before, ctx);
        if (error instanceof ScriptError && error.failure === 'conflict') {
          throw new ConflictError(`Instance ${instanceId} cannot be destroyed: ${error.message}`);
        }
        throw error;
      } finally {
        endChange();
      }
    },

    recorded(instanceId) {
      return toApiInstance(recordOrNotFound(instanceId));
    },

    admitLaunch(clientToken, inFlight) {
      // A retry of a launch that reached EC2 launches nothing: it answers with that instance.
      if (instances.findByClientToken(clientToken)?.instance_id) return;
      checkInstanceQuota(launchesCounted(clientToken, inFlight), maxInstances);
    },
    changes,

    async reconcileLaunches(ctx) {
      const pending = instances.unresolvedLaunches();
      const adopted: string[] = [];
      const failed: string[] = [];
      if (pending.length === 0) return { adopted, failed };
      const { instances: found } = await ec2.listInstances({ all: true }, run(ctx));
      const byToken = new Map(found.filter((i) => i.client_token).map((i) => [i.client_token as string, i]));
      for (const row of pending) {
        const match = byToken.get(row.client_token);
        if (match) {
          announce('created', toApiInstance(instances.completeLaunch(row.client_token, snapshotOf(match))), ctx);
          adopted.push(match.id);
        } else if (Date.now() - Date.parse(row.created_at) > GIVE_UP_AFTER_MS) {
          instances.failLaunch(row.client_token, 'failed', 'no EC2 instance carries this launch\'s client token');
          failed.push(row.client_token);
        }
      }
      if (adopted.length || failed.length) logger.info('reconciled launches', { request_id: ctx?.requestId, adopted, failed });
      return { adopted, failed };
    },
  };
}
