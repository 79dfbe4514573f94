/**
 * One throwaway PostgreSQL for each test process (each worker under --parallel), started the first time a
 * test asks for a database and dying with the process; every harness gets a database of its own on it.
 */
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { startPostgres, type PostgresServer } from '../../scripts/lib/postgres.js';
import { createKeyPair } from './ec2-reader.js';
import { resetMoto, testRunDir } from './global-fixture.js';
import { killGroup, markers } from './lifecycle.js';
import { startServerProcess, type ServerProcess } from './server-process.js';

let server: Promise<PostgresServer> | undefined;
let databases = 0;

/**
 * A worker under --parallel ends without its exit handlers running, and its server's folder is under /tmp
 * rather than the run's (the server's user must reach it): the run's reaper removes it once the run is over.
 */
async function startTestPostgres(): Promise<PostgresServer> {
  const started = await startPostgres({ holdsProcessOpen: false });
  appendFileSync(`${testRunDir()}.also-remove`, `${started.home}\n`);
  return started;
}

export async function freshPostgresDatabase(): Promise<string> {
  server ??= startTestPostgres();
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

/**
 * Real server processes on databases of one throwaway PostgreSQL, for the tests only processes can show
 * (SIGKILL, replicas): for each test a fresh emulator, a database, a folder (with a `gate` folder for the
 * fake aws), and afterwards every server killed, every script group it names killed, the folder removed.
 */
export function usePostgresServers(name: string): {
  readonly url: string;
  readonly dir: string;
  start(env?: Record<string, string>): Promise<ServerProcess>;
  /**
   * SIGKILLs `server`, then the script it was running (a script leads its own group and outlives its
   * server): the group the fake aws wrote into the first `prefix` marker of `markerDir`. Returns that group.
   */
  killWithScript(server: ServerProcess, markerDir: string, prefix: string): Promise<number>;
} {
  let postgres: PostgresServer | undefined;
  let databases = 0;
  let url = '';
  let dir = '';
  let servers: ServerProcess[] = [];
  let groups: number[] = [];
  before(async () => {
    postgres = await startTestPostgres();
  });
  after(() => postgres?.stop());
  beforeEach(async () => {
    await resetMoto();
    await createKeyPair();
    url = await (postgres as PostgresServer).createDatabase(`${name}_${(databases += 1)}`);
    dir = mkdtempSync(path.join(testRunDir(), `${name}-`));
    mkdirSync(path.join(dir, 'gate'));
    servers = [];
    groups = [];
  });
  afterEach(() => {
    writeFileSync(path.join(dir, 'gate', 'release'), '');
    for (const server of servers) server.child.kill('SIGKILL');
    for (const marker of markers(path.join(dir, 'gate'), 'entered')) groups.push(Number(marker.text));
    for (const group of groups) killGroup(group);
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    get url() {
      return url;
    },
    get dir() {
      return dir;
    },
    async start(env = {}) {
      const server = await startServerProcess({ DATABASE_URL: url, ...env });
      servers.push(server);
      return server;
    },
    async killWithScript(server, markerDir, prefix) {
      process.kill(server.pid, 'SIGKILL');
      await server.exited;
      const group = Number(markers(markerDir, prefix)[0]?.text);
      groups.push(group);
      killGroup(group);
      return group;
    },
  };
}
