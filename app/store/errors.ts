/**
 * The store's errors. StorageOpenError and DatabaseLockedError stop start-up (app/server.ts names the
 * variable); a fault of an open store is StorageUnavailableError, which requests answer with 503.
 */
import { AppError } from '../errors.js';

/**
 * The database cannot take writes: its file was deleted or replaced under the running server, the disk is
 * full, or the disk answered an I/O error. Work is refused rather than half recorded or silently lost.
 */
export class StorageUnavailableError extends AppError {
  readonly kind = 'storage-unavailable';
  constructor(message: string, readonly retryAfterSeconds: number, options?: ErrorOptions) {
    super(message, options);
  }
}

/**
 * The database refused a second unfinished operation on one instance (its unique index): another
 * operation, perhaps started by another replica, holds the instance. Nothing was written.
 */
export class InstanceBusyError extends Error {
  constructor(readonly instanceId: string, options?: ErrorOptions) {
    super(`another operation on instance ${instanceId} is still in flight`, options);
    this.name = 'InstanceBusyError';
  }
}

/** The database (or its lock file) could not be opened or migrated. */
export class StorageOpenError extends Error {
  constructor(readonly path: string, reason: string, options?: ErrorOptions & { engine?: 'SQLite' | 'PostgreSQL' }) {
    super(`cannot open the ${options?.engine ?? 'SQLite'} database ${path}: ${reason}`, options);
    this.name = 'StorageOpenError';
  }
}

/** Who holds a database, as it recorded itself next to the lock. */
export interface DatabaseOwner {
  pid: number;
  hostname: string;
  /** Where it serves, once it listens. */
  url?: string | undefined;
  since: string;
}

/** Another process holds the database's writer lock: two writers would undo each other's work. */
export class DatabaseLockedError extends Error {
  constructor(readonly path: string, readonly owner: DatabaseOwner | undefined, ownerFile: string) {
    const holder = owner
      ? `pid ${owner.pid} on ${owner.hostname}${owner.url ? `, serving ${owner.url}` : ''}, since ${owner.since}`
      : `a process that has not recorded itself in ${ownerFile} yet`;
    super(
      `the database ${path} is in use by another ec2-creator server (${holder}); ` +
        'one database takes one server: stop that one first, or give this one its own DATABASE_URL',
    );
    this.name = 'DatabaseLockedError';
  }
}
