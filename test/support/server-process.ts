/**
 * The real server as a child process (the built `dist/app/server.js`), for what only a process can
 * show: SIGKILL in the middle of an operation, SIGTERM and its exit code, a restart on the same database.
 * Its JSON log lines are collected; `url` comes from its "listening" line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { freeLoopbackPort } from '../../scripts/lib/ports.js';
import { repoRoot } from './app-harness.js';
import { ensureBuilt, serverEntry } from './ops-manager.js';
import { TEST_KEY_NAME } from './ec2-reader.js';

export interface ServerProcess {
  url: string;
  child: ChildProcess;
  pid: number;
  logs: Array<Record<string, any>>;
  /** Resolves with how the process ended. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves with the first log line matching `predicate` (seen already or still to come). */
  waitForLog(what: string, predicate: (line: Record<string, any>) => boolean, timeoutMs?: number): Promise<Record<string, any>>;
  /** Everything the process wrote on stderr so far (where start-up failures are reported). */
  stderr(): string;
}

/** A server process that may never listen (start-up refused): `url` is empty until it logs "listening". */
export type SpawnedServerProcess = ServerProcess;

export async function startServerProcess(env: Record<string, string>): Promise<ServerProcess> {
  const server = await spawnServerProcess(env);
  const listening = await server.waitForLog('listening', (line) => line.message === 'listening');
  return { ...server, url: String(listening.url) };
}

/**
 * Starts the server process without waiting for it to listen: for start-ups that must be refused. PORT is a
 * free loopback port unless `env` names one.
 */
export async function spawnServerProcess(env: Record<string, string>): Promise<SpawnedServerProcess> {
  await ensureBuilt();
  const port = await freeLoopbackPort();
  const child = spawn(process.execPath, [serverEntry], {
    cwd: repoRoot,
    env: {
      ...process.env,
      HOST: '127.0.0.1',
      PORT: String(port),
      KEY_NAME: TEST_KEY_NAME,
      AUTH_DISABLED: 'true',
      LOG_LEVEL: 'debug',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Array<Record<string, any>> = [];
  const listeners = new Set<() => void>();
  let stderr = '';
  let buffered = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk;
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.trim()) continue;
      try {
        logs.push(JSON.parse(line) as Record<string, any>);
      } catch {
        logs.push({ message: 'unparsed', line });
      }
    }
    for (const listener of listeners) listener();
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      resolve({ code, signal });
      for (const listener of listeners) listener();
    });
  });
  let ended = false;
  void exited.then(() => {
    ended = true;
  });

  function waitForLog(what: string, predicate: (line: Record<string, any>) => boolean, timeoutMs = 60_000) {
    return new Promise<Record<string, any>>((resolve, reject) => {
      const check = () => {
        const found = logs.find(predicate);
        if (found) {
          done();
          resolve(found);
        } else if (ended) {
          done();
          reject(new Error(`server exited before logging ${what}; stderr: ${stderr}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`gave up waiting for the server to log ${what}; stderr: ${stderr}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        listeners.delete(check);
      };
      listeners.add(check);
      check();
    });
  }

  return { url: '', child, pid: child.pid as number, logs, exited, waitForLog, stderr: () => stderr };
}
