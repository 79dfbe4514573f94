/**
 * Storage faults are loud, never silent. Two kinds:
 *  - The database file was deleted or replaced while the server runs. SQLite goes on writing to the file
 *    it opened (now unreachable, or no longer the one at the path), so every later change would be lost
 *    at the next restart. Found by comparing the path's device and inode with those of the file opened, on
 *    every write, on every readiness check and on a short timer; from then on every write is refused until
 *    a restart (nothing this process could do makes its connection point at the right file again).
 *  - A write failed because the disk is full or answered an I/O error (or the file became unusable):
 *    that write is refused as unavailable, and readiness reports the fault until a write succeeds again,
 *    or for the Retry-After it told the client (then traffic may try again; a failing write re-arms it).
 * Either way an error is logged naming the file, and the error thrown is StorageUnavailableError (503).
 */
import { statSync } from 'node:fs';
import { StorageUnavailableError } from './errors.js';
import type { Logger } from '../logger.js';

export type StorageHealth = { ok: true } | { ok: false; reason: string };

export interface StorageGuard {
  /** Runs a store call: refuses writes once the file is gone, turns SQLite's storage errors into StorageUnavailableError. */
  run<T>(fn: () => T, write: boolean): T;
  /** Looks at the file now; not ok while a fault stands. */
  health(): StorageHealth;
  close(): void;
}

export interface StorageGuardOptions {
  logger?: Logger | undefined;
  /** Look at the file this often even without traffic (0 = only on use). */
  watchIntervalMs?: number | undefined;
  /** What clients are told to wait after a failed write, and how long readiness reports it. */
  retryAfterSeconds?: number | undefined;
  now?: () => number;
}

/** SQLite result codes that mean the storage, not the statement, failed. */
const STORAGE_CODES = /^SQLITE_(FULL|IOERR|CORRUPT|NOTADB|CANTOPEN|READONLY)/;

function reasonFor(code: string): string {
  if (code === 'SQLITE_FULL') return 'the disk is full';
  if (code.startsWith('SQLITE_IOERR')) return 'the disk answered an I/O error';
  if (code.startsWith('SQLITE_READONLY')) return 'the database can no longer be written';
  return 'the database file is unusable';
}

interface Identity {
  dev: number;
  ino: number;
}

function identityOf(file: string): Identity | 'missing' {
  try {
    const stat = statSync(file);
    return { dev: stat.dev, ino: stat.ino };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
    throw error;
  }
}

/** A guard that never finds a fault (':memory:' has no file to lose). */
const NO_GUARD: StorageGuard = { run: (fn) => fn(), health: () => ({ ok: true }), close: () => undefined };

export function createStorageGuard(file: string, options: StorageGuardOptions = {}): StorageGuard {
  if (file === ':memory:') return NO_GUARD;
  const { logger } = options;
  const now = options.now ?? Date.now;
  const retryAfterSeconds = options.retryAfterSeconds ?? 30;
  const opened = identityOf(file);
  /** The file is gone or replaced: sticky. */
  let fileFault: StorageUnavailableError | undefined;
  /** The last write that failed, while it counts. */
  let writeFault: { error: StorageUnavailableError; code: string; at: number } | undefined;

  function checkFile(): StorageUnavailableError | undefined {
    if (fileFault || opened === 'missing') return fileFault;
    let current: Identity | 'missing';
    try {
      current = identityOf(file);
    } catch {
      return undefined; // cannot look (e.g. a permission changed): the writes themselves will tell
    }
    if (current !== 'missing' && current.dev === opened.dev && current.ino === opened.ino) return undefined;
    const what = current === 'missing' ? 'deleted' : 'replaced by another file';
    fileFault = new StorageUnavailableError(
      `The database file was ${what} while the service was running; changes are refused until it is restarted`,
      retryAfterSeconds,
    );
    logger?.error('storage fault', {
      database: file,
      code: current === 'missing' ? 'FILE_DELETED' : 'FILE_REPLACED',
      error: `the database file ${file} was ${what} while the server was running: what this server would write now is lost at the next start, so every change is refused. Put the file back (or accept its loss) and restart the service.`,
    });
    return fileFault;
  }

  function currentWriteFault(): typeof writeFault {
    if (writeFault && now() - writeFault.at >= retryAfterSeconds * 1000) writeFault = undefined;
    return writeFault;
  }

  function translate(error: unknown): unknown {
    if (error instanceof StorageUnavailableError) return error;
    const code = (error as { code?: unknown } | null)?.code;
    if (typeof code !== 'string' || !STORAGE_CODES.test(code)) return error;
    const reason = reasonFor(code);
    const fault = new StorageUnavailableError(
      `The database cannot record this now: ${reason} (${code}); retry later`,
      retryAfterSeconds,
      { cause: error },
    );
    const repeated = currentWriteFault()?.code === code;
    writeFault = { error: fault, code, at: now() };
    logger?.log(repeated ? 'warn' : 'error', 'storage fault', {
      database: file, code, error: `${reason}: ${error instanceof Error ? error.message : String(error)}`,
    });
    return fault;
  }

  const timer = options.watchIntervalMs ? setInterval(checkFile, options.watchIntervalMs) : undefined;
  timer?.unref();

  return {
    run(fn, write) {
      if (write) {
        const gone = checkFile();
        if (gone) throw gone;
      }
      let value;
      try {
        value = fn();
      } catch (error) {
        throw translate(error);
      }
      if (write) writeFault = undefined;
      return value;
    },
    health() {
      const fault = checkFile() ?? currentWriteFault()?.error;
      return fault ? { ok: false, reason: fault.message } : { ok: true };
    },
    close() {
      if (timer) clearInterval(timer);
    },
  };
}
