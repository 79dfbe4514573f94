/**
 * One moto_server for the whole run. Child processes (scripts, the aws CLI) inherit these variables,
 * so nothing a test starts can reach a real AWS account or any host but loopback.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startMoto, type MotoServer } from '../../scripts/lib/moto.js';

const MOTO_ENDPOINT_VARIABLE = 'EC2_CREATOR_TEST_MOTO_ENDPOINT';
let moto: MotoServer | undefined;
let awsHome: string | undefined;

export async function mochaGlobalSetup(): Promise<void> {
  awsHome = mkdtempSync(path.join(tmpdir(), 'ec2-creator-aws-home-'));
  for (const name of ['AWS_PROFILE', 'AWS_SESSION_TOKEN', 'AWS_SECURITY_TOKEN', 'AWS_MAX_ATTEMPTS', 'AWS_RETRY_MODE']) {
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
  moto = await startMoto();
  process.env.AWS_ENDPOINT_URL = moto.endpoint;
  // Spec files may load this module a second time (mocha requires it, tests import it), so the
  // endpoint travels in the environment rather than in module state.
  process.env[MOTO_ENDPOINT_VARIABLE] = moto.endpoint;
}

export async function mochaGlobalTeardown(): Promise<void> {
  await moto?.stop();
  if (awsHome) rmSync(awsHome, { recursive: true, force: true });
}

/** The emulator every test talks to. */
export function motoEndpoint(): string {
  const endpoint = process.env[MOTO_ENDPOINT_VARIABLE];
  if (!endpoint) throw new Error('moto_server is not running: the global fixture did not start it');
  return endpoint;
}

/** Forgets every EC2 resource, so that each test arranges exactly the data it needs. */
export async function resetMoto(): Promise<void> {
  const response = await fetch(`${motoEndpoint()}/moto-api/reset`, { method: 'POST' });
  if (!response.ok) throw new Error(`moto reset answered ${response.status}`);
}
