/** The only code that reads or writes the instances table. */
import type { Db } from './db.js';
import type Database from 'better-sqlite3';
import { instancesQuery, type ListFilter } from './list-queries.js';
import {
  createIdempotencyRepository, createOperationsRepository, type IdempotencyRepository, type OperationsRepository,
} from './operations-repo.js';
import { createReplicasRepository, type ReplicasRepository } from './replicas-repo.js';
import { createEventsRepository, type EventsRepository } from './events-repo.js';
import { createSessionsRepository, type SessionsRepository } from './sessions-repo.js';

export type LaunchStatus = 'launching' | 'launched' | 'failed' | 'unknown';
export type RecordedState = 'pending' | 'running' | 'stopping' | 'stopped' | 'shutting-down' | 'terminated' | 'failed';

export interface InstanceRow {
  row_id: number;
  instance_id: string | null;
  client_token: string;
  launch_status: LaunchStatus;
  name: string;
  state: RecordedState;
  public_ip: string | null;
  private_ip: string | null;
  ami: string;
  instance_type: string;
  storage_gb: number | null;
  key_name: string | null;
  security_group_id: string | null;
  login_user: string;
  launch_time: string | null;
  last_error: string | null;
  created_at: string;
  updated_at: string;
  /** The API token's name that launched it, or the Owner tag EC2 reports. */
  owner: string | null;
  /** The user's tags, a JSON object of strings (the service's own tags are not among them). */
  tags: string;
  expires_at: string | null;
  on_expiry: OnExpiry | null;
  /** When the warning before expires_at went out, for this expires_at. */
  expiry_warned_at: string | null;
  /** When the expiry's action was carried out (or found done), for this expires_at. */
  expiry_done_at: string | null;
  /** The off-hours schedule, JSON, or null. */
  schedule: string | null;
  /** The time of the latest scheduled stop or start the scheduler has dealt with (earlier ones are past). */
  schedule_done_at: string | null;
}

export type OnExpiry = 'stop' | 'terminate';

/** What the guardrails of one instance are set to (create, PATCH). */
export interface Guardrails {
  expiresAt: string | null;
  onExpiry: OnExpiry | null;
  /** JSON, or null. */
  schedule: string | null;
  /** When the schedule was set: only its stops and starts after this time are carried out. */
  scheduleSince: string;
}

/** One recorded state change, as the free-tier meter reads it. */
export interface HistoryRow {
  instance_id: string;
  name: string;
  instance_type: string;
  storage_gb: number | null;
  state: string;
  public_ip: number;
  at: string;
  estimated: number;
}

/**
 * The guardrail statements, the same text on both stores. A new expiry starts unwarned and undone, and so
 * does a new action at expiry (stop → terminate after the stop still terminates); a new schedule counts
 * only the stops and starts after it was set.
 */
export const GUARDRAIL_SQL = {
  set: `UPDATE instances SET
          expiry_warned_at = CASE WHEN expires_at IS NOT DISTINCT FROM @expiresAt THEN expiry_warned_at ELSE NULL END,
          expiry_done_at = CASE WHEN expires_at IS NOT DISTINCT FROM @expiresAt AND on_expiry IS NOT DISTINCT FROM @onExpiry
                                THEN expiry_done_at ELSE NULL END,
          schedule_done_at = CASE WHEN schedule IS NOT DISTINCT FROM @schedule THEN schedule_done_at ELSE @scheduleSince END,
          expires_at = @expiresAt, on_expiry = @onExpiry, schedule = @schedule, updated_at = @now
        WHERE instance_id = @instanceId`,
  warned: `UPDATE instances SET expiry_warned_at = @now
            WHERE instance_id = @instanceId AND expires_at = @expiresAt AND expiry_warned_at IS NULL`,
  expired: `UPDATE instances SET expiry_done_at = @now
             WHERE instance_id = @instanceId AND expires_at = @expiresAt AND expiry_done_at IS NULL`,
  claimScheduled: `UPDATE instances SET schedule_done_at = @at
                    WHERE instance_id = @instanceId AND schedule IS NOT NULL
                      AND (schedule_done_at IS NULL OR schedule_done_at < @at)`,
  guarded: `SELECT * FROM instances
             WHERE instance_id IS NOT NULL AND state <> 'terminated'
               AND ((expires_at IS NOT NULL AND expiry_done_at IS NULL) OR schedule IS NOT NULL)
             ORDER BY row_id`,
  // Every change up to the end, of the instances that changed since the start or are alive now: the state at
  // the start is the last change before it.
  history: `SELECT instance_id, name, instance_type, storage_gb, state, public_ip, at, estimated FROM instance_history
             WHERE at < @to AND instance_id IN (
               SELECT instance_id FROM instance_history WHERE at >= @from
               UNION SELECT instance_id FROM instances WHERE instance_id IS NOT NULL AND state <> 'terminated')
             ORDER BY instance_id, at, row_id`,
} as const;

/** A row that has an EC2 instance id (the only rows the API shows). */
export type LaunchedRow = InstanceRow & { instance_id: string };

export interface NewLaunch {
  clientToken: string;
  name: string;
  ami: string;
  instanceType: string;
  storageGb: number;
  keyName: string | null;
  securityGroupId: string | null;
  loginUser: string;
  owner?: string | null | undefined;
  /** JSON object of the user's tags (default none). */
  tags?: string | undefined;
  expiresAt?: string | null | undefined;
  onExpiry?: OnExpiry | null | undefined;
  schedule?: string | null | undefined;
  /** When the schedule was set (default now): only its stops and starts after this time are carried out. */
  scheduleSince?: string | undefined;
}

/** A launch with every optional field filled in, as the statements need them. */
export function launchParams(launch: NewLaunch, at: string): Record<string, unknown> {
  return { owner: null, tags: '{}', expiresAt: null, onExpiry: null, schedule: null, scheduleSince: at, ...launch, now: at };
}

/** A snapshot with every optional field filled in (null: keep what is recorded). */
export function snapshotParams(snapshot: Ec2Snapshot, at: string): Record<string, unknown> {
  return { tags: null, owner: null, ...snapshot, now: at };
}

/** What EC2 reported about an instance, as stored. */
export interface Ec2Snapshot {
  instanceId: string;
  name: string | null;
  state: Exclude<RecordedState, 'failed'>;
  publicIp: string | null;
  privateIp: string | null;
  storageGb: number | null;
  keyName: string | null;
  securityGroupId: string | null;
  launchTime: string | null;
  /** The user's tags as EC2 has them (JSON object), or null when the script did not report tags. */
  tags?: string | null | undefined;
  /** The Owner tag, or null when there is none (a recorded owner is kept). */
  owner?: string | null | undefined;
}


export const INSERT_LAUNCH_SQL = `INSERT INTO instances (client_token, launch_status, name, state, ami, instance_type, storage_gb, key_name,
                            security_group_id, login_user, owner, tags, expires_at, on_expiry, schedule, schedule_done_at,
                            created_at, updated_at)
     VALUES (@clientToken, 'launching', @name, 'pending', @ami, @instanceType, @storageGb, @keyName,
             @securityGroupId, @loginUser, @owner, @tags, @expiresAt, @onExpiry, @schedule, @scheduleSince, @now, @now)`;

/** What refreshing a record from EC2 sets besides its state (the same on both stores). */
export const FROM_EC2_SQL = `name = COALESCE(@name, name), public_ip = @publicIp, private_ip = @privateIp,
            key_name = COALESCE(@keyName, key_name), security_group_id = COALESCE(@securityGroupId, security_group_id),
            launch_time = COALESCE(@launchTime, launch_time), tags = COALESCE(@tags, tags), owner = COALESCE(@owner, owner),
            updated_at = @now`;

export const IMPORT_SQL = `INSERT INTO instances (instance_id, client_token, launch_status, name, state, public_ip, private_ip, ami,
                            instance_type, storage_gb, key_name, security_group_id, login_user, launch_time,
                            last_error, owner, tags, created_at, updated_at)
     VALUES (@instanceId, @clientToken, 'launched', COALESCE(@name, @instanceId), @state, @publicIp, @privateIp, @ami,
             @instanceType, @storageGb, @keyName, @securityGroupId, @loginUser, @launchTime, @lastError, @owner,
             COALESCE(@tags, '{}'), @now, @now)`;

/**
 * The instance EC2 launched under a client token, recorded the moment its id is known (the launch's own
 * wait is not over): pending, with EC2's launch time. Only a launch not recorded with an id yet is bound.
 */
export const BIND_LAUNCH_SQL = `UPDATE instances SET instance_id = @instanceId, launch_status = 'launched', last_error = NULL,
            state = 'pending', launch_time = COALESCE(@launchTime, launch_time), updated_at = @now
      WHERE client_token = @clientToken AND instance_id IS NULL`;

export interface InstancesRepository {
  insertLaunch(launch: NewLaunch): InstanceRow;
  /** Records the id EC2 gave the launch, as pending (see BIND_LAUNCH_SQL); the row, bound now or before. */
  bindLaunch(clientToken: string, instanceId: string, launchTime: string | null): InstanceRow;
  completeLaunch(clientToken: string, snapshot: Ec2Snapshot): LaunchedRow;
  /** `failed`: nothing was launched. `unknown`: it may have been; reconciliation looks for the client token. */
  failLaunch(clientToken: string, status: 'failed' | 'unknown', error: string): InstanceRow;
  findByInstanceId(instanceId: string): LaunchedRow | undefined;
  findByClientToken(clientToken: string): InstanceRow | undefined;
  /** Launches whose outcome is not known yet (crash or indefinite failure), oldest first. */
  unresolvedLaunches(): InstanceRow[];
  /**
   * Unresolved launches nobody works on any more: the newest operation carrying the client token was
   * interrupted (crash, shutdown timeout) and no script of it is still running. EC2 alone can tell what
   * became of them, and nothing will change that answer later.
   */
  abandonedLaunches(): InstanceRow[];
  refresh(snapshot: Ec2Snapshot): LaunchedRow;
  markTerminated(instanceId: string, note: string | null): LaunchedRow;
  list(filter: ListFilter): LaunchedRow[];
  /** Shows a transitional state (pending, stopping, shutting-down) while an operation runs. */
  setState(instanceId: string, state: RecordedState): LaunchedRow;
  /** A launch that failed or whose outcome is unknown is tried again with the same client token. */
  relaunch(clientToken: string): InstanceRow;
  /** Records an instance found in EC2 that this service did not launch (or whose launch it lost). */
  importInstance(row: { clientToken: string; ami: string; instanceType: string; loginUser: string; lastError: string | null }, snapshot: Ec2Snapshot): LaunchedRow;
  /** Every record with an instance id that is not terminated (what reconciliation compares with EC2). */
  live(): LaunchedRow[];
  setGuardrails(instanceId: string, guardrails: Guardrails): LaunchedRow;
  /** Live instances with an expiry not yet acted on, or a schedule: what the scheduler looks at. */
  guarded(): LaunchedRow[];
  /** Whether this call is the one that records the warning for `expiresAt` (false: already warned, or changed). */
  markExpiryWarned(instanceId: string, expiresAt: string): boolean;
  /** Whether this call is the one that records the expiry `expiresAt` as carried out. */
  markExpiryDone(instanceId: string, expiresAt: string): boolean;
  /** Whether this call claims the scheduled stop or start at `at` (false: it, or a later one, was dealt with). */
  claimScheduledEvent(instanceId: string, at: string): boolean;
  /** The recorded state changes the meter needs for [from, to). */
  history(from: string, to: string): HistoryRow[];
}

const now = (): string => new Date().toISOString();

export function createInstancesRepository(db: Db): InstancesRepository {
  const insert = db.prepare<[Record<string, unknown>], void>(
    INSERT_LAUNCH_SQL,
  );
  const listStatements = new Map<string, Database.Statement<[Record<string, string | number>], LaunchedRow>>();
  const byToken = db.prepare<[string], InstanceRow>('SELECT * FROM instances WHERE client_token = ?');
  const byInstanceId = db.prepare<[string], LaunchedRow>('SELECT * FROM instances WHERE instance_id = ?');
  const bind = db.prepare(BIND_LAUNCH_SQL);
  const complete = db.prepare(
    `UPDATE instances SET instance_id = @instanceId, launch_status = 'launched', last_error = NULL, state = @state,
            storage_gb = COALESCE(@storageGb, storage_gb), ${FROM_EC2_SQL}
      WHERE client_token = @clientToken`,
  );
  const fail = db.prepare(
    `UPDATE instances SET launch_status = @status, state = CASE WHEN @status = 'failed' THEN 'failed' ELSE state END,
            last_error = @error, updated_at = @now
      WHERE client_token = @clientToken AND instance_id IS NULL`,
  );
  const unresolved = db.prepare<[], InstanceRow>(
    `SELECT * FROM instances WHERE instance_id IS NULL AND launch_status IN ('launching', 'unknown') ORDER BY row_id`,
  );
  const abandoned = db.prepare<[], InstanceRow>(
    `SELECT i.* FROM instances i
       JOIN operations o ON o.row_id = (SELECT MAX(row_id) FROM operations WHERE client_token = i.client_token)
      WHERE i.instance_id IS NULL AND i.launch_status IN ('launching', 'unknown')
        AND o.status = 'interrupted' AND o.script_pgid IS NULL
      ORDER BY i.row_id`,
  );
  const refreshStmt = db.prepare(
    `UPDATE instances SET state = CASE WHEN state = 'terminated' THEN state ELSE @state END,
            storage_gb = COALESCE(@storageGb, storage_gb), ${FROM_EC2_SQL}
      WHERE instance_id = @instanceId`,
  );
  const terminate = db.prepare(
    `UPDATE instances SET state = 'terminated', public_ip = NULL, last_error = COALESCE(@note, last_error),
            updated_at = @now
      WHERE instance_id = @instanceId`,
  );

  const setStateStmt = db.prepare(
    `UPDATE instances SET state = @state, updated_at = @now WHERE instance_id = @instanceId AND state <> 'terminated'`,
  );
  const relaunchStmt = db.prepare(
    `UPDATE instances SET launch_status = 'launching', state = 'pending', updated_at = @now
      WHERE client_token = @clientToken AND instance_id IS NULL`,
  );
  const importStmt = db.prepare(
    IMPORT_SQL,
  );
  const guardrails = {
    set: db.prepare(GUARDRAIL_SQL.set),
    warned: db.prepare(GUARDRAIL_SQL.warned),
    expired: db.prepare(GUARDRAIL_SQL.expired),
    claimScheduled: db.prepare(GUARDRAIL_SQL.claimScheduled),
    guarded: db.prepare<[], LaunchedRow>(GUARDRAIL_SQL.guarded),
    history: db.prepare<[{ from: string; to: string }], HistoryRow>(GUARDRAIL_SQL.history),
  };
  const liveStmt = db.prepare<[], LaunchedRow>(
    `SELECT * FROM instances WHERE instance_id IS NOT NULL AND state <> 'terminated' ORDER BY row_id`,
  );

  function mustFind(instanceId: string): LaunchedRow {
    const row = byInstanceId.get(instanceId);
    if (!row) throw new Error(`no row for instance ${instanceId}`);
    return row;
  }

  return {
    insertLaunch(launch) {
      insert.run(launchParams(launch, now()));
      return byToken.get(launch.clientToken) as InstanceRow;
    },
    bindLaunch(clientToken, instanceId, launchTime) {
      bind.run({ clientToken, instanceId, launchTime, now: now() });
      return byToken.get(clientToken) as InstanceRow;
    },
    completeLaunch(clientToken, snapshot) {
      complete.run({ ...snapshotParams(snapshot, now()), clientToken });
      return mustFind(snapshot.instanceId);
    },
    failLaunch(clientToken, status, error) {
      fail.run({ clientToken, status, error, now: now() });
      return byToken.get(clientToken) as InstanceRow;
    },
    findByInstanceId: (instanceId) => byInstanceId.get(instanceId),
    findByClientToken: (clientToken) => byToken.get(clientToken),
    unresolvedLaunches: () => unresolved.all(),
    abandonedLaunches: () => abandoned.all(),
    refresh(snapshot) {
      refreshStmt.run(snapshotParams(snapshot, now()));
      return mustFind(snapshot.instanceId);
    },
    markTerminated(instanceId, note) {
      terminate.run({ instanceId, note, now: now() });
      return mustFind(instanceId);
    },
    list(filter) {
      const { sql, params } = instancesQuery(filter);
      // At most a few dozen shapes, each prepared once (preparing costs about a quarter of reading twenty
      // rows, on the busiest route).
      let statement = listStatements.get(sql);
      if (!statement) {
        statement = db.prepare<[Record<string, string | number>], LaunchedRow>(sql);
        listStatements.set(sql, statement);
      }
      return statement.all(params);
    },
    setState(instanceId, state) {
      setStateStmt.run({ instanceId, state, now: now() });
      return mustFind(instanceId);
    },
    relaunch(clientToken) {
      relaunchStmt.run({ clientToken, now: now() });
      return byToken.get(clientToken) as InstanceRow;
    },
    importInstance(row, snapshot) {
      importStmt.run({ ...row, ...snapshotParams(snapshot, now()) });
      return mustFind(snapshot.instanceId);
    },
    live: () => liveStmt.all(),
    setGuardrails(instanceId, set) {
      guardrails.set.run({ ...set, instanceId, now: now() });
      return mustFind(instanceId);
    },
    guarded: () => guardrails.guarded.all(),
    markExpiryWarned: (instanceId, expiresAt) => guardrails.warned.run({ instanceId, expiresAt, now: now() }).changes === 1,
    markExpiryDone: (instanceId, expiresAt) => guardrails.expired.run({ instanceId, expiresAt, now: now() }).changes === 1,
    claimScheduledEvent: (instanceId, at) => guardrails.claimScheduled.run({ instanceId, at }).changes === 1,
    history: (from, to) => guardrails.history.all({ from, to }),
  };
}

export interface Store {
  db: Db;
  instances: InstancesRepository;
  operations: OperationsRepository;
  idempotency: IdempotencyRepository;
  replicas: ReplicasRepository;
  events: EventsRepository;
  sessions: SessionsRepository;
  /** Runs `fn` in one SQLite transaction. */
  transaction<T>(fn: () => T): T;
  close(): void;
}

export function createStore(db: Db): Store {
  return {
    db,
    instances: createInstancesRepository(db),
    operations: createOperationsRepository(db),
    idempotency: createIdempotencyRepository(db),
    replicas: createReplicasRepository(db),
    events: createEventsRepository(db),
    sessions: createSessionsRepository(db),
    transaction: (fn) => db.transaction(fn)(),
    close: () => db.close(),
  };
}
