/**
 * Servers sharing one database. Each one registers as a replica and renews a lease (its heartbeat) every
 * third of LEASE_TIMEOUT_S; the operations it records name it as their owner. A replica whose lease has
 * run out (killed, frozen, cut off) is taken for dead: one live replica at a time (a duty) interrupts its
 * unfinished operations and reconciles them with EC2 exactly as a restart would, so a launch it left is
 * found by its client token, never launched twice. On SQLite one server holds the file: whatever another
 * process recorded is a previous process's, and is taken over at start-up.
 */
import type { Logger } from '../logger.js';
import type { OperationRow } from '../store/operations-repo.js';
import type { AsyncStore, Duty } from '../store/ports.js';
import type { ReplicaRow } from '../store/replicas-repo.js';
import type { LifecycleService, RecoveryScope } from './lifecycle.js';

export interface ReplicaOptions {
  store: Pick<AsyncStore, 'replicas' | 'tryDuty'>;
  /** Whether other servers may share the database (PostgreSQL); false: this server holds it alone. */
  shared: boolean;
  leaseTimeoutMs: number;
  host: string;
  pid: number;
  /** Whether a process of this machine still runs (a replica on this host whose process is gone is dead now). */
  isAlive(pid: number): boolean;
  logger: Logger;
  newId(): string;
}

export interface Replica {
  readonly id: string;
  /** Whose unfinished work this server takes over as it starts. */
  startUpScope(): Promise<RecoveryScope>;
  /** Renews the lease from now on and, where the database is shared, takes over dead replicas' work. */
  start(lifecycle: LifecycleService, url: string): void;
  /** Runs `work` on one replica at a time for `duty` (periodic sync, key purging); false when another holds it. */
  asDuty(duty: string, work: () => Promise<unknown>): Promise<boolean>;
  /** Stops renewing and leaves the table, so nobody waits for this lease to run out. */
  leave(): Promise<void>;
}

export async function joinReplicas(options: ReplicaOptions): Promise<Replica> {
  const { store, logger } = options;
  const id = options.newId();
  await store.replicas.register({ id, host: options.host, pid: options.pid, url: null });
  const timers: NodeJS.Timeout[] = [];
  const duties = new Map<string, Duty>();
  let takingOver = false;
  let left = false;

  const alive = (row: ReplicaRow, now: number): boolean => {
    if (row.id === id) return true;
    if (row.host === options.host && !options.isAlive(row.pid)) return false;
    return Date.parse(row.heartbeat_at) >= now - options.leaseTimeoutMs;
  };
  const describe = (row: ReplicaRow): string => `${row.id} on ${row.host}, pid ${row.pid}`;

  /** What this server takes over from the replicas that are gone, and whose scripts it can look at. */
  function scopeOf(rows: ReplicaRow[], dead: (row: ReplicaRow) => boolean, note: string): RecoveryScope {
    const byId = new Map(rows.map((row) => [row.id, row]));
    const gone = new Set(rows.filter(dead).map((row) => row.id));
    return {
      note,
      // Unknown owners (records from before servers were told apart, or a replica already removed) have
      // nobody left to finish them either.
      abandoned: (op: OperationRow) => op.owner !== id && (op.owner === null || gone.has(op.owner) || !byId.has(op.owner)),
      local: (op: OperationRow) => {
        const owner = op.owner === null ? undefined : byId.get(op.owner);
        return owner === undefined || owner.host === options.host;
      },
    };
  }

  async function takeOver(lifecycle: LifecycleService): Promise<void> {
    const now = Date.now();
    const rows = await store.replicas.list();
    const dead = rows.filter((row) => !alive(row, now));
    if (dead.length === 0) return;
    logger.warn('replicas stopped renewing their lease; taking over their operations', {
      replicas: dead.map(describe), lease_timeout_ms: options.leaseTimeoutMs,
    });
    const note = `interrupted: the server running it (${dead.map(describe).join('; ')}) stopped renewing its lease`;
    const deadIds = new Set(dead.map((row) => row.id));
    await lifecycle.recover({ requestId: 'takeover' }, scopeOf(rows, (row) => deadIds.has(row.id), note)).done;
    for (const row of dead) await store.replicas.remove(row.id);
  }

  async function heartbeat(): Promise<void> {
    if (await store.replicas.heartbeat(id)) return;
    if (left) return;
    logger.error('this server was taken for dead by another (its lease ran out); registering again', { replica: id });
    await store.replicas.register({ id, host: options.host, pid: options.pid, url: null });
  }

  async function asDuty(name: string, work: () => Promise<unknown>): Promise<boolean> {
    let duty = duties.get(name);
    if (!duty) {
      duty = await store.tryDuty(name);
      if (!duty) return false;
      const held = duty;
      duties.set(name, held);
      void held.lost.then(() => {
        if (duties.get(name) === held) duties.delete(name);
        if (!left) logger.warn('lost a duty with its database connection; another server may take it', { duty: name, replica: id });
      });
    }
    await work();
    return true;
  }

  return {
    id,
    async startUpScope() {
      const rows = await store.replicas.list();
      if (!options.shared) {
        // This server holds the file: every other registration is a previous process's.
        for (const row of rows) if (row.id !== id) await store.replicas.remove(row.id);
        return scopeOf(rows, (row) => row.id !== id, 'interrupted: the server stopped while this operation was in flight');
      }
      const now = Date.now();
      return scopeOf(rows, (row) => !alive(row, now), 'interrupted: the server stopped while this operation was in flight');
    },
    start(lifecycle, url) {
      void store.replicas.setUrl(id, url).catch(() => undefined);
      const every = Math.max(250, Math.floor(options.leaseTimeoutMs / 3));
      const tick = (): void => {
        heartbeat().catch((error: unknown) => {
          logger.warn('could not renew this server\'s lease', { replica: id, error: error instanceof Error ? error.message : String(error) });
        });
        if (!options.shared || takingOver) return;
        takingOver = true;
        asDuty('take-over-dead-replicas', () => takeOver(lifecycle))
          .catch((error: unknown) => {
            logger.warn('taking over the work of dead replicas failed; trying again', { error: error instanceof Error ? error.message : String(error) });
          })
          .finally(() => {
            takingOver = false;
          });
      };
      const timer = setInterval(tick, every);
      timer.unref();
      timers.push(timer);
    },
    asDuty,
    async leave() {
      left = true;
      for (const timer of timers) clearInterval(timer);
      for (const duty of duties.values()) await duty.release();
      duties.clear();
      await store.replicas.remove(id);
    },
  };
}
