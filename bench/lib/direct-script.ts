/** An EC2 script run by hand, the way the service's runner starts it (its own process group), and timed. */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { repoRoot, type Workspace } from './workspace.js';

export const scriptsDir = path.join(repoRoot, 'aws_cli_bash_scripts');

/** Runs `script` with `args` and `env` over the caller's environment; resolves with its wall time in ms. */
export async function runScriptDirectly(
  workspace: Workspace,
  script: string,
  args: readonly string[],
  env: Record<string, string>,
): Promise<number> {
  const started = performance.now();
  const child = spawn(path.join(scriptsDir, script), [...args], {
    cwd: scriptsDir,
    env: { ...process.env, ...env },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let killed = false;
  // A run interrupted by a failure elsewhere takes its aws calls with it.
  workspace.onCleanup(() => {
    if (killed || child.exitCode !== null || child.pid === undefined) return;
    killed = true;
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (exitCode) => resolve(exitCode));
  });
  const ms = performance.now() - started;
  if (code !== 0) {
    throw new Error(`${script} ${args.join(' ')} exited with ${code}: ${stdout.slice(0, 300)} ${stderr.slice(-500)}`);
  }
  return ms;
}
