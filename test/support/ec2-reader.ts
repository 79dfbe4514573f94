/**
 * Reads (and arranges) EC2 in-process with the AWS SDK, independently of the service and its scripts, so
 * the tests check what really happened in the emulator. The scripts under test keep the real aws CLI;
 * only the tests' own set-up and checks avoid its ~1 s start-up per call.
 */
import {
  CreateKeyPairCommand, DescribeInstancesCommand, EC2Client, RunInstancesCommand,
} from '@aws-sdk/client-ec2';
import { motoEndpoint, resetMoto } from './global-fixture.js';

let client: EC2Client | undefined;
let clientEndpoint: string | undefined;

/** A new EC2 client for the emulator at `endpoint` (destroy it when done). */
export function ec2ClientFor(endpoint: string): EC2Client {
  // The lockfile pins an SDK that supports Node 20; its notice about future releases is noise here.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  return new EC2Client({
    endpoint,
    region: process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
    maxAttempts: 1,
  });
}

/** An EC2 client for the emulator this process's tests use (one per endpoint, reused). */
export function ec2Client(): EC2Client {
  const endpoint = motoEndpoint();
  if (!client || clientEndpoint !== endpoint) {
    client = ec2ClientFor(endpoint);
    clientEndpoint = endpoint;
  }
  return client;
}

// Typed loosely on purpose: tests read fields that the SDK types mark optional.
export async function allEc2Instances(): Promise<any[]> {
  const described = await ec2Client().send(new DescribeInstancesCommand({}));
  return (described.Reservations ?? []).flatMap((reservation) => reservation.Instances ?? []);
}

export async function ec2InstanceById(id: string): Promise<any> {
  return (await allEc2Instances()).find((instance) => instance.InstanceId === id);
}

export const TEST_KEY_NAME = 'ec2c-test-key';
/** x86_64 Ubuntu image moto ships with. */
export const UBUNTU_X86_AMI = 'ami-1e749f67';
/** arm64 Amazon Linux 2022 image moto ships with. */
export const AL2022_ARM_AMI = 'ami-0e9271c829888680e';

export async function createKeyPair(name = TEST_KEY_NAME): Promise<void> {
  await ec2Client().send(new CreateKeyPairCommand({ KeyName: name }));
}

/** An empty emulator with the tests' key pair: what most tests start from. */
export async function freshEc2(): Promise<void> {
  await resetMoto();
  await createKeyPair();
}

/** Launches an instance behind the service's back, as a person with the console would; returns its id. */
export async function launchOutsideTheService(
  options: { imageId?: string; keyName?: string; tags?: Record<string, string>; count?: number } = {},
): Promise<string[]> {
  const tags = Object.entries(options.tags ?? {}).map(([Key, Value]) => ({ Key, Value }));
  const launched = await ec2Client().send(new RunInstancesCommand({
    ImageId: options.imageId ?? UBUNTU_X86_AMI,
    InstanceType: 't3.micro',
    MinCount: options.count ?? 1,
    MaxCount: options.count ?? 1,
    ...(options.keyName ? { KeyName: options.keyName } : {}),
    ...(tags.length > 0 ? { TagSpecifications: [{ ResourceType: 'instance', Tags: tags }] } : {}),
  }));
  return (launched.Instances ?? []).map((instance) => instance.InstanceId as string);
}
