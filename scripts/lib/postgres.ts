import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { dieWithParent } from './die-with-parent.js';
import { freeLoopbackPort } from './ports.js';

/**
 * A throwaway PostgreSQL server from the machine's own binaries, in a temporary folder on a free loopback
 * port: for the tests, the sandbox and the benchmarks. PostgreSQL refuses to run as root, so as root it
 * runs as the package's `postgres` user. It dies with the process that started it, SIGKILL included.
 */
export interface PostgresServer {
  /** postgres://… of a fresh, empty database. */
  url: string;
  /** Makes another empty database on the same server and returns its URL (one per test file or replica set). */
  createDatabase(name: string): Promise<string>;
  stop(): Promise<void>;
  /** The server's folder (data and socket); removed by stop() and when this process exits normally. */
  home: string;
}

const STARTUP_LIMIT_MS = 30_000;
const SUPERUSER = 'ec2creator';
const POSTGRES_MISSING =
  'PostgreSQL\'s server binaries (initdb, postgres) were not found on PATH or under /usr/lib/postgresql. ' +
  'Install them with: apt-get install postgresql';

function binDir(): string {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && existsSync(path.join(dir, 'initdb')) && existsSync(path.join(dir, 'postgres'))) return dir;
  }
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a))
    : [];
  for (const version of versions) {
    const dir = path.join(root, version, 'bin');
    if (existsSync(path.join(dir, 'initdb'))) return dir;
  }
  throw new Error(POSTGRES_MISSING);
}

/** As root, PostgreSQL's own user runs it; the command is wrapped so that it dies with its runuser. */
function asServerUser(asRoot: boolean, command: string, args: string[]): [string, string[]] {
  if (!asRoot) return [command, args];
  return ['runuser', ['-u', 'postgres', '--', 'setpriv', '--pdeathsig', 'QUIT', command, ...args]];
}

/** Whether every folder from the root down to `dir` lets other users through (o+x). */
function traversableByAll(dir: string): boolean {
  for (let current = path.resolve(dir); ; current = path.dirname(current)) {
    if ((statSync(current).mode & 0o001) === 0) return false;
    if (path.dirname(current) === current) return true;
  }
}

async function waitUntilAnswering(url: string, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + STARTUP_LIMIT_MS;
  let last: unknown;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`postgres exited with code ${child.exitCode} before answering:\n${output()}`);
    const client = new pg.Client({ connectionString: url });
    try {
      await client.connect();
      await client.query('SELECT 1');
      return;
    } catch (error) {
      last = error;
    } finally {
      await client.end().catch(() => undefined);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`postgres did not answer within ${STARTUP_LIMIT_MS} ms (${String(last)}):\n${output()}`);
}

export async function startPostgres(options: { holdsProcessOpen?: boolean } = {}): Promise<PostgresServer> {
  const bin = binDir();
  const asRoot = userInfo().uid === 0;
  // As root the server runs as `postgres`, which must be able to reach its folder: not under a private one
  // (the test run's, a sandbox's TMPDIR), then under /tmp.
  const parent = !asRoot || traversableByAll(tmpdir()) ? tmpdir() : '/tmp';
  const home = mkdtempSync(path.join(parent, 'ec2-creator-postgres-'));
  const removeHome = (): void => rmSync(home, { recursive: true, force: true });
  process.once('exit', removeHome);
  if (asRoot) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(home, uid, gid);
  }
  const data = path.join(home, 'data');
  const [initCommand, initArgs] = asServerUser(asRoot, path.join(bin, 'initdb'), [
    '-D', data, '-U', SUPERUSER, '--auth=trust', '-E', 'UTF8', '--no-locale', '--no-sync',
  ]);
  try {
    execFileSync(initCommand, initArgs, { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    removeHome();
    const stderr = (error as { stderr?: Buffer }).stderr?.toString() ?? '';
    throw new Error(`initdb failed: ${stderr || String(error)}`);
  }

  const port = await freeLoopbackPort();
  const url = (database: string): string => `postgres://${SUPERUSER}@127.0.0.1:${port}/${database}`;
  // Durability is not what these servers are for: a test database that skips fsync starts and writes faster.
  const [command, args] = dieWithParent(...asServerUser(asRoot, path.join(bin, 'postgres'), [
    '-D', data, '-h', '127.0.0.1', '-p', String(port), '-k', home,
    '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'max_connections=200',
  ]));
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const spawnFailure = new Promise<never>((_, reject) => child.once('error', reject));
  try {
    await Promise.race([waitUntilAnswering(url('postgres'), child, () => output), spawnFailure]);
  } catch (error) {
    child.kill('SIGKILL');
    removeHome();
    throw error;
  }
  if (options.holdsProcessOpen === false) {
    child.unref();
    for (const stream of [child.stdout, child.stderr]) (stream as unknown as { unref?: () => void } | null)?.unref?.();
  }

  let databases = 0;
  async function createDatabase(name: string): Promise<string> {
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`not a plain database name: ${name}`);
    const admin = new pg.Client({ connectionString: url('postgres') });
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE ${name}`);
    } finally {
      await admin.end();
    }
    return url(name);
  }

  const first = await createDatabase(`ec2creator_${(databases += 1)}`);
  return {
    url: first,
    home,
    createDatabase,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        // The postmaster itself (not its runuser) gets the signal: SIGQUIT is PostgreSQL's immediate stop.
        const pidFile = path.join(data, 'postmaster.pid');
        const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').split('\n')[0]) : NaN;
        try {
          if (Number.isInteger(pid) && pid > 0) process.kill(pid, 'SIGQUIT');
          else child.kill('SIGKILL');
        } catch {
          child.kill('SIGKILL');
        }
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      removeHome();
      process.removeListener('exit', removeHome);
    },
  };
}
