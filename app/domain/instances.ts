/**
 * The instances as the API shows them: the records, re-read from EC2 where a read asks for it, and the
 * watch over changes in flight that keeps a read from putting back an older state. The changes themselves
 * (create, start, stop, terminate) are the lifecycle service's. Knows nothing of HTTP.
 */
import type { Ec2 } from '../ec2/scripts.js';
import type { Logger } from '../logger.js';
import type { Instance, InstanceList } from '../schemas/instance.js';
import type { ListInstancesQuery } from '../schemas/requests.js';
import { DEFAULT_PAGE_SIZE } from '../schemas/requests.js';
import type { Ec2Instance } from '../schemas/script-outputs.js';
import type { Ec2Snapshot, LaunchedRow } from '../store/instances-repo.js';
import type { InstancesStore } from '../store/ports.js';
import { NotFoundError, ScriptError } from './errors.js';
import { mayBeUnseen } from './consistency.js';
import { runContextOf, type OpContext } from './context.js';
import { sshString, type KeyFiles } from './login-user.js';
import { decodeCursor, pageOf } from './pagination.js';
import type { Schedule } from './schedule.js';
import { tagFilterOf, userTagsOf } from '../guardrails/tags.js';

export interface InstancesServiceDeps {
  instances: InstancesStore;
  /** Where the configured key pair's private key is, for ssh_string. */
  keyFiles?: KeyFiles;
  ec2: Ec2;
  logger: Logger;
  /** Changes under way (the lifecycle service begins them). */
  changes: ChangeWatch;
  /** Runner timeout of a describe (ms). */
  describeTimeoutMs: number;
  /** Read scripts (describe) running at once. */
  maxConcurrentReads: number;
  /** How long after a launch EC2 not showing it proves nothing (ms; see consistency.ts). */
  consistencyWindowMs?: number | undefined;
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

/** The watch, and the side a change uses: `begin` as it starts, the function it returns once it is over. */
export interface ChangeTracker extends ChangeWatch {
  begin(instanceId: string): () => void;
}


/** Why a record is marked terminated when a script finds EC2 does not know its instance. */
export const GONE_FROM_EC2 = 'EC2 no longer knows this instance';

export function toApiInstance(row: LaunchedRow, keyFiles?: KeyFiles): Instance {
  return {
    id: row.instance_id,
    name: row.name,
    state: row.state === 'failed' ? 'terminated' : row.state,
    public_ip: row.public_ip,
    private_ip: row.private_ip,
    ssh_string: sshString(row, keyFiles),
    ami: row.ami,
    instance_type: row.instance_type,
    storage_gb: row.storage_gb,
    key_name: row.key_name,
    security_group_id: row.security_group_id,
    backend_used: 'awscli',
    launch_time: row.launch_time,
    created_at: row.created_at,
    updated_at: row.updated_at,
    owner: row.owner ?? null,
    tags: parseJsonObject(row.tags) as Record<string, string>,
    expires_at: row.expires_at ?? null,
    on_expiry: row.on_expiry ?? null,
    schedule: row.schedule ? (parseJsonObject(row.schedule) as unknown as Schedule) : null,
  };
}

/** A JSON object column; an event recorded before the column existed has none. */
function parseJsonObject(text: string | null | undefined): Record<string, unknown> {
  if (!text) return {};
  const value: unknown = JSON.parse(text);
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

export function snapshotOf(instance: Ec2Instance): Ec2Snapshot {
  const tags = (instance as { tags?: Record<string, string> | undefined }).tags;
  return {
    instanceId: instance.id,
    name: instance.name,
    state: instance.state,
    publicIp: instance.public_ip,
    privateIp: instance.private_ip,
    storageGb: instance.storage_gb,
    keyName: instance.key_name,
    securityGroupId: instance.security_group_ids[0] ?? null,
    launchTime: isoTime(instance.launch_time),
    tags: tags === undefined ? null : JSON.stringify(userTagsOf(tags)),
    owner: tags?.Owner ?? null,
  };
}

/** EC2 reports "2024-05-01T10:00:00+00:00" or "...000Z"; we answer ISO 8601 UTC with milliseconds. */
export function isoTime(value: string | null | undefined): string | null {
  if (!value) return null;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? null : new Date(ms).toISOString();
}

/** The record of an instance, or NotFoundError. */
export async function recordOf(instances: InstancesStore, instanceId: string): Promise<LaunchedRow> {
  const row = await instances.findByInstanceId(instanceId);
  if (!row) throw new NotFoundError(`No instance ${instanceId} is recorded by this service`);
  return row;
}

export function createChangeTracker(): ChangeTracker {
  // Per instance: how many changes run now, and the sequence number of the latest start or end of one
  // (kept after the change: a read that began before it must still see that it happened).
  const changing = new Map<string, { active: number; seq: number }>();
  let changeSeq = 0;
  return {
    begin(instanceId) {
      const entry = changing.get(instanceId) ?? { active: 0, seq: 0 };
      changing.set(instanceId, entry);
      entry.active += 1;
      entry.seq = ++changeSeq;
      return () => {
        entry.active -= 1;
        entry.seq = ++changeSeq;
      };
    },
    mark(instanceId) {
      const entry = changing.get(instanceId);
      return { active: (entry?.active ?? 0) > 0, seq: entry?.seq ?? 0 };
    },
    mayRecordState(instanceId, mark) {
      const entry = changing.get(instanceId);
      return !mark.active && (entry?.active ?? 0) === 0 && (entry?.seq ?? 0) === mark.seq;
    },
  };
}

export interface InstancesService {
  /** The record, re-read from EC2 first unless it is terminated. */
  get(instanceId: string, ctx?: OpContext): Promise<Instance>;
  list(query: ListInstancesQuery): Promise<InstanceList>;
  /** The record, or NotFoundError (no script runs). */
  recorded(instanceId: string): Promise<Instance>;
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
  const { instances, ec2, logger, changes, maxConcurrentReads } = deps;
  const present = (row: LaunchedRow): Instance => toApiInstance(row, deps.keyFiles);

  // Reads of EC2: concurrent reads of one instance share one describe, and describes of different instances
  // wait in line behind their own cap, so a burst of reads neither floods AWS nor takes a slot from a change.
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
        () => ec2.describeInstance(instanceId, runContextOf(ctx, deps.describeTimeoutMs)),
      );
    } catch (error) {
      if (error instanceof ScriptError && error.failure === 'not-found') {
        // While a change runs, it judges what became of the instance; until then the record answers. So it does
        // for an instance launched moments ago: EC2 may not show it yet.
        if (!changes.mayRecordState(instanceId, mark)) return await recordOf(instances, instanceId);
        const row = await recordOf(instances, instanceId);
        if (mayBeUnseen(row, deps.consistencyWindowMs)) {
          logger.info('EC2 does not show the instance yet (launched moments ago); the record answers', {
            request_id: ctx?.requestId, instance_id: instanceId, state: row.state,
          });
          return row;
        }
        return await instances.markTerminated(instanceId, GONE_FROM_EC2);
      }
      throw error;
    }
    const snapshot = snapshotOf(described);
    if (changes.mayRecordState(instanceId, mark)) return await instances.refresh(snapshot);
    const kept = (await recordOf(instances, instanceId)).state as Ec2Snapshot['state']; // a launched record is never "failed"
    logger.debug('read kept the state set by a change of the instance', {
      request_id: ctx?.requestId, instance_id: instanceId, state: kept, ec2_state: snapshot.state,
    });
    return await instances.refresh({ ...snapshot, state: kept });
  }

  return {
    async get(instanceId, ctx) {
      const row = await recordOf(instances, instanceId);
      if (row.state === 'terminated') return present(row); // final: nothing left to re-read
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
      return present(await flight);
    },

    async list(query) {
      const limit = query.limit ?? DEFAULT_PAGE_SIZE;
      const rows = await instances.list({
        state: query.state,
        name: query.name,
        owner: query.owner,
        tags: (query.tag === undefined ? [] : Array.isArray(query.tag) ? query.tag : [query.tag]).map(tagFilterOf),
        includeTerminated: query.include_terminated ?? false,
        beforeRowId: query.cursor === undefined ? undefined : decodeCursor(query.cursor),
        limit: limit + 1,
      });
      const { items, next_cursor } = pageOf(rows, limit, present);
      return { instances: items, next_cursor };
    },

    async recorded(instanceId) {
      return present(await recordOf(instances, instanceId));
    },
  };
}
