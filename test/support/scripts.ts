import { RunInstancesCommand } from '@aws-sdk/client-ec2';
import { execa } from 'execa';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UBUNTU_X86_AMI, ec2Client, launchOutsideTheService } from './ec2-reader.js';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const scriptsDir = path.join(repoRoot, 'aws_cli_bash_scripts');

export interface ScriptResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON; throws (failing the test) when stdout is not exactly one document. */
  json(): any;
}

export interface RunOptions {
  env?: Record<string, string | undefined>;
  timeoutMs?: number;
}

/** Runs a script the way people and the service do: an argument array, no shell. */
export async function runScript(script: string, args: readonly string[] = [], options: RunOptions = {}): Promise<ScriptResult> {
  const result = await execa(path.join(scriptsDir, script), args, {
    reject: false,
    env: options.env,
    extendEnv: true,
    stdin: 'ignore',
    timeout: options.timeoutMs ?? 120_000,
  });
  const stdout = String(result.stdout);
  return {
    exitCode: result.exitCode ?? -1,
    stdout,
    stderr: String(result.stderr),
    json() {
      try {
        return JSON.parse(stdout);
      } catch {
        throw new Error(`stdout of ${script} is not one JSON document:\n${stdout}\nstderr:\n${String(result.stderr)}`);
      }
    },
  };
}

export function tagsOf(resource: { Tags?: { Key: string; Value: string }[] }): Record<string, string> {
  return Object.fromEntries((resource.Tags ?? []).map((tag) => [tag.Key, tag.Value]));
}

/** The key pair create_instance.sh uses when KEY_NAME is not set. */
export const SCRIPT_DEFAULT_KEY_NAME = 'my_ec2_keypair';

/** Launches an instance behind the scripts' back, as a person with the console would. */
export async function launchUnmanaged(): Promise<string> {
  const [id] = await launchOutsideTheService();
  return id as string;
}


export interface ManagedLaunch {
  id: string;
  name: string;
  clientToken: string;
}

/**
 * Launches one instance in-process the way create_instance.sh launches it, for tests whose subject is
 * not the create: the same type, key pair, client token and tags (Name, ManagedBy and the client-token
 * tag on the instance; Name and ManagedBy on its volume), without the script's aws CLI calls. The root
 * volume keeps the size the AMI gives (8 GiB for the Ubuntu image, what the tests asked the script for).
 * The client token goes to RunInstances itself as the script sends it: the emulator would otherwise
 * report a placeholder token, and the scripts read EC2's token before the tag.
 */
export async function launchManaged(
  name = 'web',
  options: {
    keyName?: string; clientToken?: string; imageId?: string;
    /** More tags on instance and volume, as --tag and --owner (Owner) put them. */
    tags?: Record<string, string>;
    /** The ec2-creator:expires-at tag on the instance, as --expires-at puts it. */
    expiresAt?: string;
  } = {},
): Promise<ManagedLaunch> {
  const clientToken = options.clientToken ?? randomUUID();
  const common = [
    { Key: 'Name', Value: name }, { Key: 'ManagedBy', Value: 'ec2-creator' },
    ...Object.entries(options.tags ?? {}).map(([Key, Value]) => ({ Key, Value })),
  ];
  const expiry = options.expiresAt ? [{ Key: 'ec2-creator:expires-at', Value: options.expiresAt }] : [];
  const launched = await ec2Client().send(new RunInstancesCommand({
    ImageId: options.imageId ?? UBUNTU_X86_AMI,
    InstanceType: 't3.micro',
    MinCount: 1,
    MaxCount: 1,
    KeyName: options.keyName ?? SCRIPT_DEFAULT_KEY_NAME,
    ClientToken: clientToken,
    TagSpecifications: [
      { ResourceType: 'instance', Tags: [...common, { Key: 'ec2-creator:client-token', Value: clientToken }, ...expiry] },
      { ResourceType: 'volume', Tags: common },
    ],
  }));
  const id = launched.Instances?.[0]?.InstanceId;
  if (!id) throw new Error('RunInstances answered without an instance id');
  return { id, name, clientToken };
}
