/**
 * One throwaway PostgreSQL for each test process (each worker under --parallel), started the first time a
 * test asks for a database and dying with the process; every harness gets a database of its own on it.
 */
import { startPostgres, type PostgresServer } from '../../scripts/lib/postgres.js';

let server: Promise<PostgresServer> | undefined;
let databases = 0;

export async function freshPostgresDatabase(): Promise<string> {
  server ??= startPostgres({ holdsProcessOpen: false });
  return (await server).createDatabase(`harness_${process.pid}_${(databases += 1)}`);
}
