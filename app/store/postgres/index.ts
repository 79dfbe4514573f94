/**
 * The PostgreSQL store: a connection pool, the shared schema (migrated under an advisory lock, so replicas
 * may start together), and the repositories behind the asynchronous interface (../ports.ts). A database
 * that cannot be reached, is shutting down or is out of disk turns a call into StorageUnavailableError (503),
 * never a half-recorded change: each call is one statement, or one transaction.
 */
import pg from 'pg';
import type { Logger } from '../../logger.js';
import { StorageOpenError, StorageUnavailableError } from '../errors.js';
import type { Async, AsyncStore, Duty, Repositories } from '../ports.js';
import { migratePostgres } from './migrations.js';
import { createPostgresRepositories } from './repositories.js';
import { EVENTS_CHANNEL } from '../schema.js';

export interface PostgresStoreOptions {
  logger?: Logger | undefined;
  /** Connections this replica opens at most. */
  poolSize?: number | undefined;
  /** What clients are told to wait when the database cannot be reached. */
  retryAfterSeconds?: number | undefined;
}

/** Error classes (SQLSTATE) that mean the database, not the statement, failed. */
const UNAVAILABLE_CLASSES = new Set(['08', '53', '57', '58']);
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EPIPE']);

function isUnavailable(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string') return NETWORK_CODES.has(code) || UNAVAILABLE_CLASSES.has(code.slice(0, 2));
  // pg reports a lost connection, an unusable client and an exhausted pool without a code.
  return error instanceof Error
    && /Connection terminated|connection timeout|connection error and is not queryable|timeout exceeded when trying to connect|Query read timeout/i
      .test(error.message);
}

/** Where the database is, without its password: for messages and logs. */
export function describeUrl(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.password = '';
    return parsed.toString();
  } catch {
    return 'the PostgreSQL database';
  }
}

export async function openPostgresStore(url: string, options: PostgresStoreOptions = {}): Promise<AsyncStore> {
  const where = describeUrl(url);
  const retryAfter = options.retryAfterSeconds ?? 30;
  // A query that outlives query_timeout has lost its database (a partition, a hung server): it fails as
  // unavailable instead of holding a request, or a shutdown, for ever. The keepalive settings make the
  // server notice a client whose machine vanished within about half a minute, and end its session: its
  // advisory locks (the duties) go with it, instead of after the two hours the operating system would wait.
  const connection = {
    connectionString: url,
    connectionTimeoutMillis: 10_000,
    query_timeout: 60_000,
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    options: '-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3 -c tcp_user_timeout=30000',
  };
  const pool = new pg.Pool({ ...connection, max: options.poolSize ?? 10 });
  // An idle connection the server drops must not crash the process; the next query reconnects.
  pool.on('error', (error) => options.logger?.warn('postgres connection lost', { database: where, error: error.message }));

  try {
    const client = await pool.connect();
    const ignore = (): void => undefined; // a connection lost mid-migration fails the query below instead
    client.on('error', ignore);
    try {
      await migratePostgres(client);
    } finally {
      client.off('error', ignore);
      client.release();
    }
  } catch (error) {
    await pool.end().catch(() => undefined);
    throw new StorageOpenError(where, error instanceof Error ? error.message : String(error), { cause: error, engine: 'PostgreSQL' });
  }

  function translate(error: unknown): unknown {
    if (error instanceof StorageUnavailableError || !isUnavailable(error)) return error;
    const reason = error instanceof Error ? error.message : String(error);
    options.logger?.error('storage fault', { database: where, error: reason });
    return new StorageUnavailableError(`The database cannot be reached now (${reason}); retry later`, retryAfter, {
      cause: error,
    });
  }

  /**
   * `retryDropped`: a statement of its own (not in a transaction) that was answered "terminating
   * connection" (SQLSTATE 57P01/57P02) ran on a pooled connection the server had just ended, before the
   * pool heard of it: the statement was not carried out, so it runs once more, on a fresh connection.
   */
  function guarded(repositories: Repositories, retryDropped = false): Repositories {
    const dropped = (error: unknown): boolean => ['57P01', '57P02'].includes(String((error as { code?: unknown } | null)?.code));
    const wrap = <T extends object>(repository: T): T => {
      const wrapped: Record<string, unknown> = {};
      for (const [name, member] of Object.entries(repository as Record<string, (...a: unknown[]) => Promise<unknown>>)) {
        wrapped[name] = (...args: unknown[]) => member(...args)
          .catch((error: unknown) => (retryDropped && dropped(error) ? member(...args) : Promise.reject(error)))
          .catch((error: unknown) => Promise.reject(translate(error)));
      }
      return wrapped as T;
    };
    return {
      instances: wrap(repositories.instances) as Async<typeof repositories.instances>,
      operations: wrap(repositories.operations),
      idempotency: wrap(repositories.idempotency),
      replicas: wrap(repositories.replicas),
      events: wrap(repositories.events),
      sessions: wrap(repositories.sessions),
    };
  }

  /**
   * One LISTEN connection for the whole server, outside the pool (a listening session must stay open),
   * opened with the first listener and opened again, after a pause, whenever it is lost. While it is
   * down, streams still find new events at their next look.
   */
  const eventListeners = new Set<() => void>();
  let listening: pg.Client | undefined;
  let listenRetry: NodeJS.Timeout | undefined;
  let closed = false;
  function listen(): void {
    if (closed || listening || eventListeners.size === 0) return;
    const client = new pg.Client({ ...connection, query_timeout: undefined });
    listening = client;
    const again = () => {
      if (listening !== client) return;
      listening = undefined;
      client.end().catch(() => undefined);
      if (closed || eventListeners.size === 0) return;
      listenRetry = setTimeout(listen, 1_000);
      listenRetry.unref();
    };
    client.on('error', again);
    client.on('end', again);
    client.on('notification', () => {
      for (const listener of eventListeners) listener();
    });
    client.connect()
      .then(() => client.query(`LISTEN ${EVENTS_CHANNEL}`))
      .then(() => {
        // What was recorded while nobody listened is found by the look this wake-up asks for.
        for (const listener of eventListeners) listener();
      })
      .catch((error: unknown) => {
        options.logger?.warn('cannot listen for events of other replicas; retrying', { database: where, error: error instanceof Error ? error.message : String(error) });
        again();
      });
  }

  const shared = guarded(createPostgresRepositories(pool), true);
  /** Connections that hold a duty: outside the pool, since the lock lives and dies with its session. */
  const dutyHolders = new Set<pg.Client>();
  return {
    dialect: 'postgres',
    ...shared,
    async transaction(work) {
      let client: pg.PoolClient;
      try {
        client = await pool.connect();
      } catch (error) {
        throw translate(error);
      }
      // pg-pool stops listening to a client's errors while it is checked out: a connection that drops
      // mid-transaction would otherwise be an uncaught 'error' and end the process.
      let lost: Error | undefined;
      const onError = (error: Error): void => {
        lost = error;
      };
      client.on('error', onError);
      let broken = false;
      try {
        await client.query('BEGIN');
        const tx = guarded(createPostgresRepositories(client));
        const value = await work({
          ...tx,
          async serialize(topic) {
            try {
              await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`ec2-creator:${topic}`]);
            } catch (error) {
              throw translate(error);
            }
          },
        });
        await client.query('COMMIT');
        return value;
      } catch (error) {
        try {
          if (lost) throw lost;
          await client.query('ROLLBACK');
        } catch {
          broken = true; // the connection is gone: the server rolled the transaction back
        }
        throw translate(error);
      } finally {
        client.off('error', onError);
        client.release(broken || lost !== undefined);
      }
    },
    async tryDuty(name) {
      // Its own connection, outside the pool: the lock lives and dies with this session (see `connection`).
      const client = new pg.Client({ ...connection, query_timeout: undefined });
      let lose!: () => void;
      const lost = new Promise<void>((resolve) => (lose = resolve));
      let released = false;
      client.on('error', () => undefined);
      client.on('end', () => {
        dutyHolders.delete(client);
        if (!released) lose();
      });
      try {
        await client.connect();
        // A session-level advisory lock: PostgreSQL lets it go the moment this session ends, however it ends.
        const taken = await client.query<{ taken: boolean }>('SELECT pg_try_advisory_lock(hashtext($1)) AS taken', [
          `ec2-creator:${name}`,
        ]);
        if (!taken.rows[0]?.taken) {
          released = true;
          await client.end();
          return undefined;
        }
      } catch (error) {
        released = true;
        await client.end().catch(() => undefined);
        throw translate(error);
      }
      dutyHolders.add(client);
      const duty: Duty = {
        name,
        lost,
        async release() {
          if (released) return;
          released = true;
          await client.end().catch(() => undefined);
        },
      };
      return duty;
    },
    onEventsRecorded(listener) {
      eventListeners.add(listener);
      listen();
      return () => {
        eventListeners.delete(listener);
        if (eventListeners.size === 0 && listening) {
          const client = listening;
          listening = undefined;
          void client.end().catch(() => undefined);
        }
      };
    },
    async health() {
      try {
        await pool.query('SELECT 1');
        return { ok: true };
      } catch (error) {
        return { ok: false, reason: `the database cannot be reached: ${error instanceof Error ? error.message : String(error)}` };
      }
    },
    async close() {
      closed = true;
      if (listenRetry) clearTimeout(listenRetry);
      const listener = listening;
      listening = undefined;
      await listener?.end().catch(() => undefined);
      await Promise.all([...dutyHolders].map((client) => client.end().catch(() => undefined)));
      await pool.end();
    },
  };
}
