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
  AppError, IdempotencyMismatchError, InterruptedError, NotFoundError, OperationInFlightError, ScriptError,
  StorageUnavailableError, UnavailableError,
} from './errors.js';
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
  /** Records the instance once it is known (a launch learns its id from EC2). */
  setInstance(instanceId: string): Promise<void>;
  note(text: string): Promise<void>;
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
  /** How to remember the outcome for replays; a failure mapped to undefined is not remembered (retry runs again). */
  remember?: { success(value: T): StoredResponse; failure(error: unknown): StoredResponse | undefined } | undefined;
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
}

export interface OperationsEngine {
  submit<T>(spec: SubmitSpec<T>): Promise<Submission<T>>;
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
  /** Marks every operation still in flight interrupted (shutdown timed out); returns their ids. */
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

/** The failure as the operation record shows it. */
export function describeFailure(error: unknown): {
  errorCode: string; errorMessage: string; exitCode: number | null; stderrTail: string | null;
} {
  if (error instanceof ScriptError) {
    return {
      errorCode: error.code,
      errorMessage: error.details.code ? `${error.message} (${error.details.code})` : error.message,
      exitCode: error.details.exitCode ?? null,
      stderrTail: error.details.stderrTail ?? null,
    };
  }
  if (error instanceof AppError) {
    return { errorCode: error.code, errorMessage: error.message, exitCode: null, stderrTail: null };
  }
  return { errorCode: 'internal', errorMessage: error instanceof Error ? error.message : String(error), exitCode: null, stderrTail: null };
}

interface Active {
  id: string;
  instanceId: string | undefined;
  interrupted: boolean;
  /** Answers whoever waits for the operation at once (the work itself may take a moment to die). */
  interrupt(): void;
}

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
  let idleWaiters: Array<() => void> = [];

  function settleIdle(): void {
    if (active.size > 0 || admitting > 0) return;
    const waiters = idleWaiters;
    idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  function release(): void {
    const next = waiting.shift();
    if (next) next(); // the slot passes straight to the next in line (FIFO)
    else running -= 1;
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

  function inFlightError(instanceId: string, busy: string): OperationInFlightError {
    return new OperationInFlightError(
      `Operation ${busy} on instance ${instanceId} is still in flight; retry when it has finished`,
      busy,
    );
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
          owner: options.owner ?? null,
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
        throw inFlightError(error.instanceId, holder?.id ?? 'on another server');
      }
      throw error;
    }

    let interrupt: () => void = () => undefined;
    const interruption = new Promise<never>((_resolve, reject) => {
      interrupt = () => reject(new InterruptedError(`Operation ${id} was interrupted by a shutdown`));
    });
    interruption.catch(() => undefined);
    const entry: Active = { id, instanceId, interrupted: false, interrupt };
    active.set(id, entry);

    const handle: OperationHandle = {
      id,
      clientToken: spec.clientToken ?? null,
      async setInstance(launchedId) {
        await operations.setInstance(id, launchedId);
      },
      async note(text) {
        await operations.setNote(id, text);
      },
    };

    const remember = async (tx: Transaction, response: StoredResponse | undefined): Promise<void> => {
      if (!spec.idempotency || !response) return;
      await tx.idempotency.remember(scope, spec.idempotency.key, {
        status: response.status,
        body: JSON.stringify(response.body ?? null),
        location: response.location ?? null,
      });
    };

    // A write of this operation's record the store refused: record at least that it failed, or when even
    // that is refused, keep the outcome for later; either way it is over, and its client gets the refusal.
    const recorded = async (write: () => Promise<unknown>): Promise<void> => {
      try {
        await write();
      } catch (error) {
        if (!(error instanceof StorageUnavailableError)) throw error;
        const outcome: OperationOutcome = {
          status: 'failed', errorCode: error.code, errorMessage: `its record could not be written: ${error.message}`,
        };
        try {
          await operations.finish(id, outcome);
        } catch {
          unrecorded.set(id, outcome);
        }
        logger.error('operation record not written', {
          request_id: ctx?.requestId, operation_id: id, kind: spec.kind, instance_id: instanceId,
          error: error.message, kept_for_later: unrecorded.has(id),
        });
        throw error;
      }
    };

    const work = (async () => {
      await slot;
      try {
        await recorded(() => operations.markRunning(id));
        let value: T;
        try {
          value = await spec.run(handle);
        } catch (error) {
          if (entry.interrupted) throw new InterruptedError(`Operation ${id} was interrupted by a shutdown`);
          const failure = describeFailure(error);
          await recorded(() => store.transaction(async (tx) => {
            await tx.operations.finish(id, { status: 'failed', ...failure });
            await remember(tx, spec.remember?.failure(error));
          }));
          logger.warn('operation failed', {
            request_id: ctx?.requestId, operation_id: id, kind: spec.kind, instance_id: instanceId,
            error_code: failure.errorCode, error: failure.errorMessage,
          });
          throw error;
        }
        let finished: OperationRow | undefined;
        await recorded(() => store.transaction(async (tx) => {
          finished = await tx.operations.finish(id, { status: 'succeeded', result: spec.result ? spec.result(value) : undefined });
          await remember(tx, spec.remember?.success(value));
        }));
        logger.info('operation succeeded', {
          request_id: ctx?.requestId, operation_id: id, kind: spec.kind, instance_id: finished?.instance_id,
        });
        return value;
      } finally {
        if (capped) release();
        active.delete(id);
        if (instanceId !== undefined && byInstance.get(instanceId) === id) byInstance.delete(instanceId);
        settleIdle();
      }
    })();
    work.catch(() => undefined);
    const done = Promise.race([work, interruption]);
    done.catch(() => undefined); // asynchronous requests never await it; the outcome is in the record

    return { type: 'started', operation: toApiOperation(row), done };
  }

  return {
    submit,
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
          await operations.finish(entry.id, { status: 'interrupted', note });
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
      const rows = (await operations.unfinished()).filter((row) => !active.has(row.id) && abandoned(row));
      for (const row of rows) await operations.finish(row.id, { status: 'interrupted', note });
      if (rows.length) logger.warn('operations left unfinished by the previous process are interrupted', { operation_ids: rows.map((r) => r.id) });
      return Promise.all(rows.map((row) => mustGet(row.id)));
    },
    async purgeIdempotencyKeys() {
      const cutoff = new Date(Date.now() - options.idempotencyTtlHours * 3_600_000).toISOString();
      const purged = await idempotency.purgeOlderThan(cutoff);
      if (purged) logger.info('idempotency keys purged', { purged, older_than: cutoff });
      return purged;
    },
  };
}
