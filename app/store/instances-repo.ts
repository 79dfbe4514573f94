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
}

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
}


export interface InstancesRepository {
  insertLaunch(launch: NewLaunch): InstanceRow;
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
}

const now = (): string => new Date().toISOString();

export function createInstancesRepository(db: Db): InstancesRepository {
  const insert = db.prepare<[NewLaunch & { now: string }], void>(
    `INSERT INTO instances (client_token, launch_status, name, state, ami, instance_type, storage_gb, key_name,
                            security_group_id, login_user, created_at, updated_at)
     VALUES (@clientToken, 'launching', @name, 'pending', @ami, @instanceType, @storageGb, @keyName,
             @securityGroupId, @loginUser, @now, @now)`,
  );
  const listStatements = new Map<string, Database.Statement<[Record<string, string | number>], LaunchedRow>>();
  const byToken = db.prepare<[string], InstanceRow>('SELECT * FROM instances WHERE client_token = ?');
  const byInstanceId = db.prepare<[string], LaunchedRow>('SELECT * FROM instances WHERE instance_id = ?');
  const complete = db.prepare(
    `UPDATE instances SET instance_id = @instanceId, launch_status = 'launched', last_error = NULL,
            name = COALESCE(@name, name), state = @state, public_ip = @publicIp, private_ip = @privateIp,
            storage_gb = COALESCE(@storageGb, storage_gb), key_name = COALESCE(@keyName, key_name),
            security_group_id = COALESCE(@securityGroupId, security_group_id),
            launch_time = COALESCE(@launchTime, launch_time), updated_at = @now
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
    `UPDATE instances SET name = COALESCE(@name, name),
            state = CASE WHEN state = 'terminated' THEN state ELSE @state END, public_ip = @publicIp,
            private_ip = @privateIp, storage_gb = COALESCE(@storageGb, storage_gb),
            key_name = COALESCE(@keyName, key_name), security_group_id = COALESCE(@securityGroupId, security_group_id),
            launch_time = COALESCE(@launchTime, launch_time), updated_at = @now
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
    `INSERT INTO instances (instance_id, client_token, launch_status, name, state, public_ip, private_ip, ami,
                            instance_type, storage_gb, key_name, security_group_id, login_user, launch_time,
                            last_error, created_at, updated_at)
     VALUES (@instanceId, @clientToken, 'launched', COALESCE(@name, @instanceId), @state, @publicIp, @privateIp, @ami,
             @instanceType, @storageGb, @keyName, @securityGroupId, @loginUser, @launchTime, @lastError, @now, @now)`,
  );
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
      insert.run({ ...launch, now: now() });
      return byToken.get(launch.clientToken) as InstanceRow;
    },
    completeLaunch(clientToken, snapshot) {
      complete.run({ ...snapshot, clientToken, now: now() });
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
      refreshStmt.run({ ...snapshot, now: now() });
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
      importStmt.run({ ...row, ...snapshot, now: now() });
      return mustFind(snapshot.instanceId);
    },
    live: () => liveStmt.all(),
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
