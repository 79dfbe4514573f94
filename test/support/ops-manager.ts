/**
 * Helpers for the operations tests: build the server once, run scripts/manage_server.sh and the Jenkins
 * job scripts with the environment a person or Jenkins would give them, each test in its own temp
 * folder (PID file, logs, database) on its own loopback port, and emulate Jenkins' process-tree killer.
 */
import { execa } from 'execa';
import type { ChildProcess } from 'node:child_process';
import {
  copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freeLoopbackPort } from '../../scripts/lib/ports.js';
import { testRunDir } from './global-fixture.js';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/**
 * The server the operations and lifecycle tests run is built into the test run's folder, not the checkout,
 * as a small repository of its own: dist/ built there, scripts/ and package.json copied, node_modules and
 * the EC2 scripts linked. A test run never writes into the checkout, and workers never build over each
 * other. Started from dist/, a server costs a third of the CPU it costs through tsx. A run started by a
 * test (the killed-run test) may be pointed at the outer run's build with PREBUILT_REPO_VARIABLE.
 */
export const PREBUILT_REPO_VARIABLE = 'EC2_CREATOR_PREBUILT_REPO';
export const builtRepo = process.env[PREBUILT_REPO_VARIABLE] ?? path.join(testRunDir(), 'repo');
export const manageScript = path.join(builtRepo, 'scripts', 'manage_server.sh');
export const serverEntry = path.join(builtRepo, 'dist', 'app', 'server.js');

export interface Run {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** stdout and stderr, for assertion messages. */
  output: string;
}

const BUILT_MARKER = path.join(builtRepo, '.built');
const BUILD_LOCK = `${builtRepo}.lock`;

/** Builds the server once per test run (the first caller builds; the others wait for its marker). */
export async function ensureBuilt(): Promise<void> {
  if (existsSync(BUILT_MARKER)) return;
  try {
    mkdirSync(BUILD_LOCK);
  } catch {
    if (!(await waitUntil(() => existsSync(BUILT_MARKER), 300_000))) throw new Error(`no build appeared at ${builtRepo}`);
    return;
  }
  mkdirSync(builtRepo, { recursive: true });
  await execa(path.join(repoRoot, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.build.json', '--outDir', path.join(builtRepo, 'dist')], {
    cwd: repoRoot, stdin: 'ignore',
  });
  cpSync(path.join(repoRoot, 'app', 'web'), path.join(builtRepo, 'dist', 'app', 'web'), { recursive: true }); // as npm run build does
  cpSync(path.join(repoRoot, 'scripts'), path.join(builtRepo, 'scripts'), { recursive: true });
  copyFileSync(path.join(repoRoot, 'package.json'), path.join(builtRepo, 'package.json'));
  for (const linked of ['node_modules', 'aws_cli_bash_scripts']) {
    symlinkSync(path.join(repoRoot, linked), path.join(builtRepo, linked));
  }
  writeFileSync(BUILT_MARKER, '');
}

export async function run(
  command: string,
  args: readonly string[],
  env: Record<string, string | undefined>,
  options: { cwd?: string; timeoutMs?: number; extendEnv?: boolean } = {},
): Promise<Run> {
  const result = await execa(command, args, {
    reject: false,
    env,
    extendEnv: options.extendEnv ?? true,
    cwd: options.cwd ?? repoRoot,
    stdin: 'ignore',
    timeout: options.timeoutMs ?? 120_000,
  });
  const stdout = String(result.stdout);
  const stderr = String(result.stderr);
  return { exitCode: result.exitCode ?? -1, stdout, stderr, output: `stdout:\n${stdout}\nstderr:\n${stderr}` };
}

/** A private place for one server: temp PID file, log folder and database, a free loopback port. */
export interface ServerSandbox {
  dir: string;
  port: number;
  pidFile: string;
  logDir: string;
  env: Record<string, string>;
  baseUrl: string;
  manage(args: string[], extraEnv?: Record<string, string | undefined>): Promise<Run>;
  /** The PID in the PID file, or undefined. */
  pid(): number | undefined;
  /** Stops whatever server this sandbox started (through the manager, then by PID as a fallback). */
  cleanup(): Promise<void>;
}

export async function createServerSandbox(extraEnv: Record<string, string> = {}, script = manageScript): Promise<ServerSandbox> {
  const dir = mkdtempSync(path.join(tmpdir(), 'ec2-creator-ops-'));
  const port = await freeLoopbackPort();
  const pidFile = path.join(dir, 'run', 'server.pid');
  const logDir = path.join(dir, 'logs');
  const env: Record<string, string> = {
    PORT: String(port),
    HOST: '127.0.0.1',
    PID_FILE: pidFile,
    LOG_DIR: logDir,
    DATABASE_URL: path.join(dir, 'data', 'instances.db'),
    START_TIMEOUT_S: '30',
    STOP_TIMEOUT_S: '10',
    LOG_LEVEL: 'info',
    ...extraEnv,
  };
  const started = new Set<number>();
  const entry = path.join(path.resolve(path.dirname(script), '..'), 'dist', 'app', 'server.js');
  const sandbox: ServerSandbox = {
    dir,
    port,
    pidFile,
    logDir,
    env,
    baseUrl: `http://127.0.0.1:${port}`,
    async manage(args, more = {}) {
      const result = await run('bash', [script, ...args], { ...env, ...more });
      const pid = sandbox.pid();
      if (pid !== undefined) started.add(pid);
      return result;
    },
    pid() {
      try {
        const text = readFileSync(pidFile, 'utf8').trim();
        return /^\d+$/.test(text) ? Number(text) : undefined;
      } catch {
        return undefined;
      }
    },
    async cleanup() {
      await run('bash', [script, 'stop'], { ...env, STOP_TIMEOUT_S: '5' });
      for (const pid of started) {
        if (commandLine(pid).includes(entry)) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // gone already
          }
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return sandbox;
}

/** The command line of a process, NUL bytes as spaces ('' when there is no such process). */
export function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
  } catch {
    return '';
  }
}

export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

export async function waitUntil(check: () => boolean | Promise<boolean>, limitMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + limitMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return check();
}

export async function health(baseUrl: string): Promise<{ status: number; body: string } | undefined> {
  try {
    const response = await fetch(`${baseUrl}/health`, { signal: AbortSignal.timeout(5_000) });
    return { status: response.status, body: await response.text() };
  } catch {
    return undefined;
  }
}

/** This process and its ancestors: what a killer emulation must never touch. */
function protectedPids(): Set<number> {
  const pids = new Set<number>([process.pid]);
  let pid = process.ppid;
  while (pid > 1 && !pids.has(pid)) {
    pids.add(pid);
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      pid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    } catch {
      break;
    }
  }
  return pids;
}

/**
 * What Jenkins' ProcessTreeKiller does when a build ends: every process whose environment carries the
 * build's BUILD_ID or JENKINS_NODE_COOKIE value is killed. Returns the PIDs it killed.
 */
export async function emulateJenkinsProcessKiller(buildId: string, cookie: string): Promise<number[]> {
  const wanted = new Set([`BUILD_ID=${buildId}`, `JENKINS_NODE_COOKIE=${cookie}`]);
  const spared = protectedPids();
  const killed: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (spared.has(pid)) continue;
    let environ: string;
    try {
      environ = await readFile(`/proc/${pid}/environ`, 'utf8');
    } catch {
      continue; // gone, or not ours to read
    }
    if (environ.split('\0').some((entry) => wanted.has(entry))) {
      try {
        process.kill(pid, 'SIGKILL');
        killed.push(pid);
      } catch {
        // exited meanwhile
      }
    }
  }
  return killed;
}

/** PIDs of processes running this checkout's server with PORT=port in their environment. */
export function serversOnPort(port: number): number[] {
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (!commandLine(pid).includes(serverEntry) || !isAlive(pid)) continue;
    try {
      if (readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(`PORT=${port}`)) found.push(pid);
    } catch {
      // gone
    }
  }
  return found;
}

/**
 * Live processes whose environment holds `entry` (NAME=value). A test gives what it starts a unique
 * marker variable; every descendant inherits it, so this finds them all, orphans included.
 */
export function processesWithEnvironment(entry: string): number[] {
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (pid === process.pid || !isAlive(pid)) continue;
    try {
      if (readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(entry)) found.push(pid);
    } catch {
      // gone, or not ours to read
    }
  }
  return found;
}

/** SIGKILLs what processesWithEnvironment finds: cleanup after a test, whatever it left behind. */
export function killProcessesWithEnvironment(entry: string): void {
  for (const pid of processesWithEnvironment(entry)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // exited meanwhile
    }
  }
}

/** A child's exit: its code, or the signal that ended it. */
export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Settles when the child exits (at once when it already has). */
export function exitOf(child: ChildProcess): Promise<Exit> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

export interface WatchedOutput {
  /** stdout and stderr so far, interleaved as they arrived. */
  text(): string;
  /** Settles when the output so far matches; fails when the child exits first (with what it printed). */
  waitFor(pattern: RegExp): Promise<RegExpMatchArray>;
  /** Settles once the child has exited and its output is all read (never, while an orphan holds it). */
  closed: Promise<void>;
}

/** Collects a child's stdout and stderr (the child must be spawned with both piped). */
export function watchOutput(child: ChildProcess): WatchedOutput {
  let text = '';
  const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const waiters = new Set<() => void>();
  const append = (chunk: Buffer) => {
    text += chunk.toString();
    for (const check of [...waiters]) check();
  };
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);
  return {
    text: () => text,
    closed,
    waitFor(pattern) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const match = text.match(pattern);
          if (match) {
            waiters.delete(check);
            resolve(match);
          }
        };
        waiters.add(check);
        check();
        void exitOf(child).then((exit) => {
          if (!waiters.has(check)) return;
          waiters.delete(check);
          reject(new Error(`exited (${exit.code ?? exit.signal}) before printing ${pattern}:\n${text}`));
        });
      });
    },
  };
}
