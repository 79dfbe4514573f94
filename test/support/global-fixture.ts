/**
 * One moto_server for each test process: for the whole run when mocha runs serially, for each worker
 * under --parallel, so files in different workers never reset each other's emulator. Child processes
 * (scripts, the aws CLI, servers) inherit these variables, so nothing a test starts can reach a real AWS
 * account or any host but loopback. moto dies with the process that started it, even on SIGKILL.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startMoto, type MotoServer } from '../../scripts/lib/moto.js';
import { firstOnPath, realAwsCli } from '../../scripts/lib/aws-cli.js';

const MOTO_ENDPOINT_VARIABLE = 'EC2_CREATOR_TEST_MOTO_ENDPOINT';
const RUN_DIR_VARIABLE = 'EC2_CREATOR_TEST_RUN_DIR';
const REAPER = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../scripts/lib/reap-when-gone.sh');
const MOTO_OWNER_VARIABLE = 'EC2_CREATOR_TEST_MOTO_PID';
let moto: Promise<MotoServer> | undefined;

function isolateFromRealAws(): void {
  // In the run's folder: a worker the pool ends without an exit event still leaves nothing behind.
  const awsHome = mkdtempSync(path.join(testRunDir(), 'aws-home-'));
  process.once('exit', () => rmSync(awsHome, { recursive: true, force: true }));
  for (const name of [
    'AWS_PROFILE', 'AWS_SESSION_TOKEN', 'AWS_SECURITY_TOKEN', 'AWS_MAX_ATTEMPTS', 'AWS_RETRY_MODE',
    // Either would keep the scripts from the emulator: the first wins over AWS_ENDPOINT_URL, the second turns it off.
    'AWS_ENDPOINT_URL_EC2', 'AWS_IGNORE_CONFIGURED_ENDPOINT_URLS',
  ]) {
    delete process.env[name];
  }
  Object.assign(process.env, {
    AWS_ACCESS_KEY_ID: 'testing',
    AWS_SECRET_ACCESS_KEY: 'testing',
    AWS_DEFAULT_REGION: 'us-east-1',
    AWS_CONFIG_FILE: path.join(awsHome, 'config'),
    AWS_SHARED_CREDENTIALS_FILE: path.join(awsHome, 'credentials'),
    AWS_EC2_METADATA_DISABLED: 'true',
  });
}

/** Starts this process's emulator once; the environment says which process owns it (a worker inherits
 * its parent's variables, and must not use the parent's emulator). */
async function ensureMoto(): Promise<void> {
  if (process.env[MOTO_OWNER_VARIABLE] !== String(process.pid)) {
    isolateFromRealAws();
    process.env[MOTO_OWNER_VARIABLE] = String(process.pid);
    moto = startMoto({ holdsProcessOpen: false });
  }
  const endpoint = (await moto)?.endpoint;
  if (!endpoint) throw new Error('moto_server did not start');
  process.env.AWS_ENDPOINT_URL = endpoint;
  process.env[MOTO_ENDPOINT_VARIABLE] = endpoint;
}

// One folder for the whole run, shared by the workers (they inherit the variable), removed by the
// process that made it: what the tests build or keep between files goes there, never into the checkout.
// Every process a test starts inherits the variable; a watcher started apart from the run kills what
// still carries it once the run has ended, so a run that is killed (even by SIGKILL) leaves nothing behind.
if (!process.env[RUN_DIR_VARIABLE]) {
  const runDir = mkdtempSync(path.join(tmpdir(), 'ec2-creator-test-run-'));
  const { [RUN_DIR_VARIABLE]: _absent, ...watcherEnv } = process.env;
  spawn('bash', [REAPER, String(process.pid), RUN_DIR_VARIABLE, runDir, runDir], {
    detached: true, stdio: 'ignore', env: watcherEnv,
  }).unref();
  process.env[RUN_DIR_VARIABLE] = runDir;
  process.once('exit', () => rmSync(runDir, { recursive: true, force: true }));
  skipPyenvShim(runDir);
}

/** The suite makes hundreds of CLI calls: they skip pyenv's shim (see scripts/lib/aws-cli.ts). */
function skipPyenvShim(runDir: string): void {
  const first = firstOnPath('aws');
  const real = realAwsCli();
  if (!real || real === first) return;
  const bin = path.join(runDir, 'bin');
  mkdirSync(bin);
  symlinkSync(real, path.join(bin, 'aws'));
  process.env.PATH = `${bin}${path.delimiter}${process.env.PATH ?? ''}`;
}

/** The run's shared folder (see above). */
export function testRunDir(): string {
  return process.env[RUN_DIR_VARIABLE] as string;
}

/** Root hooks: run before each file under --parallel, once for the run when serial. */
export const mochaHooks = {
  async beforeAll(this: Mocha.Context): Promise<void> {
    this.timeout(60_000);
    await ensureMoto();
  },
};

/** The emulator every test in this process talks to. */
export function motoEndpoint(): string {
  const endpoint = process.env[MOTO_ENDPOINT_VARIABLE];
  if (!endpoint || process.env[MOTO_OWNER_VARIABLE] !== String(process.pid)) {
    throw new Error('moto_server is not running: the root hook in test/support/global-fixture.ts did not start it');
  }
  return endpoint;
}

/** Forgets every EC2 resource, so that each test arranges exactly the data it needs. */
export async function resetMoto(): Promise<void> {
  const response = await fetch(`${motoEndpoint()}/moto-api/reset`, { method: 'POST' });
  if (!response.ok) throw new Error(`moto reset answered ${response.status}`);
}
