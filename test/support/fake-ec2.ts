/**
 * A fake of the EC2 port (app/ec2/scripts.ts's `Ec2`), for domain and HTTP tests whose subject is not a
 * script: an in-memory EC2 that answers with the documents the scripts print, each checked against the same
 * compiled schema the runner holds the real scripts to, and fails with the ScriptErrors (class, EC2 code,
 * EC2's words) the scripts' exit codes become. No process is spawned, so a test costs milliseconds rather
 * than a CLI start-up per call. The scripts themselves keep their real-CLI tests (test/scripts), and each
 * API behaviour keeps one end-to-end test through them.
 *
 * Control, for ordering without durations: `hold(op)` keeps the next call of that kind inside EC2 until
 * released; `failNext(op, error)` makes the next one fail; `calls` lists every call made.
 */
import { randomBytes } from 'node:crypto';
import type { RunContext } from '../../app/ec2/runner.js';
import type { CreateInstanceInput, DescribeOptions, Ec2, EnsureSecurityGroupOptions, TagChanges } from '../../app/ec2/scripts.js';
import { ScriptError, type ScriptFailure } from '../../app/ec2/errors.js';
import type {
  Ec2Image, Ec2Instance, Ec2InstanceListing, Ec2KeyPair, Ec2SecurityGroup, Ec2SecurityGroups,
} from '../../app/schemas/script-outputs.js';
import {
  describeAjvErrors, validateEc2Image, validateEc2Instance, validateEc2KeyPair, validateEc2SecurityGroup, validateEc2SecurityGroups,
  validateScriptProgress, type ValidateFunction,
} from '../../app/schemas/validators.js';

export type FakeEc2Operation =
  | 'create' | 'describe' | 'describe-image' | 'list' | 'start' | 'stop' | 'destroy' | 'ensure-group' | 'tag' | 'describe-groups'
  | 'ensure-key';

/** One instance as the fake EC2 holds it. */
export interface FakeInstance {
  id: string;
  state: Ec2Instance['state'];
  ami: string;
  instanceType: string;
  keyName: string | null;
  securityGroupIds: string[];
  publicIp: string | null;
  privateIp: string;
  storageGb: number;
  launchTime: string;
  clientToken: string | null;
  tags: Record<string, string>;
}

export interface FakeEc2 extends Ec2 {
  readonly instances: Map<string, FakeInstance>;
  readonly calls: Array<{ op: FakeEc2Operation; ids: string[] }>;
  /** Keeps the next `op` call inside EC2 (after it acted, before it answers) until released. */
  hold(op: FakeEc2Operation): { entered: Promise<void>; release(): void };
  /** The next `op` call fails with `error` and changes nothing. */
  failNext(op: FakeEc2Operation, error: ScriptError): void;
  /** An instance made behind the service's back (console, another tool), running. */
  launchElsewhere(options?: { tags?: Record<string, string>; ami?: string; clientToken?: string }): FakeInstance;
  /** EC2 forgets the instance (terminated long ago). */
  forget(instanceId: string): void;
}

export const FAKE_IMAGES: Record<string, Ec2Image> = {
  'ami-1e749f67': {
    id: 'ami-1e749f67', name: 'ubuntu/images/hvm-ssd/ubuntu-trusty-14.04-amd64-server-20150325', architecture: 'x86_64',
    state: 'available', root_device_name: '/dev/sda1', owner_id: '099720109477', platform: 'Linux/UNIX', description: 'Ubuntu',
  },
  'ami-0e9271c829888680e': {
    id: 'ami-0e9271c829888680e', name: 'al2022-ami-arm64', architecture: 'arm64', state: 'available',
    root_device_name: '/dev/xvda', owner_id: '137112412989', platform: 'Linux/UNIX', description: 'Amazon Linux 2022',
  },
};

const hex = (bytes: number): string => randomBytes(bytes).toString('hex');

/** What the scripts' exit codes become (app/ec2/runner.ts), with EC2's own code and words. */
export function scriptFailure(failure: ScriptFailure, script: string, code: string, message: string): ScriptError {
  const exitCodes: Partial<Record<ScriptFailure, number>> = {
    other: 1, 'invalid-argument': 2, 'not-found': 3, conflict: 4, throttled: 5, credentials: 6, 'wait-timeout': 7, 'incorrect-state': 10,
  };
  return new ScriptError(failure, script, message, { exitCode: exitCodes[failure], code, clientInput: true });
}

/** The answer, held to the schema the runner holds the real script's output to. */
function checked<T>(validate: ValidateFunction<T>, document: unknown, script: string): T {
  if (!validate(document)) {
    const why = describeAjvErrors(validate.errors).map((e) => `${e.field} ${e.message}`).join('; ');
    throw new Error(`the fake EC2 answered ${script} with a document the script would never print: ${why}`);
  }
  return document;
}

export function createFakeEc2(options: { keyPairs?: string[] } = {}): FakeEc2 {
  const instances = new Map<string, FakeInstance>();
  const keyPairs = new Set(options.keyPairs ?? ['ec2c-test-key']);
  const groups = new Map<string, { id: string; name: string; managed: boolean }>();
  const calls: FakeEc2['calls'] = [];
  const holds = new Map<FakeEc2Operation, Array<{ enter(): void; released: Promise<void> }>>();
  const failures = new Map<FakeEc2Operation, ScriptError[]>();
  const defaultVpc = `vpc-${hex(8)}`;

  async function call<T>(op: FakeEc2Operation, ids: string[], act: () => T): Promise<T> {
    calls.push({ op, ids });
    await Promise.resolve(); // an answer never comes in the caller's own turn, as a script's never does
    const failure = failures.get(op)?.shift();
    if (failure) throw failure;
    const result = act();
    const held = holds.get(op)?.shift();
    if (held) {
      held.enter();
      await held.released;
    }
    return result;
  }

  function known(id: string, script: string): FakeInstance {
    const instance = instances.get(id);
    if (!instance) throw scriptFailure('not-found', script, 'InvalidInstanceID.NotFound', `The instance ID '${id}' does not exist`);
    return instance;
  }

  function documentOf(instance: FakeInstance, storage = false): Ec2Instance {
    return checked(validateEc2Instance, {
      id: instance.id,
      name: instance.tags.Name ?? null,
      state: instance.state,
      public_ip: instance.state === 'running' ? instance.publicIp : null,
      private_ip: instance.privateIp,
      ami: instance.ami,
      instance_type: instance.instanceType,
      storage_gb: storage ? instance.storageGb : null,
      key_name: instance.keyName,
      security_group_ids: instance.securityGroupIds,
      launch_time: instance.launchTime,
      client_token: instance.clientToken ?? instance.tags['ec2-creator:client-token'] ?? null,
      managed: instance.tags.ManagedBy === 'ec2-creator',
      tags: { ...instance.tags },
    }, 'an instance script');
  }

  function newInstance(fields: Partial<FakeInstance> & Pick<FakeInstance, 'ami' | 'instanceType'>): FakeInstance {
    const instance: FakeInstance = {
      id: `i-${hex(8)}${hex(1).slice(0, 1)}`,
      state: 'running',
      keyName: null,
      securityGroupIds: [],
      publicIp: `54.${Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250)}`,
      privateIp: `10.0.${Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250)}`,
      storageGb: 8,
      launchTime: new Date().toISOString(),
      clientToken: null,
      tags: {},
      ...fields,
    };
    instances.set(instance.id, instance);
    return instance;
  }

  /** Start, stop and terminate as EC2 ends them (the fake's transitions are over at once). */
  function change(op: 'start' | 'stop' | 'destroy', script: string, id: string): Ec2Instance {
    const instance = known(id, script);
    if (op === 'destroy') {
      if (instance.tags.ManagedBy !== 'ec2-creator') {
        throw scriptFailure('conflict', script, 'NotManaged', `${id} is not tagged ManagedBy=ec2-creator; refusing to destroy it`);
      }
      // The answer is what TerminateInstances reported; EC2 ends it terminated (the fake at once).
      const answered = documentOf({ ...instance, state: instance.state === 'terminated' ? 'terminated' : 'shutting-down' });
      instance.state = 'terminated';
      return answered;
    }
    if (instance.state === 'terminated' || instance.state === 'shutting-down') {
      throw scriptFailure('incorrect-state', script, 'IncorrectInstanceState', `cannot ${op} ${id}: it is ${instance.state}`);
    }
    instance.state = op === 'start' ? 'running' : 'stopped';
    return documentOf(instance);
  }

  const fake: FakeEc2 = {
    instances,
    calls,
    hold(op) {
      let enter: () => void = () => undefined;
      let release: () => void = () => undefined;
      const entered = new Promise<void>((resolve) => (enter = resolve));
      const released = new Promise<void>((resolve) => (release = resolve));
      holds.set(op, [...(holds.get(op) ?? []), { enter, released }]);
      return { entered, release };
    },
    failNext(op, error) {
      failures.set(op, [...(failures.get(op) ?? []), error]);
    },
    launchElsewhere(launch = {}) {
      return newInstance({
        ami: launch.ami ?? 'ami-1e749f67', instanceType: 't3.micro', keyName: 'ec2c-test-key',
        clientToken: launch.clientToken ?? null, tags: launch.tags ?? {},
      });
    },
    forget(instanceId) {
      instances.delete(instanceId);
    },

    createInstance: (input: CreateInstanceInput, ctx: RunContext = {}) => call('create', [], () => {
      const script = 'create_instance.sh';
      if (!input.keyChecked && !keyPairs.has(input.keyName)) {
        throw scriptFailure('not-found', script, 'InvalidKeyPair.NotFound', `The key pair '${input.keyName}' does not exist`);
      }
      if (!FAKE_IMAGES[input.ami]) throw scriptFailure('not-found', script, 'InvalidAMIID.NotFound', `the image id '${input.ami}' does not exist`);
      const earlier = [...instances.values()].find((i) => i.clientToken === input.clientToken);
      if (earlier) return documentOf(earlier); // EC2 answers a repeated ClientToken with the first launch
      const tags: Record<string, string> = {
        Name: input.name, ManagedBy: 'ec2-creator', 'ec2-creator:client-token': input.clientToken, ...input.tags,
      };
      if (input.owner) tags.Owner = input.owner;
      if (input.expiresAt) tags['ec2-creator:expires-at'] = input.expiresAt;
      const groupIds = [...new Set([...(input.securityGroupId ? [input.securityGroupId] : []), ...(input.securityGroupIds ?? [])])];
      const instance = newInstance({
        ami: input.ami, instanceType: input.instanceType, keyName: input.keyName, clientToken: input.clientToken,
        storageGb: input.storageGb, securityGroupIds: groupIds, tags, state: 'pending',
      });
      ctx.onProgress?.(checked(validateScriptProgress, {
        event: 'launched', instance_id: instance.id, client_token: input.clientToken, state: 'pending', launch_time: instance.launchTime,
      }, script));
      instance.state = 'running';
      return { ...documentOf(instance), storage_gb: input.storageGb };
    }),
    describeInstance: (id: string, _ctx?: RunContext, describe: DescribeOptions = {}) =>
      call('describe', [id], () => documentOf(known(id, 'describe_instance.sh'), describe.storage)),
    describeImage: (amiId: string) => call('describe-image', [], () => {
      const image = FAKE_IMAGES[amiId];
      if (!image) throw scriptFailure('not-found', 'describe_image.sh', 'InvalidAMIID.NotFound', `the image id '${amiId}' does not exist`);
      return checked(validateEc2Image, image, 'describe_image.sh');
    }),
    listInstances: (list: { all?: boolean; state?: string } = {}): Promise<Ec2InstanceListing> => call('list', [], () => ({
      instances: [...instances.values()]
        .filter((i) => (list.all || i.tags.ManagedBy === 'ec2-creator') && (!list.state || i.state === list.state))
        .map((i) => documentOf(i)),
      unreadable: [],
    })),
    startInstance: (id: string) => call('start', [id], () => change('start', 'start_instance.sh', id)),
    stopInstance: (id: string) => call('stop', [id], () => change('stop', 'stop_instance.sh', id)),
    destroyInstance: (id: string) => call('destroy', [id], () => change('destroy', 'destroy_instance.sh', id)),
    ensureSecurityGroup: (group: EnsureSecurityGroupOptions = {}): Promise<Ec2SecurityGroup> => call('ensure-group', [], () => {
      const name = group.name ?? 'ec2-creator';
      const existing = [...groups.values()].find((g) => g.name === name);
      if (existing && !existing.managed) {
        throw scriptFailure('conflict', 'ensure_security_group.sh', 'NotManaged', `a security group named ${name} exists and is not managed by ec2-creator`);
      }
      const made = existing ?? { id: `sg-${hex(8)}${hex(1).slice(0, 1)}`, name, managed: true };
      groups.set(made.id, made);
      const rules = [
        ...(group.sshCidrs ?? []).map((cidr) => ({ protocol: 'tcp', port: 22, cidr })),
        ...(group.webCidrs ?? []).flatMap((cidr) => [80, 443].map((port) => ({ protocol: 'tcp', port, cidr }))),
      ];
      return checked(validateEc2SecurityGroup, { id: made.id, name, vpc_id: defaultVpc, created: !existing, rules, revoked: 0 }, 'ensure_security_group.sh');
    }),
    tagInstance: (id: string, changes: TagChanges) => call('tag', [id], () => {
      const instance = known(id, 'tag_instance.sh');
      if (instance.tags.ManagedBy !== 'ec2-creator') throw scriptFailure('conflict', 'tag_instance.sh', 'NotManaged', `${id} is not managed by ec2-creator`);
      Object.assign(instance.tags, changes.set ?? {});
      for (const key of changes.remove ?? []) delete instance.tags[key];
      return documentOf(instance);
    }),
    describeSecurityGroups: (ids: readonly string[]): Promise<Ec2SecurityGroups> => call('describe-groups', [...ids], () => {
      const found = ids.map((id) => {
        const group = groups.get(id);
        if (!group) throw scriptFailure('not-found', 'describe_security_groups.sh', 'InvalidGroup.NotFound', `The security group '${id}' does not exist`);
        return { id, name: group.name, vpc_id: defaultVpc, managed: group.managed };
      });
      return checked(validateEc2SecurityGroups, { default_vpc_id: defaultVpc, groups: found }, 'describe_security_groups.sh');
    }),
    ensureKeyPair: (name: string, key: { create?: boolean } = {}): Promise<Ec2KeyPair> => call('ensure-key', [], () => {
      const existed = keyPairs.has(name);
      if (!existed && !key.create) throw scriptFailure('not-found', 'ensure_key_pair.sh', 'InvalidKeyPair.NotFound', `The key pair '${name}' does not exist`);
      keyPairs.add(name);
      return checked(validateEc2KeyPair, { name, key_pair_id: `key-${hex(8)}`, fingerprint: null, created: !existed, private_key_file: null }, 'ensure_key_pair.sh');
    }),
  };
  return fake;
}
