/**
 * One typed adapter per script in aws_cli_bash_scripts/. Each builds the argument array (options first,
 * then `--`, then positionals, so a value can never be read as an option) and names the schema its stdout
 * must match. `createEc2(runner)` binds them into the interface the domain depends on.
 */
import { redactText } from '../redact.js';
import type {
  Ec2Image, Ec2Instance, Ec2InstanceListing, Ec2KeyPair, Ec2SecurityGroup, Ec2SecurityGroups, UnreadableInstance,
} from '../schemas/script-outputs.js';
import {
  describeAjvErrors, validateEc2Image, validateEc2Instance, validateEc2InstanceBatch, validateEc2InstanceList,
  validateEc2KeyPair, validateEc2SecurityGroup, validateEc2SecurityGroups,
} from '../schemas/validators.js';
import { coalesce } from './coalesce.js';
import { ScriptError } from './errors.js';
import { failureOfExitCode, PROGRESS_FD, type RunContext, type ScriptRunner } from './runner.js';

export interface CreateInstanceInput {
  name: string;
  ami: string;
  instanceType: string;
  storageGb: number;
  keyName: string;
  clientToken: string;
  securityGroupId?: string | undefined;
  /** More groups (with securityGroupId, at most 5 in all; one given twice is used once). */
  securityGroupIds?: readonly string[] | undefined;
  /** User tags on the instance and its root volume (at most 10; reserved keys are refused by the script). */
  tags?: Readonly<Record<string, string>> | undefined;
  /** Tagged Owner on the instance and its root volume. */
  owner?: string | null | undefined;
  /** ISO 8601 UTC time, tagged ec2-creator:expires-at on the instance. */
  expiresAt?: string | null | undefined;
  /** The image's root device, when the caller has read the image: the script then does not read it again. */
  rootDevice?: string | null | undefined;
  /** The key pair is known to exist: the script then does not check it first. */
  keyChecked?: boolean | undefined;
  /** Seconds between the script's reads while it waits for running (its default: 5). */
  pollIntervalS?: number | undefined;
}

/**
 * What the service already knows, so the scripts need not ask EC2 again: the state of a recorded
 * instance is on record (the script's own check before a start or stop is skipped; EC2 still refuses what
 * the state does not allow), and its root volume never changes size after launch (not read back; a null
 * storage_gb keeps the recorded size). Destroy keeps its check that the instance is still tagged as
 * managed: someone may have taken the tag off since it was recorded.
 */
const KNOWN_STATE = ['--no-precheck', '--no-storage'];
const KNOWN_SIZE = ['--no-storage'];

/** The script's own wait bound, kept inside the runner's kill timeout so the script reports 7 first. */
export function waitTimeoutSeconds(runnerTimeoutMs: number): number {
  return Math.max(1, Math.floor((runnerTimeoutMs * 0.8) / 1000));
}

/**
 * Waits until the instance runs, like start and stop do, so the answer and the record carry the state,
 * public IP and ssh_string a person needs rather than run-instances' provisional "pending". The instance
 * id is told to ctx.onProgress the moment EC2 gives it, before the wait is over. A failure after the
 * launch names the instance (ScriptError details.instanceId); if the script's output is lost altogether,
 * the launch is still found by its client token.
 */
export async function createInstance(runner: ScriptRunner, input: CreateInstanceInput, ctx: RunContext = {}): Promise<Ec2Instance> {
  const wait = waitTimeoutSeconds(ctx.timeoutMs ?? runner.timeoutMs);
  const args = [`--key-name=${input.keyName}`, `--client-token=${input.clientToken}`, '--wait', `--wait-timeout=${wait}`];
  if (input.pollIntervalS) args.push(`--poll-interval=${input.pollIntervalS}`);
  if (ctx.onProgress) args.push(`--progress-fd=${PROGRESS_FD}`);
  for (const group of securityGroupsOf(input)) args.push(`--security-group-id=${group}`);
  for (const [key, value] of Object.entries(input.tags ?? {})) args.push(`--tag=${key}=${value}`);
  if (input.owner) args.push(`--owner=${input.owner}`);
  if (input.expiresAt) args.push(`--expires-at=${input.expiresAt}`);
  if (input.rootDevice) args.push(`--root-device=${input.rootDevice}`);
  if (input.keyChecked) args.push('--no-precheck');
  args.push('--', input.name, input.ami, input.instanceType, String(input.storageGb));
  return runner.run('create_instance.sh', args, validateEc2Instance, { clientInput: true, ...ctx });
}

/** securityGroupId and securityGroupIds together, each once, in order. */
function securityGroupsOf(input: CreateInstanceInput): string[] {
  const all = [...(input.securityGroupId ? [input.securityGroupId] : []), ...(input.securityGroupIds ?? [])];
  return [...new Set(all)];
}

export interface TagChanges {
  /** Tags to set (key → value). Name, ManagedBy, the client-token tag and aws:* keys are refused (exit 2). */
  set?: Readonly<Record<string, string>> | undefined;
  /** Keys to remove; a key the instance lacks is no error. */
  remove?: readonly string[] | undefined;
}

/**
 * Sets and removes tags on a managed instance (not found: 3, not managed: 4) and returns the instance with
 * its tags as changed. The root volume's size is not read: the service keeps it on record.
 */
export async function tagInstance(
  runner: ScriptRunner,
  instanceId: string,
  changes: TagChanges,
  ctx: RunContext = {},
): Promise<Ec2Instance> {
  const args = ['--no-storage'];
  for (const [key, value] of Object.entries(changes.set ?? {})) args.push(`--set=${key}=${value}`);
  for (const key of changes.remove ?? []) args.push(`--remove=${key}`);
  args.push('--', instanceId);
  return runner.run('tag_instance.sh', args, validateEc2Instance, { clientInput: true, ...ctx });
}

/** The groups (1 to 5, in order) with their VPC and managed flag, and the region's default VPC; a missing one is 3. */
export async function describeSecurityGroups(
  runner: ScriptRunner,
  groupIds: readonly string[],
  ctx: RunContext = {},
): Promise<Ec2SecurityGroups> {
  return runner.run('describe_security_groups.sh', ['--', ...groupIds], validateEc2SecurityGroups, { clientInput: true, ...ctx });
}

export interface DescribeOptions {
  /** Read the root volume's size too (one AWS call more): only an instance without a record needs it. */
  storage?: boolean | undefined;
}

export async function describeInstance(
  runner: ScriptRunner,
  instanceId: string,
  ctx: RunContext = {},
  options: DescribeOptions = {},
): Promise<Ec2Instance> {
  const args = options.storage ? ['--', instanceId] : ['--no-storage', '--', instanceId];
  return runner.run('describe_instance.sh', args, validateEc2Instance, { clientInput: true, ...ctx });
}

export async function describeImage(runner: ScriptRunner, amiId: string, ctx: RunContext = {}): Promise<Ec2Image> {
  return runner.run('describe_image.sh', ['--', amiId], validateEc2Image, { clientInput: true, ...ctx });
}

const LISTED_INSTANCE_ID = /^i-[0-9a-f]{8,17}$/;

/**
 * Every instance the script reports, split into usable documents and the rest. The list schema already
 * refused the whole answer if a managed entry was bad; what is left out here is only ever an instance
 * someone else made, which must not fail the read for everyone.
 */
export async function listInstances(
  runner: ScriptRunner,
  options: { all?: boolean; state?: string } = {},
  ctx: RunContext = {},
): Promise<Ec2InstanceListing> {
  // Sizes are read only for an instance being imported (describeInstance with storage).
  const args: string[] = ['--no-storage'];
  if (options.all) args.push('--all');
  if (options.state) args.push(`--state=${options.state}`);
  const listed = await runner.run('list_instances.sh', args, validateEc2InstanceList, ctx);
  const instances: Ec2Instance[] = [];
  const unreadable: UnreadableInstance[] = [];
  for (const entry of listed.instances) {
    if (validateEc2Instance(entry)) {
      instances.push(entry);
      continue;
    }
    const id = typeof entry.id === 'string' && LISTED_INSTANCE_ID.test(entry.id) ? entry.id : null;
    const problems = describeAjvErrors(validateEc2Instance.errors)
      .slice(0, 5)
      .map((e) => `${e.field} ${e.message}`)
      .join('; ');
    unreadable.push({ id, problems });
  }
  return { instances, unreadable };
}

export type ChangeScript = 'start_instance.sh' | 'stop_instance.sh' | 'destroy_instance.sh';

/** The options a change script gets from the service, for one id or several. */
function changeOptions(runner: ScriptRunner, script: ChangeScript, ctx: RunContext, pollIntervalS?: number): string[] {
  if (script === 'destroy_instance.sh') return KNOWN_SIZE;
  const poll = pollIntervalS ? [`--poll-interval=${pollIntervalS}`] : [];
  return [...KNOWN_STATE, `--wait-timeout=${waitTimeoutSeconds(ctx.timeoutMs ?? runner.timeoutMs)}`, ...poll];
}

/** One start, stop or destroy: the instance, or the run's ScriptError. */
export async function changeInstance(
  runner: ScriptRunner,
  script: ChangeScript,
  instanceId: string,
  ctx: RunContext = {},
  pollIntervalS?: number,
): Promise<Ec2Instance> {
  const args = [...changeOptions(runner, script, ctx, pollIntervalS), '--', instanceId];
  return runner.run(script, args, validateEc2Instance, { clientInput: true, ...ctx });
}

/**
 * One run of a start, stop or destroy script for several instances: each id's instance, or its own
 * ScriptError (classified from the exit code a run for that id alone would have had).
 */
export async function changeInstances(
  runner: ScriptRunner,
  script: ChangeScript,
  instanceIds: readonly string[],
  ctx: RunContext = {},
  pollIntervalS?: number,
): Promise<Map<string, Ec2Instance | ScriptError>> {
  const args = [...changeOptions(runner, script, ctx, pollIntervalS), '--', ...instanceIds];
  const batch = await runner.run(script, args, validateEc2InstanceBatch, { clientInput: true, ...ctx });
  const outcomes = new Map<string, Ec2Instance | ScriptError>();
  for (const instance of batch.instances) outcomes.set(instance.id, instance);
  for (const failed of batch.errors) {
    outcomes.set(failed.instance_id, new ScriptError(failureOfExitCode(failed.exit_code), script, redactText(failed.error.message), {
      exitCode: failed.exit_code, code: failed.error.code, clientInput: ctx.clientInput ?? true,
    }));
  }
  for (const id of instanceIds) {
    if (!outcomes.has(id)) outcomes.set(id, new ScriptError('bad-output', script, `${script} reported nothing for ${id}`));
  }
  return outcomes;
}

export interface EnsureSecurityGroupOptions {
  name?: string | undefined;
  /** Allowed on SSH and on the web ports alike. */
  cidr?: string | undefined;
  /** Allowed on port 22 (IPv4 or IPv6 blocks). */
  sshCidrs?: readonly string[] | undefined;
  /** Allowed on ports 80 and 443. */
  webCidrs?: readonly string[] | undefined;
  vpcId?: string | undefined;
}

/**
 * Gets or creates the group and converges it to exactly the rules asked for (other inbound rules revoked).
 * With no CIDR at all the script opens all three ports to 0.0.0.0/0; a kind of port that no CIDR names
 * stays closed. A same-name group not tagged as managed is refused (exit 4, conflict) and left unchanged.
 */
export async function ensureSecurityGroup(
  runner: ScriptRunner,
  options: EnsureSecurityGroupOptions = {},
  ctx: RunContext = {},
): Promise<Ec2SecurityGroup> {
  const args: string[] = [];
  if (options.name) args.push(`--name=${options.name}`);
  if (options.cidr) args.push(`--cidr=${options.cidr}`);
  for (const cidr of options.sshCidrs ?? []) args.push(`--ssh-cidr=${cidr}`);
  for (const cidr of options.webCidrs ?? []) args.push(`--web-cidr=${cidr}`);
  if (options.vpcId) args.push(`--vpc-id=${options.vpcId}`);
  return runner.run('ensure_security_group.sh', args, validateEc2SecurityGroup, { clientInput: true, ...ctx });
}

export async function ensureKeyPair(
  runner: ScriptRunner,
  name: string,
  options: { create?: boolean; privateKeyFile?: string } = {},
  ctx: RunContext = {},
): Promise<Ec2KeyPair> {
  const args: string[] = [];
  if (options.create) args.push('--create');
  if (options.privateKeyFile) args.push(`--private-key-file=${options.privateKeyFile}`);
  args.push('--', name);
  return runner.run('ensure_key_pair.sh', args, validateEc2KeyPair, ctx);
}

/** What the domain depends on: the adapters bound to one runner (tests may pass fakes). */
export interface Ec2 {
  createInstance(input: CreateInstanceInput, ctx?: RunContext): Promise<Ec2Instance>;
  describeInstance(instanceId: string, ctx?: RunContext, options?: DescribeOptions): Promise<Ec2Instance>;
  describeImage(amiId: string, ctx?: RunContext): Promise<Ec2Image>;
  listInstances(options?: { all?: boolean; state?: string }, ctx?: RunContext): Promise<Ec2InstanceListing>;
  startInstance(instanceId: string, ctx?: RunContext): Promise<Ec2Instance>;
  stopInstance(instanceId: string, ctx?: RunContext): Promise<Ec2Instance>;
  destroyInstance(instanceId: string, ctx?: RunContext): Promise<Ec2Instance>;
  ensureSecurityGroup(options?: EnsureSecurityGroupOptions, ctx?: RunContext): Promise<Ec2SecurityGroup>;
  tagInstance(instanceId: string, changes: TagChanges, ctx?: RunContext): Promise<Ec2Instance>;
  describeSecurityGroups(groupIds: readonly string[], ctx?: RunContext): Promise<Ec2SecurityGroups>;
  ensureKeyPair(name: string, options?: { create?: boolean; privateKeyFile?: string }, ctx?: RunContext): Promise<Ec2KeyPair>;
}

/** Images remembered at most; an AMI's architecture and root device never change once it is available. */
const IMAGES_REMEMBERED = 256;
/** Instances changed in one run at most (EC2 takes many more; a bound keeps one run's wait readable). */
const LARGEST_BATCH = 50;

export interface Ec2Options {
  /** How long a start, stop or destroy waits for others of its kind to share its script run (0: never). */
  coalesceWindowMs?: number | undefined;
  /** Seconds between a waiting script's reads of EC2 (the scripts' default: 5). */
  pollIntervalS?: number | undefined;
}

/**
 * The adapters bound to one runner, remembering what EC2 cannot change behind our back so it is asked
 * once: images that are available (an AMI's architecture and root device are fixed), and key pairs a
 * launch has used (a key deleted since makes EC2 refuse the launch, which forgets it again). Starts,
 * stops and destroys that arrive within the coalescing window share one script run.
 */
export function createEc2(runner: ScriptRunner, options: Ec2Options = {}): Ec2 {
  const images = new Map<string, Ec2Image>();
  const checkedKeys = new Set<string>();

  async function describeImageOnce(amiId: string, ctx?: RunContext): Promise<Ec2Image> {
    const known = images.get(amiId);
    if (known) return known;
    const image = await describeImage(runner, amiId, ctx);
    if (image.state === 'available') {
      if (images.size >= IMAGES_REMEMBERED) images.delete(images.keys().next().value as string);
      images.set(amiId, image);
    }
    return image;
  }

  async function createWithKnownKey(input: CreateInstanceInput, ctx?: RunContext): Promise<Ec2Instance> {
    const keyChecked = input.keyChecked ?? checkedKeys.has(input.keyName);
    try {
      const instance = await createInstance(runner, { pollIntervalS: options.pollIntervalS, ...input, keyChecked }, ctx);
      checkedKeys.add(input.keyName);
      return instance;
    } catch (error) {
      const awsCode = error instanceof ScriptError ? (error.details.code ?? '') : '';
      if (awsCode.startsWith('InvalidKeyPair')) checkedKeys.delete(input.keyName);
      if (awsCode.startsWith('InvalidAMIID')) images.delete(input.ami);
      throw error;
    }
  }

  const coalesced = (script: ChangeScript) => coalesce<Ec2Instance>({
    windowMs: options.coalesceWindowMs ?? 0,
    maxBatch: LARGEST_BATCH,
    one: (id, ctx) => changeInstance(runner, script, id, ctx, options.pollIntervalS),
    many: (ids, ctx) => changeInstances(runner, script, ids, ctx, options.pollIntervalS),
  });
  const start = coalesced('start_instance.sh');
  const stop = coalesced('stop_instance.sh');
  const destroy = coalesced('destroy_instance.sh');

  return {
    createInstance: createWithKnownKey,
    describeInstance: (id, ctx, options) => describeInstance(runner, id, ctx, options),
    describeImage: describeImageOnce,
    listInstances: (options, ctx) => listInstances(runner, options, ctx),
    startInstance: start,
    stopInstance: stop,
    destroyInstance: destroy,
    ensureSecurityGroup: (options, ctx) => ensureSecurityGroup(runner, options, ctx),
    tagInstance: (id, changes, ctx) => tagInstance(runner, id, changes, ctx),
    describeSecurityGroups: (ids, ctx) => describeSecurityGroups(runner, ids, ctx),
    ensureKeyPair: (name, options, ctx) => ensureKeyPair(runner, name, options, ctx),
  };
}
