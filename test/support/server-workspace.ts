/**
 * Real server processes on one database, for the tests only a process can show (SIGKILL, restarts, a
 * second server): for each test a fresh emulator, a folder with the database and a gate for the fake aws,
 * and afterwards every server killed, every script the gate held killed, and the folder removed.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createKeyPair } from './ec2-reader.js';
import { resetMoto } from './global-fixture.js';
import { killGroup, markers } from './lifecycle.js';
import { spawnServerProcess, startServerProcess, type ServerProcess } from './server-process.js';

export interface ServerWorkspace {
  readonly dir: string;
  readonly database: string;
  /** FAKE_AWS_GATE_DIR for the fake aws; released after each test. */
  readonly gate: string;
  /** A server on this test's database (unless env names another), listening; killed after the test. */
  start(env?: Record<string, string>): Promise<ServerProcess>;
  /** The same without waiting for it to listen: for start-ups that must be refused. */
  spawn(env?: Record<string, string>): Promise<ServerProcess>;
}

export function useServerWorkspace(name: string): ServerWorkspace {
  let dir = '';
  let servers: ServerProcess[] = [];
  const gate = () => path.join(dir, 'gate');
  const track = (server: ServerProcess) => {
    servers.push(server);
    return server;
  };
  const workspace: ServerWorkspace = {
    get dir() {
      return dir;
    },
    get database() {
      return path.join(dir, 'instances.db');
    },
    get gate() {
      return gate();
    },
    start: async (env = {}) => track(await startServerProcess({ DATABASE_URL: workspace.database, ...env })),
    spawn: async (env = {}) => track(await spawnServerProcess({ DATABASE_URL: workspace.database, ...env })),
  };
  beforeEach(async () => {
    await resetMoto();
    await createKeyPair();
    dir = mkdtempSync(path.join(tmpdir(), `ec2-creator-${name}-`));
    mkdirSync(gate());
    servers = [];
  });
  afterEach(() => {
    writeFileSync(path.join(gate(), 'release'), '');
    for (const server of servers) server.child.kill('SIGKILL');
    for (const marker of markers(gate(), 'entered')) killGroup(Number(marker.text));
    rmSync(dir, { recursive: true, force: true });
  });
  return workspace;
}
