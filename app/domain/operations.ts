/**
 * The operations engine: every mutating request (and every reconciliation) runs as an operation that is
 * recorded in SQLite before it does anything. It enforces
 *  - one mutating operation per instance at a time (a second one is refused, naming the first),
 *  - a global cap on mutating script runs with a bounded FIFO queue behind it (beyond it: unavailable),
 *  - Idempotency-Key semantics (same key + same request → the first result; different request → refused),
 *  - draining on shutdown (new work refused, in-flight work awaited, leftovers marked interrupted).
 * It knows nothing of HTTP: what a finished request "answered" is an opaque StoredResponse the caller builds.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from '../logger.js';
import type { Operation, OperationList } from '../schemas/operation.js';
import type { ListOperationsQuery } from '../schemas/operation.js';
import { DEFAULT_PAGE_SIZE } from '../schemas/requests.js';
import type { OperationKind, OperationOutcome, OperationRow } from '../store/operations-repo.js';
import type { AsyncStore, Transaction } from '../store/ports.js';
import { InstanceBusyError } from '../store/errors.js';
import {
  IdempotencyMismatchError, InterruptedError, NotFoundError, OperationInFlightError, StorageUnavailableError,
  UnavailableError,
} from './errors.js';
import { describeFailure, failureOf } from './recorded-failures.js';
import type { OpContext } from './context.js';
import { decodeCursor, pageOf } from './pagination.js';

export type { OperationKind } from '../store/operations-repo.js';

/** What a finished request answered, kept for Idempotency-Key replays. */
export interface StoredResponse {
  status: number;
  body: unknown;
  location?: string | null | undefined;
}

export interface OperationHandle {
  readonly id: string;
  readonly clientToken: string | null;
  /**
   * Records the instance once it is known (a launch learns its id from EC2): from then on the operation holds
   * it, so another change of it is refused naming this one.
   */
  setInstance(instanceId: string): Promise<void>;
  note(text: string): Promise<void>;
}

/** How a finished operation's outcome is kept for Idempotency-Key replays. */
export interface Remember<T> {
  success(value: T): StoredResponse;
  /** A failure mapped to undefined is not remembered (a retry runs again). */
  failure(error: unknown): StoredResponse | undefined;
}

export interface SubmitSpec<T> {
  kind: OperationKind;
  instanceId?: string | undefined;
  clientToken?: string | undefined;
  ctx?: OpContext | undefined;
  idempotency?: { key: string; fingerprint: string } | undefined;
  /** Whether it takes one of the MAX_CONCURRENT_SCRIPTS slots (mutations do; sync only reads EC2). */
  capped?: boolean;
  /**
   * Refuses the operation by throwing, after the Idempotency-Key and the instance's operation in flight are
   * looked at, inside the transaction that records it: what it counts through `tx` (serialised by topic
   * where other servers may count too) cannot change before the new operation counts as well (a queued
   * operation is as much in flight as a running one).
   */
  admit?(tx: Transaction): Promise<void>;
  run(op: OperationHandle): Promise<T>;
  /** What the operation record shows as its result on success. */
  result?(value: T): unknown;
  /** How to remember the outcome for replays. */
  remember?: Remember<T> | undefined;
  /**
   * What the record keeps so that another server can run the operation from it (with its kind, instance and
   * client token): see runRecorded. Such an operation's result is its value.
   */
  request?: unknown;
}

export type Submission<T> =
  | { type: 'started'; operation: Operation; done: Promise<T> }
  | { type: 'replay'; response: StoredResponse; operationId: string }
  | { type: 'in-flight'; operation: Operation };

export interface OperationsEngineOptions {
  store: Pick<AsyncStore, 'operations' | 'idempotency' | 'transaction'>;
  logger: Logger;
  /** This server, as the operations it records name it (replicas sharing a database tell theirs apart). */
  owner?: string | undefined;
  maxConcurrent: number;
  maxQueued: number;
  /** Idempotency keys are purged once older than this. */
  idempotencyTtlHours: number;
  /** Seconds a client is told to wait when the queue is full or the server is draining. */
  retryAfterSeconds?: number;
  /**
   * Where servers share the database: whenever a script slot is free here, take the operations other servers
   * queued, looking every `pollMs` and whenever a slot frees. Needs `owner`.
   */
  shareQueue?: { pollMs: number } | undefined;
  /** How to remember, for Idempotency-Key replays, the outcome of an operation run from its record. */
  rememberRecorded?: ((row: OperationRow) => Remember<unknown> | undefined) | undefined;
}

export interface OperationsEngine {
  submit<T>(spec: SubmitSpec<T>): Promise<Submission<T>>;
  /**
   * How an operation another server accepted is run here from its record alone; without it this server
   * takes nobody else's work.
   */
  runRecorded(work: (row: OperationRow, op: OperationHandle) => Promise<unknown>): void;
  get(id: string): Promise<Operation>;
  list(query: ListOperationsQuery): Promise<OperationList>;
  /** The operation in flight on an instance, if any. */
  activeOn(instanceId: string): string | undefined;
  /** Counts for observability and tests. */
  stats(): { running: number; queued: number; active: number };
  readonly draining: boolean;
  /** From now on new operations are refused; what runs goes on. */
  beginShutdown(): void;
  /** Resolves when no operation is queued or running. */
  idle(): Promise<void>;
  /**
   * Marks every operation still in flight here interrupted (shutdown timed out); returns their ids. One that
   * another server took from this one's queue goes on there: only its client here is answered.
   */
  interruptActive(note: string): Promise<string[]>;
  /**
   * Operations left queued or running by a server that is gone (at start-up: any previous process; with
   * replicas: the ones `abandoned` picks) are interrupted; returns them.
   */
  recoverAbandoned(note: string, abandoned?: (row: OperationRow) => boolean): Promise<OperationRow[]>;
  /** Deletes idempotency keys older than the TTL; returns how many. */
  purgeIdempotencyKeys(): Promise<number>;
}

export function toApiOperation(row: OperationRow): Operation {
  let result: Record<string, unknown> | null = null;
  if (row.result !== null) {
    try {
      result = JSON.parse(row.result) as Record<string, unknown>;
    } catch {
      result = null;
    }
  }
  return {
    id: row.id,
    kind: row.kind,
    status: row.status,
    instance_id: row.instance_id,
    client_token: row.client_token,
    idempotency_key: row.idempotency_key,
    exit_code: row.exit_code,
    error_code: row.error_code,
    error_message: row.error_message,
    stderr_tail: row.stderr_tail,
    note: row.note,
    result,
    request_id: row.request_id,
    actor: row.actor,
    client_address: row.client_address,
    created_at: row.created_at,
    started_at: row.started_at,
    finished_at: row.finished_at,
    duration_ms: row.duration_ms,
  };
}

interface Active {
  id: string;
  kind: OperationKind;
  /** Set later for a launch, once EC2 has named its instance. */
  instanceId: string | undefined;
  interrupted: boolean;
  /** Answers whoever waits for the operation at once (the work itself may take a moment to die). */
  interrupt(): void;
  /** Rejects once interrupt() is called. */
  interruption: Promise<never>;
}

/** An operation as this server runs it: from a submission, or from the record another server wrote. */
interface Job<T> {
  id: string;
  kind: OperationKind;
  instanceId: string | undefined;
  ctx: OpContext | undefined;
  /** Where its Idempotency-Key lives. */
  scope: string;
  idempotencyKey: string | undefined;
  clientToken: string | null;
  run(op: OperationHandle): Promise<T>;
  result?: ((value: T) => unknown) | undefined;
  remember?: Remember<T> | undefined;
}

/** How often a client whose operation another server runs looks at its record. */
const FOLLOW_INTERVAL_MS = 200;

/** The scope idempotency keys live in: one caller's keys never collide with another's. */
export function idempotencyScope(ctx: OpContext | undefined): string {
  return ctx?.actor ?? '';
}

/** Another request claimed the same Idempotency-Key between our read and our claim: read it again. */
class ClaimedMeanwhile extends Error {}

export function createOperationsEngine(options: OperationsEngineOptions): OperationsEngine {
  const { store, logger } = options;
  const { operations, idempotency } = store;
  const retryAfter = options.retryAfterSeconds ?? 5;
  const owner = options.owner ?? null;
  let recordedWork: ((row: OperationRow, op: OperationHandle) => Promise<unknown>) | undefined;
  const active = new Map<string, Active>();
  /** The operation each instance is reserved for on this server, from the moment it is admitted. */
  const byInstance = new Map<string, string>();
  /** Idempotency-Keys whose request is being decided on this server: a second one waits, then reads again. */
  const deciding = new Map<string, Promise<void>>();
  const waiting: Array<() => void> = [];
  let running = 0;
  /** Submissions being decided: not active yet, but a shutdown must wait for them as for the active. */
  let admitting = 0;
  let draining = false;
  let stopPolling: () => void = () => undefined;
  const sharing = options.shareQueue !== undefined && owner !== null;
  let idleWaiters: Array<() => void> = [];

  function settleIdle(): void {
    if (active.size > 0 || admitting > 0) return;
    const waiters = idleWaiters;
    idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  function release(): void {
    const next = waiting.shift();
    if (next) {
      next(); // the slot passes straight to the next in line (FIFO)
      return;
    }
    running -= 1;
    void takeFromOthers();
  }

  /**
   * Outcomes the store refused (disk full, I/O error, its file gone), kept until it takes writes again. Such
   * an operation no longer runs, whatever its row still says, so its Idempotency-Key is free to retry.
   */
  const unrecorded = new Map<string, OperationOutcome>();
  async function flushUnrecorded(): Promise<void> {
    for (const [id, outcome] of unrecorded) {
      try {
        await operations.finish(id, outcome);
      } catch {
        return;
      }
      unrecorded.delete(id);
    }
  }

  async function mustGet(id: string): Promise<OperationRow> {
    const row = await operations.get(id);
    if (!row) throw new NotFoundError(`No operation ${id}`);
    return row;
  }

  function inFlightError(instanceId: string, busy: string, kind = active.get(busy)?.kind): OperationInFlightError {
    const what = kind === undefined ? `Operation ${busy}` : `The ${kind} operation ${busy}`;
    return new OperationInFlightError(`${what} on instance ${instanceId} is still in flight; retry when it has finished`, busy);
  }

  /** What an earlier request under the same Idempotency-Key settles for this one, if anything. */
  async function earlierUnderKey<T>(
    spec: SubmitSpec<T>, scope: string,
  ): Promise<{ settled: Submission<T> } | { previousOperationId: string | null }> {
    if (!spec.idempotency) return { previousOperationId: null };
    const record = await idempotency.find(scope, spec.idempotency.key);
    if (!record) return { previousOperationId: null };
    if (record.fingerprint !== spec.idempotency.fingerprint) {
      throw new IdempotencyMismatchError(
        'This Idempotency-Key was already used with a different request; use a new key for a new request',
      );
    }
    if (record.response_status !== null) {
      return {
        settled: {
          type: 'replay',
          operationId: record.operation_id,
          response: {
            status: record.response_status,
            body: record.response_body === null ? null : JSON.parse(record.response_body),
            location: record.response_location,
          },
        },
      };
    }
    const previous = await operations.get(record.operation_id);
    // An interrupted attempt whose script outlived its server is still at work until start-up settles it;
    // running the request again now could launch a second time.
    const scriptStillRuns = previous?.script_pgid !== null && previous?.script_pgid !== undefined;
    if (previous && !unrecorded.has(previous.id)
      && (previous.status === 'queued' || previous.status === 'running' || scriptStillRuns)) {
      return { settled: { type: 'in-flight', operation: toApiOperation(previous) } };
    }
    // Interrupted, or failed in a way not remembered (5xx): run again under the same key (and client token).
    return { previousOperationId: record.operation_id };
  }

  async function submit<T>(spec: SubmitSpec<T>): Promise<Submission<T>> {
    if (draining) throw new UnavailableError('The service is shutting down; retry shortly', retryAfter);
    const ctx = spec.ctx;
    const scope = idempotencyScope(ctx);
    const keyId = spec.idempotency ? `${scope}\n${spec.idempotency.key}` : undefined;

    // One request per Idempotency-Key is decided at a time on this server; the claim in the store settles it
    // between servers.
    if (keyId !== undefined) {
      while (deciding.has(keyId)) await deciding.get(keyId);
    }
    let decided: () => void = () => undefined;
    if (keyId !== undefined) deciding.set(keyId, new Promise<void>((resolve) => (decided = resolve)));
    admitting += 1;
    try {
      for (let attempt = 1; ; attempt += 1) {
        try {
          return await decide(spec, scope);
        } catch (error) {
          if (!(error instanceof ClaimedMeanwhile) || attempt >= 3) throw error;
        }
      }
    } finally {
      if (keyId !== undefined) {
        deciding.delete(keyId);
        decided();
      }
      admitting -= 1;
      settleIdle();
    }
  }

  async function decide<T>(spec: SubmitSpec<T>, scope: string): Promise<Submission<T>> {
    const ctx = spec.ctx;
    await flushUnrecorded();
    const earlier = await earlierUnderKey(spec, scope);
    if ('settled' in earlier) return earlier.settled;
    if (draining) throw new UnavailableError('The service is shutting down; retry shortly', retryAfter);

    const id = `op-${randomUUID()}`;
    const { instanceId } = spec;
    if (instanceId !== undefined) {
      // Reserved in the same turn as checked: a second request on this server is refused without a round trip.
      const busy = byInstance.get(instanceId);
      if (busy !== undefined) throw inFlightError(instanceId, busy);
      byInstance.set(instanceId, id);
    }
    // The script slot (or the place in line) is taken in the same turn as counted, before anything awaits:
    // an operation that finishes meanwhile hands its slot to this one rather than to nobody.
    const capped = spec.capped ?? true;
    let holdsSlot = false;
    let inLine: (() => void) | undefined;
    let slot: Promise<void> = Promise.resolve();
    if (capped) {
      if (running < options.maxConcurrent) {
        running += 1;
        holdsSlot = true;
      } else if (waiting.length < options.maxQueued) {
        slot = new Promise<void>((resolve) => {
          inLine = () => {
            holdsSlot = true;
            resolve();
          };
          waiting.push(inLine);
        });
      } else {
        if (instanceId !== undefined && byInstance.get(instanceId) === id) byInstance.delete(instanceId);
        throw new UnavailableError(
          `All ${options.maxConcurrent} script slots are busy and ${options.maxQueued} operations are queued; retry later`,
          retryAfter,
        );
      }
    }
    let row: OperationRow;
    // With its slot in hand it is recorded running, so no other server takes it from the queue meanwhile.
    const startsAtOnce = holdsSlot || !capped;
    try {
      // The store also knows of a script that outlived the previous server and still works on the instance.
      const orphan = instanceId === undefined ? undefined : await operations.scriptRunningOn(instanceId);
      if (instanceId !== undefined && orphan !== undefined) throw inFlightError(instanceId, orphan);
      row = await store.transaction(async (tx) => {
        await spec.admit?.(tx);
        const inserted = await tx.operations.insert({
          id,
          kind: spec.kind,
          instanceId: instanceId ?? null,
          clientToken: spec.clientToken ?? null,
          idempotencyKey: spec.idempotency?.key ?? null,
          requestId: ctx?.requestId ?? null,
          actor: ctx?.actor ?? null,
          clientAddress: ctx?.clientAddress ?? null,
          owner,
          request: spec.request,
          running: startsAtOnce,
        });
        if (spec.idempotency) {
          const claim = { scope, key: spec.idempotency.key, fingerprint: spec.idempotency.fingerprint, operationId: id };
          if (!(await tx.idempotency.claim(claim, 'previousOperationId' in earlier ? earlier.previousOperationId : null))) {
            throw new ClaimedMeanwhile();
          }
        }
        return inserted;
      });
    } catch (error) {
      const queued = inLine === undefined ? -1 : waiting.indexOf(inLine);
      if (queued >= 0) waiting.splice(queued, 1);
      else if (holdsSlot) release();
      if (instanceId !== undefined && byInstance.get(instanceId) === id) byInstance.delete(instanceId);
      if (error instanceof InstanceBusyError) {
        // Another server holds the instance. The refused transaction is over (PostgreSQL aborts it): the
        // holder is named from a read of its own.
        const holder = (await operations.list({ instanceId: error.instanceId, status: 'running', limit: 1 }))[0]
          ?? (await operations.list({ instanceId: error.instanceId, status: 'queued', limit: 1 }))[0];
        throw inFlightError(error.instanceId, holder?.id ?? 'on another server', holder?.kind);
      }
      throw error;
    }

    const entry = activate(id, spec.kind, instanceId);
    const job: Job<T> = {
      id, kind: spec.kind, instanceId, ctx, scope, idempotencyKey: spec.idempotency?.key,
      clientToken: spec.clientToken ?? null, run: spec.run, result: spec.result, remember: spec.remember,
    };
    const work = (async () => {
      if (inLine !== undefined && sharing) {
        // While it waits in line here, a server with a free slot may take it: its client is then answered
        // from the record at once, not when a slot here frees.
        const turn = await Promise.race([slot.then(() => 'slot' as const), takenWhileInLine(id, () => holdsSlot)]);
        if (turn === 'taken') {
          const place = waiting.indexOf(inLine);
          if (place >= 0) waiting.splice(place, 1);
          else if (holdsSlot) release();
          try {
            return (await follow(id, entry)) as T;
          } finally {
            deactivate(entry);
          }
        }
      }
      await slot;
      let slotHeld = capped;
      try {
        const started = startsAtOnce ? row : await recordedWrite(job, () => operations.markRunning(id, owner));
        if (started.status !== 'running' || (owner !== null && started.owner !== owner)) {
          // Another server took it from this one's queue (or it was interrupted while it waited): its client
          // here is answered from the record, and the slot goes to the next in line.
          if (capped) release();
          slotHeld = false;
          return (await follow(id, entry)) as T;
        }
        return await execute(job, entry);
      } finally {
        if (slotHeld) release();
        deactivate(entry);
      }
    })();
    work.catch(() => undefined);
    const done = Promise.race([work, entry.interruption]);
    done.catch(() => undefined); // asynchronous requests never await it; the outcome is in the record

    return { type: 'started', operation: toApiOperation(row), done };
  }

  function activate(id: string, kind: OperationKind, instanceId: string | undefined): Active {
    let interrupt: () => void = () => undefined;
    const interruption = new Promise<never>((_resolve, reject) => {
      interrupt = () => reject(new InterruptedError(`Operation ${id} was interrupted by a shutdown`));
    });
    interruption.catch(() => undefined);
    const entry: Active = { id, kind, instanceId, interrupted: false, interrupt, interruption };
    active.set(id, entry);
    return entry;
  }

  function deactivate(entry: Active): void {
    active.delete(entry.id);
    if (entry.instanceId !== undefined && byInstance.get(entry.instanceId) === entry.id) byInstance.delete(entry.instanceId);
    settleIdle();
  }

  /**
   * A write of this operation's record the store refused: record at least that it failed, or when even
   * that is refused, keep the outcome for later; either way it is over, and its client gets the refusal.
   */
  async function recordedWrite<R>(job: Pick<Job<unknown>, 'id' | 'kind' | 'instanceId' | 'ctx'>, write: () => Promise<R>): Promise<R> {
    try {
      return await write();
    } catch (error) {
      if (!(error instanceof StorageUnavailableError)) throw error;
      const outcome: OperationOutcome = {
        status: 'failed', errorCode: error.code, errorMessage: `its record could not be written: ${error.message}`,
      };
      try {
        await operations.finish(job.id, outcome);
      } catch {
        unrecorded.set(job.id, outcome);
      }
      logger.error('operation record not written', {
        request_id: job.ctx?.requestId, operation_id: job.id, kind: job.kind, instance_id: job.instanceId,
        error: error.message, kept_for_later: unrecorded.has(job.id),
      });
      throw error;
    }
  }

  /** Runs a started operation and records its outcome (and, under an Idempotency-Key, the response). */
  async function execute<T>(job: Job<T>, entry: Active): Promise<T> {
    const { id, ctx } = job;
    const handle: OperationHandle = {
      id,
      clientToken: job.clientToken,
      async setInstance(launchedId) {
        await operations.setInstance(id, launchedId);
        entry.instanceId = launchedId;
        byInstance.set(launchedId, id);
      },
      async note(text) {
        await operations.setNote(id, text);
      },
    };
    const remember = async (tx: Transaction, response: StoredResponse | undefined): Promise<void> => {
      if (job.idempotencyKey === undefined || !response) return;
      await tx.idempotency.remember(job.scope, job.idempotencyKey, {
        status: response.status,
        body: JSON.stringify(response.body ?? null),
        location: response.location ?? null,
      });
    };
    let value: T;
    try {
      value = await job.run(handle);
    } catch (error) {
      if (entry.interrupted) throw new InterruptedError(`Operation ${id} was interrupted by a shutdown`);
      const failure = describeFailure(error);
      await recordedWrite(job, () => store.transaction(async (tx) => {
        await tx.operations.finish(id, { status: 'failed', ...failure });
        await remember(tx, job.remember?.failure(error));
      }));
      logger.warn('operation failed', {
        request_id: ctx?.requestId, operation_id: id, kind: job.kind, instance_id: job.instanceId,
        error_code: failure.errorCode, error: failure.errorMessage,
      });
      throw error;
    }
    let finished: OperationRow | undefined;
    await recordedWrite(job, () => store.transaction(async (tx) => {
      finished = await tx.operations.finish(id, { status: 'succeeded', result: job.result ? job.result(value) : undefined });
      await remember(tx, job.remember?.success(value));
    }));
    logger.info('operation succeeded', {
      request_id: ctx?.requestId, operation_id: id, kind: job.kind, instance_id: finished?.instance_id,
    });
    return value;
  }

  /** The outcome of an operation another server runs, once its record has one: its value, or its failure. */
  async function follow(id: string, entry: Active): Promise<unknown> {
    for (;;) {
      if (entry.interrupted) throw new InterruptedError(`Operation ${id} was interrupted by a shutdown`);
      const row = await mustGet(id);
      if (row.status === 'succeeded') return row.result === null ? null : JSON.parse(row.result);
      if (row.status === 'failed' || row.status === 'interrupted') throw failureOf(row);
      await new Promise((resolve) => setTimeout(resolve, FOLLOW_INTERVAL_MS));
    }
  }

  /** Resolves 'taken' once the queued operation's record says another server started it (or it ended). */
  async function takenWhileInLine(id: string, hasSlot: () => boolean): Promise<'taken' | 'slot'> {
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, FOLLOW_INTERVAL_MS));
      if (hasSlot()) return 'slot';
      const row = await operations.get(id).catch(() => undefined);
      if (hasSlot()) return 'slot';
      if (row && (row.status !== 'queued' || row.owner !== owner)) return 'taken';
    }
  }

  let taking = false;
  /** Fills this server's free script slots with operations other servers queued, oldest first. */
  async function takeFromOthers(): Promise<void> {
    const work = recordedWork;
    if (!sharing || owner === null || !work || draining || taking) return;
    taking = true;
    try {
      while (!draining && running < options.maxConcurrent && waiting.length === 0) {
        running += 1; // held while the store is asked, so a local submission meanwhile waits in line
        let row: OperationRow | undefined;
        try {
          row = await operations.takeQueued(owner);
        } catch (error) {
          release();
          logger.debug('could not look for queued operations of other servers', { error: String(error) });
          return;
        }
        if (!row) {
          release();
          return;
        }
        runTaken(row, work);
      }
    } finally {
      taking = false;
    }
  }

  function runTaken(row: OperationRow, work: (row: OperationRow, op: OperationHandle) => Promise<unknown>): void {
    const instanceId = row.instance_id ?? undefined;
    if (instanceId !== undefined) byInstance.set(instanceId, row.id);
    const entry = activate(row.id, row.kind, instanceId);
    const ctx: OpContext = { requestId: row.request_id ?? undefined, actor: row.actor ?? undefined, clientAddress: row.client_address ?? undefined };
    logger.info('took an operation another server queued', { request_id: ctx.requestId, operation_id: row.id, kind: row.kind, instance_id: instanceId });
    const job: Job<unknown> = {
      id: row.id, kind: row.kind, instanceId, ctx, scope: idempotencyScope(ctx), idempotencyKey: row.idempotency_key ?? undefined,
      clientToken: row.client_token, run: (op) => work(row, op), result: (value) => value, remember: options.rememberRecorded?.(row),
    };
    void execute(job, entry)
      .catch(() => undefined) // recorded; nobody here waits for it
      .finally(() => {
        release();
        deactivate(entry);
      });
  }

  if (sharing && options.shareQueue) {
    const poll = setInterval(() => void takeFromOthers(), options.shareQueue.pollMs);
    poll.unref();
    stopPolling = () => clearInterval(poll);
  }

  return {
    submit,
    runRecorded(work) {
      recordedWork = work;
    },
    get: async (id) => toApiOperation(await mustGet(id)),
    async list(query) {
      const limit = query.limit ?? DEFAULT_PAGE_SIZE;
      const rows = await operations.list({
        instanceId: query.instance_id,
        status: query.status,
        kind: query.kind,
        actor: query.actor,
        clientAddress: query.client_address,
        beforeRowId: query.cursor === undefined ? undefined : decodeCursor(query.cursor),
        limit: limit + 1,
      });
      const { items, next_cursor } = pageOf(rows, limit, toApiOperation);
      return { operations: items, next_cursor };
    },
    activeOn: (instanceId) => byInstance.get(instanceId),
    stats: () => ({ running, queued: waiting.length, active: active.size }),
    get draining() {
      return draining;
    },
    beginShutdown() {
      draining = true;
      stopPolling();
    },
    idle() {
      if (active.size === 0 && admitting === 0) return Promise.resolve();
      return new Promise<void>((resolve) => idleWaiters.push(resolve));
    },
    async interruptActive(note) {
      const entries = [...active.values()];
      for (const entry of entries) entry.interrupted = true;
      // Recorded first, so whoever the interruption answers finds the record saying so.
      for (const entry of entries) {
        try {
          await operations.finish(entry.id, { status: 'interrupted', note }, owner);
        } catch {
          unrecorded.set(entry.id, { status: 'interrupted', note });
        }
        entry.interrupt();
      }
      const ids = entries.map((entry) => entry.id);
      if (ids.length) logger.warn('operations interrupted', { operation_ids: ids, note });
      return ids;
    },
    async recoverAbandoned(note, abandoned = () => true) {
      const found = (await operations.unfinished()).filter((row) => !active.has(row.id) && abandoned(row));
      const rows: OperationRow[] = [];
      for (const row of found) {
        // Unless a live server took it from the queue meanwhile.
        const after = await operations.finish(row.id, { status: 'interrupted', note }, row.owner);
        if (after.status === 'interrupted' && after.owner === row.owner) rows.push(after);
      }
      if (rows.length) logger.warn('operations left unfinished by the previous process are interrupted', { operation_ids: rows.map((r) => r.id) });
      return rows;
    },
    async purgeIdempotencyKeys() {
      const cutoff = new Date(Date.now() - options.idempotencyTtlHours * 3_600_000).toISOString();
      const purged = await idempotency.purgeOlderThan(cutoff);
      if (purged) logger.info('idempotency keys purged', { purged, older_than: cutoff });
      return purged;
    },
  };
}
