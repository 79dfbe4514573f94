/**
 * The SQLite store behind the asynchronous repository interface (./ports.ts). Each call runs at once on the
 * one connection. A transaction whose work awaits between its statements holds that connection from BEGIN to
 * COMMIT: every other call (and every other transaction) waits until it has ended, or its statements would
 * silently become part of someone else's transaction.
 */
import type { Store } from './index.js';
import type { Async, AsyncStore, Duty, Repositories } from './ports.js';

type AnyRepository = Record<string, (...args: unknown[]) => unknown>;

function settle<R>(call: () => R): Promise<R> {
  try {
    return Promise.resolve(call());
  } catch (error) {
    return Promise.reject(error);
  }
}

export function asyncSqliteStore(store: Store): AsyncStore {
  /** Settles when the transaction that holds the connection has ended; undefined while none does. */
  let held: Promise<void> | undefined;

  function outside<R>(call: () => R): Promise<R> {
    if (!held) return settle(call);
    return held.then(() => outside(call));
  }

  function wrap<T extends object>(repository: T, run: <R>(call: () => R) => Promise<R>): Async<T> {
    const wrapped: Record<string, unknown> = {};
    for (const [name, member] of Object.entries(repository as AnyRepository)) {
      wrapped[name] = (...args: unknown[]) => run(() => member(...args));
    }
    return wrapped as Async<T>;
  }

  const repositoriesRunBy = (run: <R>(call: () => R) => Promise<R>): Repositories => ({
    instances: wrap(store.instances, run),
    operations: wrap(store.operations, run),
    idempotency: wrap(store.idempotency, run),
    replicas: wrap(store.replicas, run),
    events: wrap(store.events, run),
    sessions: wrap(store.sessions, run),
  });
  const shared = repositoriesRunBy(outside);
  // BEGIN IMMEDIATE already makes every writing transaction wait for the one before: any topic is serialised.
  const inTransaction = { ...repositoriesRunBy(settle), serialize: async () => undefined };
  // One server per database file (./lock.ts): a duty is this process's to share out, never another's.
  const duties = new Set<string>();

  return {
    dialect: 'sqlite',
    ...shared,
    async transaction(work) {
      // Checked again after every wait, and claimed in the same turn as the last check.
      while (held) await held;
      let end!: () => void;
      held = new Promise<void>((resolve) => (end = resolve));
      try {
        store.control('BEGIN IMMEDIATE');
        let value;
        try {
          value = await work(inTransaction);
        } catch (error) {
          // SQLite ends the transaction itself after some errors (a full disk); the first error is the news.
          if (store.db.inTransaction) {
            try {
              store.control('ROLLBACK');
            } catch {
              // the error that made us roll back says more
            }
          }
          throw error;
        }
        try {
          store.control('COMMIT');
        } catch (error) {
          // A COMMIT that failed (disk full) leaves the transaction open: end it, so the connection is usable.
          if (store.db.inTransaction) store.control('ROLLBACK');
          throw error;
        }
        return value;
      } finally {
        held = undefined;
        end();
      }
    },
    async tryDuty(name) {
      if (duties.has(name)) return undefined;
      duties.add(name);
      const duty: Duty = {
        name,
        lost: new Promise<void>(() => undefined),
        async release() {
          duties.delete(name);
        },
      };
      return duty;
    },
    health: async () => store.health(),
    close: async () => store.close(),
  };
}
