/**
 * The repositories on PostgreSQL: the same methods and rows as the SQLite ones (../instances-repo.ts,
 * ../operations-repo.ts), statement for statement. They run on whatever they are given: the pool (each call
 * on its own) or one client inside a transaction.
 */
import type pg from 'pg';
import { IN_FLIGHT_INDEX } from '../schema.js';
import { InstanceBusyError } from '../errors.js';
import { instancesQuery, operationsQuery } from '../list-queries.js';
import {
  BIND_LAUNCH_SQL, FROM_EC2_SQL, GUARDRAIL_SQL, IMPORT_SQL, INSERT_LAUNCH_SQL, launchParams, snapshotParams, type HistoryRow, type InstanceRow, type LaunchedRow,
} from '../instances-repo.js';
import type { IdempotencyRecord, OperationRow } from '../operations-repo.js';
import type { EventsStore, SessionsStore, IdempotencyStore, InstancesStore, OperationsStore, ReplicasStore, Repositories } from '../ports.js';
import type { ReplicaRow } from '../replicas-repo.js';
import { EVENT_BOUNDS_SQL, EVENT_PURGE_SQL, eventsQuery, type EventRow } from '../events-repo.js';
import { SESSION_SQL, sessionParams, type SessionRow } from '../sessions-repo.js';

export type Queryable = Pick<pg.ClientBase, 'query'>;
type Params = Record<string, unknown>;

const now = (): string => new Date().toISOString();

/** `@name` placeholders (as the SQLite statements write them) become PostgreSQL's `$1, $2, …`. */
function positional(sql: string, params: Params): { text: string; values: unknown[] } {
  const order: string[] = [];
  const text = sql.replace(/@([A-Za-z][A-Za-z0-9]*)/g, (_match, name: string) => {
    if (!(name in params)) throw new Error(`no value for @${name}`);
    let index = order.indexOf(name);
    if (index < 0) index = order.push(name) - 1;
    return `$${index + 1}`;
  });
  return { text, values: order.map((name) => params[name] ?? null) };
}

export function createPostgresRepositories(db: Queryable): Repositories {
  async function rows<R extends pg.QueryResultRow>(sql: string, params: Params = {}): Promise<R[]> {
    const { text, values } = positional(sql, params);
    return (await db.query<R>(text, values)).rows;
  }
  async function first<R extends pg.QueryResultRow>(sql: string, params: Params = {}): Promise<R | undefined> {
    return (await rows<R>(sql, params))[0];
  }
  async function run(sql: string, params: Params = {}): Promise<number> {
    const { text, values } = positional(sql, params);
    return (await db.query(text, values)).rowCount ?? 0;
  }
  /** The one-unfinished-operation-per-instance index said no. */
  async function busyOr(instanceId: string | null, write: () => Promise<unknown>): Promise<void> {
    try {
      await write();
    } catch (error) {
      const { code, constraint } = error as { code?: unknown; constraint?: unknown };
      if (instanceId !== null && code === '23505' && constraint === IN_FLIGHT_INDEX) {
        throw new InstanceBusyError(instanceId, { cause: error });
      }
      throw error;
    }
  }

  const instanceByToken = (clientToken: string) =>
    first<InstanceRow>('SELECT * FROM instances WHERE client_token = @clientToken', { clientToken });
  const instanceById = (instanceId: string) =>
    first<LaunchedRow>('SELECT * FROM instances WHERE instance_id = @instanceId', { instanceId });
  async function mustFindInstance(instanceId: string): Promise<LaunchedRow> {
    const row = await instanceById(instanceId);
    if (!row) throw new Error(`no row for instance ${instanceId}`);
    return row;
  }

  const instances: InstancesStore = {
    async insertLaunch(launch) {
      await run(INSERT_LAUNCH_SQL, launchParams(launch, now()));
      return (await instanceByToken(launch.clientToken)) as InstanceRow;
    },
    async bindLaunch(clientToken, instanceId, launchTime) {
      await run(BIND_LAUNCH_SQL, { clientToken, instanceId, launchTime, now: now() });
      return (await instanceByToken(clientToken)) as InstanceRow;
    },
    async completeLaunch(clientToken, snapshot) {
      await run(
        `UPDATE instances SET instance_id = @instanceId, launch_status = 'launched', last_error = NULL, state = @state,
                storage_gb = COALESCE(@storageGb::integer, storage_gb), ${FROM_EC2_SQL}
          WHERE client_token = @clientToken`,
        { ...snapshotParams(snapshot, now()), clientToken },
      );
      return mustFindInstance(snapshot.instanceId);
    },
    async failLaunch(clientToken, status, error) {
      await run(
        `UPDATE instances SET launch_status = @status,
                state = CASE WHEN @status = 'failed' THEN 'failed' ELSE state END,
                last_error = @error, updated_at = @now
          WHERE client_token = @clientToken AND instance_id IS NULL`,
        { clientToken, status, error, now: now() },
      );
      return (await instanceByToken(clientToken)) as InstanceRow;
    },
    findByInstanceId: instanceById,
    findByClientToken: instanceByToken,
    unresolvedLaunches: () =>
      rows<InstanceRow>(
        `SELECT * FROM instances WHERE instance_id IS NULL AND launch_status IN ('launching', 'unknown') ORDER BY row_id`,
      ),
    abandonedLaunches: () =>
      rows<InstanceRow>(
        `SELECT i.* FROM instances i
           JOIN operations o ON o.row_id = (SELECT MAX(row_id) FROM operations WHERE client_token = i.client_token)
          WHERE i.instance_id IS NULL AND i.launch_status IN ('launching', 'unknown')
            AND o.status = 'interrupted' AND o.script_pgid IS NULL
          ORDER BY i.row_id`,
      ),
    async refresh(snapshot) {
      await run(
        `UPDATE instances SET state = CASE WHEN state = 'terminated' THEN state ELSE @state END,
                storage_gb = COALESCE(@storageGb::integer, storage_gb), ${FROM_EC2_SQL}
          WHERE instance_id = @instanceId`,
        snapshotParams(snapshot, now()),
      );
      return mustFindInstance(snapshot.instanceId);
    },
    async markTerminated(instanceId, note) {
      await run(
        `UPDATE instances SET state = 'terminated', public_ip = NULL, last_error = COALESCE(@note, last_error),
                updated_at = @now
          WHERE instance_id = @instanceId`,
        { instanceId, note, now: now() },
      );
      return mustFindInstance(instanceId);
    },
    list(filter) {
      const { sql, params } = instancesQuery(filter, 'postgres');
      return rows<LaunchedRow>(sql, params);
    },
    async setState(instanceId, state) {
      await run(
        `UPDATE instances SET state = @state, updated_at = @now WHERE instance_id = @instanceId AND state <> 'terminated'`,
        { instanceId, state, now: now() },
      );
      return mustFindInstance(instanceId);
    },
    async relaunch(clientToken) {
      await run(
        `UPDATE instances SET launch_status = 'launching', state = 'pending', updated_at = @now
          WHERE client_token = @clientToken AND instance_id IS NULL`,
        { clientToken, now: now() },
      );
      return (await instanceByToken(clientToken)) as InstanceRow;
    },
    async importInstance(row, snapshot) {
      await run(IMPORT_SQL, { ...row, ...snapshotParams(snapshot, now()) });
      return mustFindInstance(snapshot.instanceId);
    },
    live: () =>
      rows<LaunchedRow>(`SELECT * FROM instances WHERE instance_id IS NOT NULL AND state <> 'terminated' ORDER BY row_id`),
    async setGuardrails(instanceId, set) {
      await run(GUARDRAIL_SQL.set, { ...set, instanceId, now: now() });
      return mustFindInstance(instanceId);
    },
    guarded: () => rows<LaunchedRow>(GUARDRAIL_SQL.guarded),
    markExpiryWarned: async (instanceId, expiresAt) => (await run(GUARDRAIL_SQL.warned, { instanceId, expiresAt, now: now() })) === 1,
    markExpiryDone: async (instanceId, expiresAt) => (await run(GUARDRAIL_SQL.expired, { instanceId, expiresAt, now: now() })) === 1,
    claimScheduledEvent: async (instanceId, at) => (await run(GUARDRAIL_SQL.claimScheduled, { instanceId, at })) === 1,
    history: (from, to) => rows<HistoryRow>(GUARDRAIL_SQL.history, { from, to }),
  };

  const operationById = (id: string) => first<OperationRow>('SELECT * FROM operations WHERE id = @id', { id });
  async function mustGetOperation(id: string): Promise<OperationRow> {
    const row = await operationById(id);
    if (!row) throw new Error(`no operation ${id}`);
    return row;
  }

  const operations: OperationsStore = {
    async insert(op) {
      const at = now();
      await busyOr(op.instanceId, () =>
        run(
          `INSERT INTO operations (id, kind, instance_id, client_token, idempotency_key, status, request_id, actor,
                                   client_address, owner, request, started_at, created_at)
           VALUES (@id, @kind, @instanceId, @clientToken, @idempotencyKey, @status, @requestId, @actor, @clientAddress,
                   @owner, @request, @startedAt, @now)`,
          {
            ...op, owner: op.owner ?? null, request: op.request === undefined ? null : JSON.stringify(op.request),
            status: op.running ? 'running' : 'queued', startedAt: op.running ? at : null, now: at,
          },
        ));
      return mustGetOperation(op.id);
    },
    get: operationById,
    async markRunning(id, owner) {
      await run(
        `UPDATE operations SET status = 'running', started_at = @now, owner = COALESCE(@owner, owner)
          WHERE id = @id AND status = 'queued'`,
        { id, owner, now: now() },
      );
      return mustGetOperation(id);
    },
    // SKIP LOCKED: replicas taking work at the same moment each get a different operation, none waits.
    takeQueued: (owner) =>
      first<OperationRow>(
        `UPDATE operations SET status = 'running', started_at = @now, owner = @owner
          WHERE row_id = (SELECT row_id FROM operations
                           WHERE status = 'queued' AND kind <> 'sync' AND owner IS NOT NULL AND owner <> @owner
                           ORDER BY row_id LIMIT 1 FOR UPDATE SKIP LOCKED)
            AND status = 'queued'
        RETURNING *`,
        { owner, now: now() },
      ),
    async setInstance(id, instanceId) {
      await busyOr(instanceId, () => run('UPDATE operations SET instance_id = @instanceId WHERE id = @id', { id, instanceId }));
    },
    async finish(id, outcome, ownedBy) {
      await run(
        `UPDATE operations SET status = @status, exit_code = @exitCode, error_code = @errorCode,
                error_message = @errorMessage, stderr_tail = @stderrTail, note = COALESCE(@note, note), result = @result,
                error_details = @errorDetails, finished_at = @now::text,
                duration_ms = CAST(ROUND(EXTRACT(EPOCH FROM ((@now::text)::timestamptz
                                - COALESCE(started_at, created_at)::timestamptz)) * 1000) AS INTEGER)
          WHERE id = @id AND status IN ('queued', 'running')
            AND (@anyOwner::boolean OR owner IS NOT DISTINCT FROM @ownedBy::text)`,
        {
          id,
          now: now(),
          anyOwner: ownedBy === undefined,
          ownedBy: ownedBy ?? null,
          errorDetails: outcome.errorDetails === undefined ? null : JSON.stringify(outcome.errorDetails),
          status: outcome.status,
          exitCode: outcome.exitCode ?? null,
          errorCode: outcome.errorCode ?? null,
          errorMessage: outcome.errorMessage ?? null,
          stderrTail: outcome.stderrTail ?? null,
          note: outcome.note ?? null,
          result: outcome.result === undefined ? null : JSON.stringify(outcome.result),
        },
      );
      return mustGetOperation(id);
    },
    async setNote(id, note) {
      await run('UPDATE operations SET note = @note WHERE id = @id', { id, note });
    },
    async setScriptGroup(id, pgid) {
      await run('UPDATE operations SET script_pgid = @pgid WHERE id = @id', { id, pgid });
    },
    withScriptGroup: () => rows<OperationRow>('SELECT * FROM operations WHERE script_pgid IS NOT NULL ORDER BY row_id'),
    async scriptRunningOn(instanceId) {
      const row = await first<{ id: string }>(
        `SELECT id FROM operations WHERE instance_id = @instanceId AND script_pgid IS NOT NULL
          ORDER BY row_id DESC LIMIT 1`,
        { instanceId },
      );
      return row?.id;
    },
    unfinished: () => rows<OperationRow>(`SELECT * FROM operations WHERE status IN ('queued', 'running') ORDER BY row_id`),
    async countByKindAndStatus() {
      const counted = await rows<{ kind: OperationRow['kind']; status: OperationRow['status']; count: string }>(
        'SELECT kind, status, COUNT(*) AS count FROM operations GROUP BY kind, status ORDER BY kind, status',
      );
      return counted.map((row) => ({ ...row, count: Number(row.count) }));
    },
    list(filter) {
      const { sql, params } = operationsQuery(filter);
      return rows<OperationRow>(sql, params);
    },
  };

  const idempotency: IdempotencyStore = {
    find: (scope, key) =>
      first<IdempotencyRecord>('SELECT * FROM idempotency_keys WHERE scope = @scope AND key = @key', { scope, key }),
    async claim(record, previousOperationId) {
      // Under READ COMMITTED both statements wait for a concurrent claim of the same key and then see it:
      // the INSERT does nothing, the UPDATE no longer matches. Exactly one claim wins.
      const claimed = previousOperationId === null
        ? await run(
          `INSERT INTO idempotency_keys (scope, key, fingerprint, operation_id, created_at)
           VALUES (@scope, @key, @fingerprint, @operationId, @now)
           ON CONFLICT (scope, key) DO NOTHING`,
          { ...record, now: now() },
        )
        : await run(
          `UPDATE idempotency_keys SET operation_id = @operationId,
                  response_status = NULL, response_body = NULL, response_location = NULL
            WHERE scope = @scope AND key = @key AND operation_id = @previousOperationId`,
          { ...record, previousOperationId },
        );
      return claimed === 1;
    },
    async remember(scope, key, response) {
      await run(
        `UPDATE idempotency_keys SET response_status = @status, response_body = @body, response_location = @location
          WHERE scope = @scope AND key = @key`,
        { scope, key, ...response },
      );
    },
    purgeOlderThan: (cutoff) => run('DELETE FROM idempotency_keys WHERE created_at < @cutoff', { cutoff }),
  };

  // The database's clock, one for every server: theirs may disagree by more than a lease.
  const dbNow = `to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;
  const withAge = '*, CAST(ROUND(EXTRACT(EPOCH FROM (now() - heartbeat_at::timestamptz)) * 1000) AS INTEGER) AS heartbeat_age_ms';
  const replicaById = (id: string) => first<ReplicaRow>(`SELECT ${withAge} FROM replicas WHERE id = @id`, { id });
  const replicas: ReplicasStore = {
    async register(replica) {
      await run(
        `INSERT INTO replicas (id, host, pid, url, started_at, heartbeat_at) VALUES (@id, @host, @pid, @url, ${dbNow}, ${dbNow})`,
        replica,
      );
      return (await replicaById(replica.id)) as ReplicaRow;
    },
    heartbeat: async (id) => (await run(`UPDATE replicas SET heartbeat_at = ${dbNow} WHERE id = @id`, { id })) === 1,
    async setUrl(id, url) {
      await run('UPDATE replicas SET url = @url WHERE id = @id', { id, url });
    },
    list: () => rows<ReplicaRow>(`SELECT ${withAge} FROM replicas ORDER BY started_at, id`),
    async remove(id) {
      await run('DELETE FROM replicas WHERE id = @id', { id });
    },
  };

  const events: EventsStore = {
    after(afterId, filter, limit) {
      const { sql, params } = eventsQuery(afterId, filter, limit);
      return rows<EventRow>(sql, params);
    },
    async bounds() {
      const row = await first<{ oldest: number; newest: number }>(EVENT_BOUNDS_SQL);
      return { oldest: Number(row?.oldest ?? 0), newest: Number(row?.newest ?? 0) };
    },
    purgeOlderThan: (cutoff) => run(EVENT_PURGE_SQL, { cutoff }),
  };

  const sessions: SessionsStore = {
    async create(row) {
      await run(SESSION_SQL.create, sessionParams(row));
    },
    find: (idDigest, now) => first<SessionRow>(SESSION_SQL.find, { idDigest, now }),
    async remove(idDigest) {
      await run(SESSION_SQL.remove, { idDigest });
    },
    purgeExpired: (now) => run(SESSION_SQL.purge, { now }),
  };

  return { instances, operations, idempotency, replicas, events, sessions };
}
