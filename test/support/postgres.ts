/**
 * One throwaway PostgreSQL for each test process (each worker under --parallel), started the first time a
 * test asks for a database and dying with the process; every harness gets a database of its own on it.
 */
import pg from 'pg';
import { startPostgres, type PostgresServer } from '../../scripts/lib/postgres.js';

let server: Promise<PostgresServer> | undefined;
let databases = 0;

export async function freshPostgresDatabase(): Promise<string> {
  server ??= startPostgres({ holdsProcessOpen: false });
  return (await server).createDatabase(`harness_${process.pid}_${(databases += 1)}`);
}

/** Runs SQL on a PostgreSQL database directly, not through the service under test. */
export async function pgRows<T>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client(url);
  await client.connect();
  try {
    return (await client.query(sql, params)).rows as T[];
  } finally {
    await client.end();
  }
}
