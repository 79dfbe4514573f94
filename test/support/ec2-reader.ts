/**
 * Reads (and arranges) EC2 with the plain aws CLI, independently of the service and its scripts, so
 * the tests check what really happened in the emulator.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export async function awsEc2(...args: string[]): Promise<any> {
  const { stdout } = await run('aws', ['ec2', ...args, '--output=json'], { maxBuffer: 20 * 1024 * 1024 });
  return stdout.trim() === '' ? {} : JSON.parse(stdout);
}

export async function allEc2Instances(): Promise<any[]> {
  const described = await awsEc2('describe-instances');
  return described.Reservations.flatMap((reservation: any) => reservation.Instances);
}

export async function ec2InstanceById(id: string): Promise<any | undefined> {
  return (await allEc2Instances()).find((instance) => instance.InstanceId === id);
}

export const TEST_KEY_NAME = 'ec2c-test-key';
/** x86_64 Ubuntu image moto ships with. */
export const UBUNTU_X86_AMI = 'ami-1e749f67';
/** arm64 Amazon Linux 2022 image moto ships with. */
export const AL2022_ARM_AMI = 'ami-0e9271c829888680e';

export async function createKeyPair(name = TEST_KEY_NAME): Promise<void> {
  await awsEc2('create-key-pair', `--key-name=${name}`);
}
