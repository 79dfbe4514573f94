/**
 * One writer per database. A server holds an exclusive SQLite lock on `<db>.lock` for as long as it runs;
 * a second server on the same database fails to take it and stops before it writes anything.
 *
 * The lock is a POSIX advisory lock (what SQLite uses on Unix): the kernel drops it when the holder's
 * process ends, however it ends (SIGKILL included), so a crash never leaves the database locked. It lives
 * in a file of its own, opened only by SQLite: POSIX locks vanish when the process closes any descriptor
 * of the locked file, so nothing else may open it, and the main database keeps WAL's shared locks for
 * readers (tests and operators read it alongside a running server).
 *
 * Who holds the lock is written to `<db>.owner` (pid, host, URL) for the refusal message: the lock file
 * itself cannot be read while it is held. The lock file is never deleted: a process may be waiting on the
 * old file while a new one is created, and then two would hold "the" lock.
 */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { DatabaseLockedError, StorageOpenError, type DatabaseOwner } from './errors.js';

export interface DatabaseLock {
  readonly lockFile: string;
  readonly ownerFile: string;
  /** Records where the holder serves (the port is known only once it listens). */
  describe(details: { url: string }): void;
  /** Drops the lock and the owner file; the next server may start. */
  release(): void;
}

function readOwner(ownerFile: string): DatabaseOwner | undefined {
  try {
    const owner = JSON.parse(readFileSync(ownerFile, 'utf8')) as Partial<DatabaseOwner>;
    if (typeof owner.pid !== 'number' || typeof owner.hostname !== 'string' || typeof owner.since !== 'string') return undefined;
    return { pid: owner.pid, hostname: owner.hostname, url: typeof owner.url === 'string' ? owner.url : undefined, since: owner.since };
  } catch {
    return undefined;
  }
}

/**
 * The recorded owner, unless it is a process of this host that no longer runs: then the record is what a
 * killed holder left, and the live holder has not written its own yet.
 */
function currentOwner(ownerFile: string): DatabaseOwner | undefined {
  const owner = readOwner(ownerFile);
  if (!owner || owner.hostname !== hostname()) return owner;
  try {
    process.kill(owner.pid, 0);
    return owner;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM' ? owner : undefined;
  }
}

function writeOwner(ownerFile: string, owner: DatabaseOwner): void {
  // Written aside and renamed: a server refused at this moment reads the old record or the new, never half.
  const temporary = `${ownerFile}.${process.pid}.tmp`;
  writeFileSync(temporary, `${JSON.stringify(owner)}\n`);
  renameSync(temporary, ownerFile);
}

/**
 * Takes the writer lock of `databasePath` (nothing for ':memory:'), or throws DatabaseLockedError naming the
 * holder, or StorageOpenError when the lock file cannot be made.
 */
export function lockDatabase(databasePath: string): DatabaseLock | undefined {
  if (databasePath === ':memory:') return undefined;
  const lockFile = `${databasePath}.lock`;
  const ownerFile = `${databasePath}.owner`;
  try {
    mkdirSync(path.dirname(databasePath), { recursive: true });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new StorageOpenError(databasePath, `cannot create its folder: ${reason}`, { cause: error });
  }
  let db: Database.Database | undefined;
  try {
    // timeout 0: a held lock is an answer, not something to wait for.
    db = new Database(lockFile, { timeout: 0 });
    // In exclusive locking mode SQLite keeps the lock of the first write until the connection closes; the
    // journal in memory keeps the lock file the only file.
    db.pragma('locking_mode = EXCLUSIVE');
    db.pragma('journal_mode = MEMORY');
    db.exec('BEGIN EXCLUSIVE; CREATE TABLE IF NOT EXISTS writer_lock (taken_at TEXT); COMMIT');
  } catch (error) {
    db?.close();
    if ((error as { code?: unknown }).code === 'SQLITE_BUSY') {
      throw new DatabaseLockedError(databasePath, currentOwner(ownerFile), ownerFile);
    }
    const reason = error instanceof Error ? error.message : String(error);
    throw new StorageOpenError(databasePath, `its lock file ${lockFile} cannot be used: ${reason}`, { cause: error });
  }

  const lockDb = db;
  const owner: DatabaseOwner = { pid: process.pid, hostname: hostname(), since: new Date().toISOString() };
  let held = true;
  try {
    writeOwner(ownerFile, owner);
  } catch (error) {
    lockDb.close();
    throw new StorageOpenError(databasePath, `cannot write ${ownerFile}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
  return {
    lockFile,
    ownerFile,
    describe(details) {
      if (!held) return;
      try {
        writeOwner(ownerFile, { ...owner, url: details.url });
      } catch {
        // The record written when the lock was taken still names this process; the URL is a courtesy.
      }
    },
    release() {
      if (!held) return;
      held = false;
      // The owner file first: once the lock is dropped, the next holder may already have written its own.
      if (readOwner(ownerFile)?.pid === process.pid) rmSync(ownerFile, { force: true });
      lockDb.close();
    },
  };
}
