/**
 * What one benchmark run owns: a temporary folder, moto_server, the servers and scripts it starts, and the
 * promise that none of them outlives the run. Cleanup steps run in reverse order on the way out, after a
 * failure or on SIGINT/SIGTERM; a watcher started apart from the run (scripts/lib/reap-when-gone.sh) kills
 * whatever still carries the run's variable once the run's process is gone, even after a SIGKILL.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startMoto, type MotoServer } from '../../scripts/lib/moto.js';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const REAPER = path.join(repoRoot, 'scripts', 'lib', 'reap-when-gone.sh');
const RUN_VARIABLE = 'EC2_CREATOR_BENCH_RUN';

export interface Workspace {
  dir: string;
  moto: MotoServer;
  /** The AWS CLI's variables for moto with dummy credentials and empty config files: no real account is reachable. */
  awsEnv: Record<string, string>;
  /** Registers a step for the way out; the latest runs first. */
  onCleanup(step: () => Promise<void> | void): void;
  cleanup(): Promise<void>;
}

export async function openWorkspace(options: { keep: boolean }): Promise<Workspace> {
  const dir = mkdtempSync(path.join(tmpdir(), 'ec2-creator-bench-'));
  const runId = randomUUID();
  // Set before anything is started: children inherit it, and the watcher finds them by it.
  process.env[RUN_VARIABLE] = runId;
  const { [RUN_VARIABLE]: _ours, ...watcherEnv } = process.env;
  spawn('bash', [REAPER, String(process.pid), RUN_VARIABLE, runId, ...(options.keep ? [] : [dir])], {
    detached: true, stdio: 'ignore', env: watcherEnv,
  }).unref();

  const steps: Array<() => Promise<void> | void> = [];
  let cleaning: Promise<void> | undefined;
  const cleanup = (): Promise<void> => {
    cleaning ??= (async () => {
      for (const step of steps.reverse()) {
        try {
          await step();
        } catch (error) {
          process.stderr.write(`bench: cleanup step failed: ${error instanceof Error ? error.message : String(error)}\n`);
        }
      }
      if (options.keep) process.stderr.write(`bench: kept ${dir}\n`);
      else rmSync(dir, { recursive: true, force: true });
    })();
    return cleaning;
  };
  // `on`, not `once`: a second signal must not end the process half way through its cleanup.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      process.stderr.write(`bench: ${signal}: stopping what the run started\n`);
      void cleanup().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
    });
  }

  const awsEnv = {
    AWS_ACCESS_KEY_ID: 'bench',
    AWS_SECRET_ACCESS_KEY: 'bench',
    AWS_DEFAULT_REGION: 'us-east-1',
    AWS_CONFIG_FILE: path.join(dir, 'aws-config'),
    AWS_SHARED_CREDENTIALS_FILE: path.join(dir, 'aws-credentials'),
    AWS_EC2_METADATA_DISABLED: 'true',
  };
  for (const name of ['AWS_PROFILE', 'AWS_SESSION_TOKEN', 'AWS_SECURITY_TOKEN', 'AWS_MAX_ATTEMPTS', 'AWS_RETRY_MODE']) {
    delete process.env[name];
  }
  Object.assign(process.env, awsEnv);

  let moto: MotoServer;
  try {
    moto = await startMoto();
  } catch (error) {
    await cleanup();
    throw error;
  }
  steps.push(() => moto.stop());
  process.env.AWS_ENDPOINT_URL = moto.endpoint;
  return {
    dir,
    moto,
    awsEnv: { ...awsEnv, AWS_ENDPOINT_URL: moto.endpoint },
    onCleanup: (step) => steps.push(step),
    cleanup,
  };
}
