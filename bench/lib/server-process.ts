/**
 * The service as its own process, the way it runs for a team (`npm run dev`'s command: node with tsx, so
 * no build is needed and the code measured is the checkout's): its event loop is not shared with the
 * load generator or the samplers, and it logs at its default level into a file, as it would in production.
 * It runs in the workspace folder, so neither a `.env` nor a `./data` of the checkout is touched.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { dieWithParent } from '../../scripts/lib/die-with-parent.js';
import { repoRoot, type Workspace } from './workspace.js';

export interface ServerProcess {
  url: string;
  logFile: string;
  /** The script runs the server logged from `since` on: where a request's time went, script or service. */
  scriptRuns(since: Date): ScriptRunLogged[];
  /** SIGTERM (the graceful shutdown), SIGKILL if it has not ended within the shutdown time. */
  stop(): Promise<void>;
}

export interface ScriptRunLogged {
  script: string;
  duration_ms: number;
  outcome: string;
}

const SERVER_ENTRY = path.join(repoRoot, 'app', 'server.ts');
const STARTUP_LIMIT_MS = 60_000;
// Only the time a stopped run gives work in flight: never reached by a figure.
const SHUTDOWN_TIMEOUT_MS = 5_000;

/** Variables of the service the bench never sets, reported with the results when the caller's environment does. */
export const SERVICE_VARIABLES_REPORTED = [
  'COALESCE_WINDOW_MS', 'MAX_CONCURRENT_SCRIPTS', 'MAX_CONCURRENT_READS', 'MAX_QUEUED_OPERATIONS', 'SCRIPT_TIMEOUT_MS',
  'STOP_TIMEOUT_MS', 'START_TIMEOUT_MS', 'CREATE_TIMEOUT_MS', 'SYNC_INTERVAL_S', 'LOG_LEVEL', 'MAX_INSTANCES',
] as const;

function tailOf(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-20).join('\n');
  } catch {
    return '';
  }
}

function scriptRunsIn(file: string, since: Date): ScriptRunLogged[] {
  const runs: ScriptRunLogged[] = [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line.includes('"script run"')) continue;
    try {
      const entry = JSON.parse(line) as { message?: string; script?: string; duration_ms?: number; outcome?: string; timestamp?: string };
      if (entry.message !== 'script run' || !entry.timestamp || new Date(entry.timestamp) < since) continue;
      runs.push({ script: entry.script ?? '?', duration_ms: entry.duration_ms ?? Number.NaN, outcome: entry.outcome ?? '?' });
    } catch {
      // a line being written
    }
  }
  return runs;
}

function listeningUrl(file: string): string | undefined {
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line.includes('"listening"')) continue;
    try {
      const entry = JSON.parse(line) as { message?: string; url?: string };
      if (entry.message === 'listening' && entry.url) return entry.url;
    } catch {
      // a line being written
    }
  }
  return undefined;
}

/**
 * Starts a server on a kernel-chosen loopback port with `env` over the caller's environment. The server
 * dies with the bench process (dieWithParent), and is stopped on the workspace's way out.
 */
export async function startServerProcess(workspace: Workspace, name: string, env: Record<string, string>): Promise<ServerProcess> {
  const logFile = path.join(workspace.dir, `${name}.log`);
  const log = openSync(logFile, 'a');
  const tsx = fileURLToPath(import.meta.resolve('tsx'));
  const serverEnv: NodeJS.ProcessEnv = { ...process.env, ...env, PORT: '0', HOST: '127.0.0.1', SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS) };
  // dieWithParent runs python3, which pyenv's shim starts with its own folders first on PATH, ahead of
  // the counting aws: env puts our PATH back just before the server starts.
  const [command, args] = dieWithParent('env', [`PATH=${serverEnv.PATH ?? ''}`, process.execPath, '--import', tsx, SERVER_ENTRY]);
  let child: ChildProcess;
  try {
    child = spawn(command, args, {
      cwd: workspace.dir,
      env: serverEnv,
      stdio: ['ignore', log, log],
    });
  } finally {
    closeSync(log);
  }
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), SHUTDOWN_TIMEOUT_MS + 5_000);
      await exited;
      clearTimeout(timer);
    })();
    return stopping;
  };
  workspace.onCleanup(stop);

  const deadline = Date.now() + STARTUP_LIMIT_MS;
  for (;;) {
    const url = listeningUrl(logFile);
    if (url) return { url, logFile, stop, scriptRuns: (since) => scriptRunsIn(logFile, since) };
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`the ${name} server exited before listening:\n${tailOf(logFile)}`);
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`the ${name} server did not listen within ${STARTUP_LIMIT_MS} ms:\n${tailOf(logFile)}`);
    }
    await sleep(50);
  }
}
