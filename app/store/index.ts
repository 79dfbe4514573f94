import { openDatabase } from './db.js';
import { StorageOpenError } from './errors.js';
import { createStorageGuard, type StorageGuard, type StorageGuardOptions, type StorageHealth } from './health.js';
import { createStore, type Store as Repositories } from './instances-repo.js';

export type { StorageHealth } from './health.js';

export interface Store extends Repositories {
  /** Whether the database can take writes now (its file deleted or replaced, disk full or failing: not ok). */
  health(): StorageHealth;
  /**
   * Opens, commits or rolls back a transaction by hand, for work that awaits between its statements
   * (./async-sqlite.ts keeps every other caller out meanwhile). Guarded like any write.
   */
  control(statement: 'BEGIN IMMEDIATE' | 'COMMIT' | 'ROLLBACK'): void;
}

export type OpenStoreOptions = StorageGuardOptions;

/**
 * The repository methods that only read. Every other method counts as a write: it is refused once the file
 * is gone, and a new method is guarded unless it is listed here.
 */
const READS: ReadonlySet<string> = new Set([
  'get', 'find', 'list', 'unfinished', 'withScriptGroup', 'scriptRunningOn',
  'findByInstanceId', 'findByClientToken', 'unresolvedLaunches', 'abandonedLaunches', 'live', 'after', 'bounds', 'countByKindAndStatus',
]);

function guarded<T extends object>(repository: T, guard: StorageGuard): T {
  const wrapped: Record<string, unknown> = {};
  for (const [name, member] of Object.entries(repository)) {
    wrapped[name] = typeof member === 'function'
      ? (...args: unknown[]) => guard.run(() => (member as (...a: unknown[]) => unknown)(...args), !READS.has(name))
      : member;
  }
  return wrapped as T;
}

/**
 * Opens (creating folder, WAL, migrations) the database at `file` and returns the repositories, whose
 * storage faults become StorageUnavailableError (see ./health.ts). A database that cannot be opened throws
 * StorageOpenError naming the file.
 */
export function openStore(file: string, options: OpenStoreOptions = {}): Store {
  let repositories: Repositories;
  try {
    repositories = createStore(openDatabase(file));
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    const code = (error as { code?: unknown }).code;
    throw new StorageOpenError(file, typeof code === 'string' ? `${reason} (${code})` : reason, { cause: error });
  }
  const guard = createStorageGuard(file, options);
  return {
    db: repositories.db,
    instances: guarded(repositories.instances, guard),
    operations: guarded(repositories.operations, guard),
    idempotency: guarded(repositories.idempotency, guard),
    replicas: guarded(repositories.replicas, guard),
    events: guarded(repositories.events, guard),
    sessions: guarded(repositories.sessions, guard),
    transaction: (fn) => guard.run(() => repositories.transaction(fn), true),
    health: () => guard.health(),
    control: (statement) => guard.run(() => repositories.db.exec(statement), statement !== 'ROLLBACK'),
    close() {
      guard.close();
      repositories.close();
    },
  };
}
