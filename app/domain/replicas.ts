/**
 * Servers sharing one database. Each one registers as a replica and renews a lease (its heartbeat) every
 * third of LEASE_TIMEOUT_S; the operations it records name it as their owner. A replica whose lease has
 * run out (killed, frozen, cut off) is taken for dead: one live replica at a time (a duty) interrupts the
 * operations it was running and reconciles them with EC2 exactly as a restart would, so a launch it left is
 * found by its client token, never launched twice; what it had queued stays queued, for any replica to run. On SQLite one server holds the file: whatever another
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
  /**
   * This machine, as replicas on it are told from others: its host name and, where the system has one, its
   * process-id namespace (containers sharing a host name need not share pids).
   */
  host: string;
  pid: number;
  /**
   * Whether a process of this machine still runs (a replica on this host whose process is gone is dead at
   * once); undefined where pids cannot be compared, and the lease alone decides.
   */
  isAlive?: ((pid: number) => boolean) | undefined;
  logger: Logger;
  newId(): string;
}

export interface Replica {
  readonly id: string;
  /** Whose unfinished work this server takes over as it starts. */
  startUpScope(): Promise<RecoveryScope>;
  /**
   * Renews the lease from now on and, where the database is shared, takes over dead replicas' work.
   * `takenForDead` runs when another server gave this one up (its lease ran out): what it still does here
   * was interrupted in the records already.
   */
  start(lifecycle: LifecycleService, url: string, takenForDead: () => Promise<unknown>): void;
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

  const alive = (row: ReplicaRow): boolean => {
    if (row.id === id) return true;
    if (row.host === options.host && options.isAlive && !options.isAlive(row.pid)) return false;
    return row.heartbeat_age_ms <= options.leaseTimeoutMs;
  };
  const describe = (row: ReplicaRow): string => `${row.id} on ${row.host}, pid ${row.pid}`;

  /**
   * What this server takes over from the replicas that are gone, and whose scripts it can look at. `readAt`
   * is when `rows` were read: an owner missing from them that recorded its operation later is a replica
   * that registered since, alive.
   */
  function scopeOf(rows: ReplicaRow[], readAt: string, dead: (row: ReplicaRow) => boolean, note: string): RecoveryScope {
    const byId = new Map(rows.map((row) => [row.id, row]));
    const gone = new Set(rows.filter(dead).map((row) => row.id));
    return {
      note,
      // Unknown owners (records from before servers were told apart, or a replica already removed) have
      // nobody left to finish them either.
      // Where the database is shared, a queued operation is nobody's to interrupt: the first replica with a
      // free script slot takes it from the queue and runs it, whoever accepted it.
      abandoned: (op: OperationRow) => op.owner !== id && !(options.shared && op.status === 'queued' && op.owner !== null)
        && (op.owner === null || gone.has(op.owner) || (!byId.has(op.owner) && op.created_at < readAt)),
      local: (op: OperationRow) => {
        const owner = op.owner === null ? undefined : byId.get(op.owner);
        return owner === undefined || owner.host === options.host;
      },
    };
  }

  async function takeOver(lifecycle: LifecycleService): Promise<void> {
    const readAt = new Date().toISOString();
    const rows = await store.replicas.list();
    const dead = rows.filter((row) => !alive(row));
    if (dead.length === 0) return;
    logger.warn('replicas stopped renewing their lease; taking over their operations', {
      replicas: dead.map(describe), lease_timeout_ms: options.leaseTimeoutMs,
    });
    const note = `interrupted: the server running it (${dead.map(describe).join('; ')}) stopped renewing its lease`;
    const deadIds = new Set(dead.map((row) => row.id));
    const recovering = lifecycle.recover({ requestId: 'takeover' }, scopeOf(rows, readAt, (row) => deadIds.has(row.id), note));
    recovering.settled.catch(() => undefined); // its failure is done's too
    await recovering.done;
    for (const row of dead) await store.replicas.remove(row.id);
  }

  async function heartbeat(takenForDead: () => Promise<unknown>): Promise<void> {
    if (await store.replicas.heartbeat(id)) return;
    if (left) return;
    logger.error('this server was taken for dead by another (its lease ran out): stopping what it still runs, then registering again', { replica: id });
    await takenForDead();
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
      const readAt = new Date().toISOString();
      const rows = await store.replicas.list();
      // On SQLite this server holds the file: every other registration is a previous process's.
      const dead = (row: ReplicaRow): boolean => (options.shared ? !alive(row) : row.id !== id);
      // This start-up takes over their work: nobody else needs to.
      for (const row of rows) if (dead(row)) await store.replicas.remove(row.id);
      return scopeOf(rows, readAt, dead, 'interrupted: the server stopped while this operation was in flight');
    },
    start(lifecycle, url, takenForDead) {
      void store.replicas.setUrl(id, url).catch(() => undefined);
      const every = Math.max(250, Math.floor(options.leaseTimeoutMs / 3));
      const tick = (): void => {
        heartbeat(takenForDead).catch((error: unknown) => {
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
