/** The only code that reads or writes the operations and idempotency_keys tables. */
import type { Db } from './db.js';
import { InstanceBusyError } from './errors.js';
import { operationsQuery, type OperationFilter } from './list-queries.js';

export type OperationKind = 'create' | 'start' | 'stop' | 'terminate' | 'sync';
export type OperationStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'interrupted';

export interface OperationRow {
  row_id: number;
  id: string;
  kind: OperationKind;
  instance_id: string | null;
  client_token: string | null;
  idempotency_key: string | null;
  status: OperationStatus;
  exit_code: number | null;
  error_code: string | null;
  error_message: string | null;
  stderr_tail: string | null;
  note: string | null;
  /** JSON text: what the operation produced (the instance, sync counts), null until it succeeded. */
  result: string | null;
  request_id: string | null;
  actor: string | null;
  client_address: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  duration_ms: number | null;
  /**
   * The process group of the script this operation is running, while it runs (scripts lead their own group).
   * Left set by a server that died: the script may still run, and start-up waits for it or stops it.
   */
  script_pgid: number | null;
  /**
   * The server (replica) that runs it, or while queued the one that accepted it; null for operations
   * recorded before servers were told apart.
   */
  owner: string | null;
  /** JSON text: what the operation asks for beyond its kind and instance (a launch's request), for whoever runs it. */
  request: string | null;
  /** JSON text: the failure's particulars (failing fields, quota, script), for whoever answers its client. */
  error_details: string | null;
}

export interface NewOperation {
  id: string;
  kind: OperationKind;
  instanceId: string | null;
  clientToken: string | null;
  idempotencyKey: string | null;
  requestId: string | null;
  actor: string | null;
  clientAddress: string | null;
  /** The server recording it (see ReplicaRow). */
  owner?: string | null | undefined;
  /** What it asks for beyond kind and instance, stored as JSON. */
  request?: unknown;
  /** Recorded as running from the start (it has its script slot): nobody else may take it from the queue. */
  running?: boolean | undefined;
}

export interface OperationOutcome {
  status: 'succeeded' | 'failed' | 'interrupted';
  exitCode?: number | null | undefined;
  errorCode?: string | null | undefined;
  errorMessage?: string | null | undefined;
  stderrTail?: string | null | undefined;
  note?: string | null | undefined;
  result?: unknown;
  /** Stored as JSON: see OperationRow.error_details. */
  errorDetails?: unknown;
}


export interface IdempotencyRecord {
  scope: string;
  key: string;
  fingerprint: string;
  operation_id: string;
  response_status: number | null;
  response_body: string | null;
  response_location: string | null;
  created_at: string;
}

export interface OperationsRepository {
  /** Throws InstanceBusyError when the instance already has an unfinished operation. */
  insert(op: NewOperation): OperationRow;
  get(id: string): OperationRow | undefined;
  /**
   * Starts the queued operation on the server `owner` (null: servers are not told apart). The row says
   * whether it did: another server may have taken it first, or it was interrupted while it waited.
   */
  markRunning(id: string, owner: string | null): OperationRow;
  /**
   * Takes the oldest operation that another server queued and has not started, for the server `owner`
   * with a free script slot; concurrent takers (on PostgreSQL: other replicas) never take the same one.
   */
  takeQueued(owner: string): OperationRow | undefined;
  /** Throws InstanceBusyError when the instance already has another unfinished operation. */
  setInstance(id: string, instanceId: string): void;
  /**
   * Records the outcome unless the operation already has one (an interrupted operation stays interrupted)
   * or, when `ownedBy` is given, another server runs it now.
   */
  finish(id: string, outcome: OperationOutcome, ownedBy?: string | null): OperationRow;
  setNote(id: string, note: string): void;
  /** Records the process group of the script the operation runs now, or null once it has ended. */
  setScriptGroup(id: string, pgid: number | null): void;
  /** Operations whose script was still running when last recorded (at start-up: left by the previous process). */
  withScriptGroup(): OperationRow[];
  /** The operation on this instance whose script is recorded as still running, if any. */
  scriptRunningOn(instanceId: string): string | undefined;
  /** Operations still queued or running (after a crash: none of them is really running any more). */
  unfinished(): OperationRow[];
  list(filter: OperationFilter): OperationRow[];
  /** How many operations are recorded, by kind and status. */
  countByKindAndStatus(): Array<{ kind: OperationKind; status: OperationStatus; count: number }>;
}

export interface IdempotencyRepository {
  find(scope: string, key: string): IdempotencyRecord | undefined;
  /**
   * Claims the key for an operation: a new key (`previousOperationId` null), or a retry of one whose operation
   * was interrupted or failed unremembered, which points it at the new operation. False when someone else
   * claimed it since it was read (another request, on this server or another): nothing was changed.
   */
  claim(record: { scope: string; key: string; fingerprint: string; operationId: string }, previousOperationId: string | null): boolean;
  remember(scope: string, key: string, response: { status: number; body: string; location: string | null }): void;
  /** Deletes keys created before `cutoff` (ISO time); returns how many. */
  purgeOlderThan(cutoff: string): number;
}

const now = (): string => new Date().toISOString();

export function createOperationsRepository(db: Db): OperationsRepository {
  const insertStmt = db.prepare(
    `INSERT INTO operations (id, kind, instance_id, client_token, idempotency_key, status, request_id, actor,
                             client_address, owner, request, started_at, created_at)
     VALUES (@id, @kind, @instanceId, @clientToken, @idempotencyKey, @status, @requestId, @actor, @clientAddress,
             @owner, @request, @startedAt, @now)`,
  );
  const byId = db.prepare<[string], OperationRow>('SELECT * FROM operations WHERE id = ?');
  const running = db.prepare(
    `UPDATE operations SET status = 'running', started_at = @now, owner = COALESCE(@owner, owner)
      WHERE id = @id AND status = 'queued'`,
  );
  // One writer per SQLite file: the statement takes the row it picks before anyone else can look.
  const takeQueuedStmt = db.prepare<[Record<string, string>], OperationRow>(
    `UPDATE operations SET status = 'running', started_at = @now, owner = @owner
      WHERE row_id = (SELECT row_id FROM operations
                       WHERE status = 'queued' AND kind <> 'sync' AND owner IS NOT NULL AND owner <> @owner
                       ORDER BY row_id LIMIT 1)
    RETURNING *`,
  );
  const setInstanceStmt = db.prepare('UPDATE operations SET instance_id = @instanceId WHERE id = @id');
  const finishStmt = db.prepare(
    `UPDATE operations SET status = @status, exit_code = @exitCode, error_code = @errorCode,
            error_message = @errorMessage, stderr_tail = @stderrTail, note = COALESCE(@note, note), result = @result,
            finished_at = @now,
            error_details = @errorDetails,
            duration_ms = CAST(ROUND((julianday(@now) - julianday(COALESCE(started_at, created_at))) * 86400000) AS INTEGER)
      WHERE id = @id AND status IN ('queued', 'running') AND (@anyOwner = 1 OR owner IS @ownedBy)`,
  );
  const noteStmt = db.prepare('UPDATE operations SET note = @note WHERE id = @id');
  const scriptGroupStmt = db.prepare('UPDATE operations SET script_pgid = @pgid WHERE id = @id');
  const withScriptGroupStmt = db.prepare<[], OperationRow>(
    'SELECT * FROM operations WHERE script_pgid IS NOT NULL ORDER BY row_id',
  );
  const scriptRunningOnStmt = db.prepare<[string], { id: string }>(
    'SELECT id FROM operations WHERE instance_id = ? AND script_pgid IS NOT NULL ORDER BY row_id DESC LIMIT 1',
  );
  const countsStmt = db.prepare<[], { kind: OperationKind; status: OperationStatus; count: number }>(
    'SELECT kind, status, COUNT(*) AS count FROM operations GROUP BY kind, status ORDER BY kind, status',
  );
  const unfinishedStmt = db.prepare<[], OperationRow>(
    `SELECT * FROM operations WHERE status IN ('queued', 'running') ORDER BY row_id`,
  );

  const mustGet = (id: string): OperationRow => {
    const row = byId.get(id);
    if (!row) throw new Error(`no operation ${id}`);
    return row;
  };

  /** The one-unfinished-operation-per-instance index said no. */
  const busyOr = (instanceId: string | null, write: () => void): void => {
    try {
      write();
    } catch (error) {
      const { code, message } = error as { code?: unknown; message?: unknown };
      if (instanceId !== null && code === 'SQLITE_CONSTRAINT_UNIQUE' && String(message).includes('operations.instance_id')) {
        throw new InstanceBusyError(instanceId, { cause: error });
      }
      throw error;
    }
  };

  return {
    insert(op) {
      const at = now();
      busyOr(op.instanceId, () => insertStmt.run({
        id: op.id, kind: op.kind, instanceId: op.instanceId, clientToken: op.clientToken, idempotencyKey: op.idempotencyKey,
        requestId: op.requestId, actor: op.actor, clientAddress: op.clientAddress, owner: op.owner ?? null,
        request: op.request === undefined ? null : JSON.stringify(op.request),
        status: op.running ? 'running' : 'queued', startedAt: op.running ? at : null, now: at,
      }));
      return mustGet(op.id);
    },
    get: (id) => byId.get(id),
    markRunning(id, owner) {
      running.run({ id, owner, now: now() });
      return mustGet(id);
    },
    takeQueued: (owner) => takeQueuedStmt.get({ owner, now: now() }),
    setInstance(id, instanceId) {
      busyOr(instanceId, () => setInstanceStmt.run({ id, instanceId }));
    },
    finish(id, outcome, ownedBy) {
      finishStmt.run({
        id,
        now: now(),
        anyOwner: ownedBy === undefined ? 1 : 0,
        ownedBy: ownedBy ?? null,
        errorDetails: outcome.errorDetails === undefined ? null : JSON.stringify(outcome.errorDetails),
        status: outcome.status,
        exitCode: outcome.exitCode ?? null,
        errorCode: outcome.errorCode ?? null,
        errorMessage: outcome.errorMessage ?? null,
        stderrTail: outcome.stderrTail ?? null,
        note: outcome.note ?? null,
        result: outcome.result === undefined ? null : JSON.stringify(outcome.result),
      });
      return mustGet(id);
    },
    setNote(id, note) {
      noteStmt.run({ id, note });
    },
    setScriptGroup(id, pgid) {
      scriptGroupStmt.run({ id, pgid });
    },
    withScriptGroup: () => withScriptGroupStmt.all(),
    scriptRunningOn: (instanceId) => scriptRunningOnStmt.get(instanceId)?.id,
    unfinished: () => unfinishedStmt.all(),
    countByKindAndStatus: () => countsStmt.all(),
    list(filter) {
      const { sql, params } = operationsQuery(filter);
      return db.prepare<[Record<string, string | number>], OperationRow>(sql).all(params);
    },
  };
}

export function createIdempotencyRepository(db: Db): IdempotencyRepository {
  const findStmt = db.prepare<[string, string], IdempotencyRecord>(
    'SELECT * FROM idempotency_keys WHERE scope = ? AND key = ?',
  );
  const claimNewStmt = db.prepare(
    `INSERT INTO idempotency_keys (scope, key, fingerprint, operation_id, created_at)
     VALUES (@scope, @key, @fingerprint, @operationId, @now)
     ON CONFLICT (scope, key) DO NOTHING`,
  );
  const claimAgainStmt = db.prepare(
    `UPDATE idempotency_keys SET operation_id = @operationId,
            response_status = NULL, response_body = NULL, response_location = NULL
      WHERE scope = @scope AND key = @key AND operation_id = @previousOperationId`,
  );
  const rememberStmt = db.prepare(
    `UPDATE idempotency_keys SET response_status = @status, response_body = @body, response_location = @location
      WHERE scope = @scope AND key = @key`,
  );
  const purgeStmt = db.prepare('DELETE FROM idempotency_keys WHERE created_at < ?');
  return {
    find: (scope, key) => findStmt.get(scope, key),
    claim(record, previousOperationId) {
      const claimed = previousOperationId === null
        ? claimNewStmt.run({ ...record, now: now() })
        : claimAgainStmt.run({ ...record, previousOperationId });
      return claimed.changes === 1;
    },
    remember(scope, key, response) {
      rememberStmt.run({ scope, key, ...response });
    },
    purgeOlderThan: (cutoff) => purgeStmt.run(cutoff).changes,
  };
}
