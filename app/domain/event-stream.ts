/**
 * The stream of recorded changes. Events are written by the database in the transaction of each change
 * (app/store/schema.ts), with ids that only grow in commit order; this module reads them in that order and
 * hands each to the subscribers whose filter it passes, as the API shows the instance or operation.
 * A subscriber resuming after an id first reads what it missed from the store, then joins the live feed
 * with no gap and no duplicate. The store is also the buffer of a subscriber that reads slower than events
 * come: once too much waits for it, it leaves the live feed and, each time its connection drains, reads on
 * from the store where it was; one that does not drain for `stallMs` is dropped. New events are found by a
 * look every `pollMs` while anyone listens, and at once when the store says another connection recorded
 * some (PostgreSQL's NOTIFY between replicas).
 */
import type { Logger } from '../logger.js';
import type { Instance } from '../schemas/instance.js';
import type { Operation } from '../schemas/operation.js';
import type { StreamEvent, StreamReset } from '../schemas/events.js';
import type { EventFilter, EventRow } from '../store/events-repo.js';
import type { LaunchedRow } from '../store/instances-repo.js';
import type { OperationRow } from '../store/operations-repo.js';
import type { AsyncStore } from '../store/ports.js';
import { UnavailableError } from './errors.js';
import { toApiInstance } from './instances.js';
import type { KeyFiles } from './login-user.js';
import { toApiOperation } from './operations.js';

export type { StreamEvent, StreamReset } from '../schemas/events.js';

export interface Subscriber {
  filter: EventFilter;
  deliver(event: StreamEvent): void;
  /** How many bytes wait to be sent to it. */
  backlog(): number;
  /** Calls `then` once what waits has been sent. */
  onDrain(then: () => void): void;
  /** Ends the subscriber's stream: the server shuts down, or (`stalled`) it does not read. */
  end(why: 'shutdown' | 'stalled'): void;
  /**
   * Told once, when the subscriber has been given everything it missed and is fed live from then on, with the
   * id it stands at: no event it is given later has a smaller id (ids on one stream only grow).
   */
  ready?(lastEventId: number): void;
}

export interface Subscription {
  /** The id the subscriber is at once subscribed: where it would resume from. */
  readonly from: number;
  unsubscribe(): void;
}

export interface EventStream {
  /**
   * Subscribes from after `afterId` (undefined: from now). `reset` is told first when the store no longer
   * keeps the events after `afterId` (older than the retention) or never had it.
   */
  subscribe(subscriber: Subscriber, afterId: number | undefined, reset: (state: StreamReset) => void): Promise<Subscription>;
  readonly clients: number;
  /** False once closed. */
  readonly open: boolean;
  /** Events older than `hours` are deleted (the newest always stays); returns how many. */
  purge(hours: number): Promise<number>;
  /** Ends every stream and takes no new subscriber (shutdown: streams must not hold the drain). */
  close(): void;
}

export interface EventStreamOptions {
  store: Pick<AsyncStore, 'events' | 'instances' | 'operations' | 'onEventsRecorded'>;
  logger: Logger;
  keyFiles?: KeyFiles | undefined;
  /** How often the store is looked at while anyone listens. */
  pollMs: number;
  /** A subscriber whose connection does not drain for this long is dropped. */
  stallMs: number;
  /** What may wait for one subscriber before it reads on from the store instead. */
  maxBacklogBytes: number;
}

const PAGE = 500;

interface Member {
  subscriber: Subscriber;
  /** The last id this subscriber has been given or passed over. */
  cursor: number;
  /** Reading from the store (joining, or behind) rather than fed live. */
  catchingUp: boolean;
  /** Whether the subscriber has been told it is fed live (Subscriber.ready). */
  told: boolean;
  stall?: NodeJS.Timeout | undefined;
  gone: boolean;
}

export function createEventStream(options: EventStreamOptions): EventStream {
  const { store, logger } = options;
  const members = new Set<Member>();
  /** The newest id the feed has read; undefined until the first subscriber. */
  let cursor: number | undefined;
  let pumping = false;
  let again = false;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let stopListening: (() => void) | undefined;

  function toEvent(row: EventRow): StreamEvent {
    const data = JSON.parse(row.data) as Record<string, unknown>;
    const event: StreamEvent = { id: Number(row.row_id), type: row.type as StreamEvent['type'], at: row.created_at };
    if (row.type.startsWith('instance.')) {
      event.instance = toApiInstance(data as unknown as LaunchedRow, options.keyFiles);
      if (row.type !== 'instance.created') event.previous_state = row.old_state;
    } else {
      event.operation = toApiOperation(data as unknown as OperationRow);
    }
    return event;
  }

  const passes = (filter: EventFilter, row: EventRow): boolean =>
    (filter.instanceId === undefined || row.instance_id === filter.instanceId)
    && (filter.types === undefined || filter.types.includes(row.type));

  function give(member: Member, row: EventRow, event: () => StreamEvent): void {
    const id = Number(row.row_id);
    if (id <= member.cursor) return;
    member.cursor = id;
    if (passes(member.subscriber.filter, row)) member.subscriber.deliver(event());
  }

  function leave(member: Member): void {
    member.gone = true;
    if (member.stall) clearTimeout(member.stall);
    members.delete(member);
    unwatch();
  }

  /** Too much waits for it: it reads on from the store once its connection drains, or is dropped. */
  function fallBehind(member: Member): void {
    member.catchingUp = true;
    member.stall = setTimeout(() => {
      if (member.gone) return;
      leave(member);
      member.subscriber.end('stalled');
    }, options.stallMs);
    member.stall.unref();
    member.subscriber.onDrain(() => {
      if (member.stall) clearTimeout(member.stall);
      member.stall = undefined;
      void catchUp(member).catch((error: unknown) => {
        logger.warn('could not read missed events for a stream', { error: error instanceof Error ? error.message : String(error) });
      });
    });
  }

  /**
   * Reads what the member missed from the store, until it has caught up with the feed without the feed
   * moving meanwhile; then it is fed live again (in the same turn: nothing in between is missed or repeated).
   */
  async function catchUp(member: Member): Promise<void> {
    for (;;) {
      if (member.gone) return;
      const target: number = cursor ?? 0;
      const rows = await store.events.after(member.cursor, member.subscriber.filter, PAGE);
      if (member.gone) return;
      for (const row of rows) give(member, row, () => toEvent(row));
      if (member.subscriber.backlog() > options.maxBacklogBytes) {
        fallBehind(member);
        return;
      }
      if (rows.length === PAGE) continue;
      if (cursor === target) {
        member.cursor = Math.max(member.cursor, target);
        member.catchingUp = false;
        if (!member.told) {
          // In the same turn as it joins the live feed: nothing it is given after this has a smaller id.
          member.told = true;
          member.subscriber.ready?.(member.cursor);
        }
        return;
      }
    }
  }

  /** Reads what was recorded since the feed's cursor and hands it out; one read at a time. */
  async function pump(): Promise<void> {
    if (pumping) {
      again = true;
      return;
    }
    pumping = true;
    try {
      do {
        again = false;
        for (;;) {
          const rows = await store.events.after(cursor ?? 0, {}, PAGE);
          for (const row of rows) {
            cursor = Number(row.row_id);
            let made: StreamEvent | undefined;
            for (const member of members) {
              if (member.catchingUp) continue;
              give(member, row, () => (made ??= toEvent(row)));
              if (member.subscriber.backlog() > options.maxBacklogBytes) fallBehind(member);
            }
          }
          if (rows.length < PAGE) break;
        }
      } while (again && !closed);
    } catch (error) {
      logger.warn('could not read new events; trying again at the next look', { error: error instanceof Error ? error.message : String(error) });
    } finally {
      pumping = false;
    }
  }

  function watch(): void {
    if (timer || closed) return;
    timer = setInterval(() => void pump(), options.pollMs);
    timer.unref();
    stopListening = store.onEventsRecorded?.(() => void pump());
  }

  function unwatch(): void {
    if (members.size > 0) return;
    if (timer) clearInterval(timer);
    timer = undefined;
    stopListening?.();
    stopListening = undefined;
  }

  async function currentState(filter: EventFilter): Promise<{ instances: Instance[]; operations: Operation[] }> {
    const rows = filter.instanceId === undefined
      ? await store.instances.live()
      : [await store.instances.findByInstanceId(filter.instanceId)].filter((row): row is LaunchedRow => row !== undefined);
    const ops = (await store.operations.unfinished()).filter((op) => filter.instanceId === undefined || op.instance_id === filter.instanceId);
    return { instances: rows.map((row) => toApiInstance(row, options.keyFiles)), operations: ops.map(toApiOperation) };
  }

  return {
    async subscribe(subscriber, afterId, reset) {
      if (closed) throw new UnavailableError('The service is shutting down; reconnect shortly');
      const member: Member = { subscriber, cursor: 0, catchingUp: true, told: false, gone: false };
      members.add(member);
      watch();
      try {
        const bounds = await store.events.bounds();
        cursor ??= bounds.newest;
        member.cursor = afterId ?? cursor;
        if (afterId !== undefined && (afterId > bounds.newest || afterId < bounds.oldest - 1)) {
          member.cursor = bounds.newest;
          reset({
            reason: afterId > bounds.newest
              ? `event ${afterId} was never recorded here (the newest is ${bounds.newest}): here is the current state`
              : `events after ${afterId} are no longer kept (the oldest kept is ${bounds.oldest}): here is the current state`,
            oldest_event_id: bounds.oldest,
            newest_event_id: bounds.newest,
            ...(await currentState(subscriber.filter)),
          });
        }
        const from = member.cursor;
        await catchUp(member);
        if (closed) throw new UnavailableError('The service is shutting down; reconnect shortly');
        void pump();
        return {
          from,
          unsubscribe: () => leave(member),
        };
      } catch (error) {
        leave(member);
        throw error;
      }
    },
    get clients() {
      return members.size;
    },
    get open() {
      return !closed;
    },
    async purge(hours) {
      const cutoff = new Date(Date.now() - hours * 3_600_000).toISOString();
      const purged = await store.events.purgeOlderThan(cutoff);
      if (purged) logger.info('events purged', { purged, older_than: cutoff });
      return purged;
    },
    close() {
      closed = true;
      for (const member of [...members]) {
        leave(member);
        member.subscriber.end('shutdown');
      }
    },
  };
}
