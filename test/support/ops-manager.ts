/**
 * Helpers for the operations tests: build the server once, run scripts/manage_server.sh and the Jenkins
 * job scripts with the environment a person or Jenkins would give them, each test in its own temp
 * folder (PID file, logs, database) on its own loopback port, and emulate Jenkins' process-tree killer.
 */
import { execa } from 'execa';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freeLoopbackPort } from '../../scripts/lib/ports.js';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const manageScript = path.join(repoRoot, 'scripts', 'manage_server.sh');
export const serverEntry = path.join(repoRoot, 'dist', 'app', 'server.js');

export interface Run {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** stdout and stderr, for assertion messages. */
  output: string;
}

function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(full));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(full).mtimeMs);
  }
  return newest;
}

/** Builds dist/ when it is missing or older than a source under app/ (the manager runs the build). */
export async function ensureBuilt(): Promise<void> {
  const built = existsSync(serverEntry) ? statSync(serverEntry).mtimeMs : 0;
  if (built > 0 && built >= newestSource(path.join(repoRoot, 'app'))) return;
  await execa('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: repoRoot, stdin: 'ignore' });
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
