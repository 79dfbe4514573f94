/**
 * How many AWS calls each script makes: every call of AWS CLI v1 costs about half a second of CPU before
 * it sends anything, so a script asks EC2 only what it does not know. Run by hand a script checks before
 * it acts; a caller that knows the answers (the service keeps records) says so and saves the calls. The
 * fake aws passes every call through to the real CLI and records its operation.
 */
import { AuthorizeSecurityGroupIngressCommand, DescribeSecurityGroupsCommand, StopInstancesCommand, TerminateInstancesCommand } from '@aws-sdk/client-ec2';
import assert from 'node:assert/strict';
import { resetMoto } from '../support/global-fixture.js';
import { UBUNTU_X86_AMI, allEc2Instances, createKeyPair, ec2Client, ec2InstanceById } from '../support/ec2-reader.js';
import { recordAwsCalls } from '../support/fake-aws.js';
import { SCRIPT_DEFAULT_KEY_NAME, launchManaged, launchUnmanaged, runScript } from '../support/scripts.js';

const FAST_POLL = ['--poll-interval=1'];

describe('the AWS calls each script makes', () => {
  let calls: ReturnType<typeof recordAwsCalls>;

  before(async () => {
    await resetMoto();
    await createKeyPair(SCRIPT_DEFAULT_KEY_NAME);
  });
  beforeEach(() => {
    calls = recordAwsCalls();
  });

  const run = (script: string, args: string[]) => runScript(script, args, { env: calls.env });

  describe('create_instance.sh', () => {
    it('when run by hand with --wait, then it checks the key pair and the image, launches, and polls without reading volumes', async () => {
      const result = await run('create_instance.sh', ['--wait', ...FAST_POLL, 'by-hand', UBUNTU_X86_AMI, 't3.micro', '9']);
      assert.equal(result.exitCode, 0, result.stderr);
      assert.deepEqual(calls.operations(), ['describe-key-pairs', 'describe-images', 'run-instances', 'describe-instances']);
      assert.equal(result.json().storage_gb, 9);
      assert.equal(result.json().state, 'running');
    });

    it('when the caller gives the root device and vouches for the key, then it only launches and polls, on that device', async () => {
      const result = await run('create_instance.sh', [
        '--wait', ...FAST_POLL, '--root-device=/dev/sda1', '--no-precheck', 'known', UBUNTU_X86_AMI, 't3.micro', '10',
      ]);
      assert.equal(result.exitCode, 0, result.stderr);
      assert.deepEqual(calls.operations(), ['run-instances', 'describe-instances']);
      const printed = result.json();
      assert.equal(printed.storage_gb, 10);
      const mappings = (await ec2InstanceById(printed.id)).BlockDeviceMappings.map((m: any) => m.DeviceName);
      assert.ok(mappings.includes('/dev/sda1'), `the volume is on the given device: ${mappings.join(', ')}`);
    });

    it('when --root-device is not a device name, then it exits 2 before any AWS call', async () => {
      const before = (await allEc2Instances()).length;
      const result = await run('create_instance.sh', ['--root-device=file:///etc/passwd', 'x', UBUNTU_X86_AMI, 't3.micro', '8']);
      assert.equal(result.exitCode, 2);
      assert.equal(result.json().error.code, 'InvalidArgument');
      assert.match(result.stderr, /invalid device name/);
      assert.deepEqual(calls.operations(), []);
      assert.equal((await allEc2Instances()).length, before);
    });
  });

  describe('stop_instance.sh and start_instance.sh', () => {
    it('when stop runs by hand, then it reads the state, stops, polls once, and reads the volume once at the end', async () => {
      const { id } = await launchManaged('stop-by-hand');
      const result = await run('stop_instance.sh', [...FAST_POLL, id]);
      assert.equal(result.exitCode, 0, result.stderr);
      assert.deepEqual(calls.operations(), ['describe-instances', 'stop-instances', 'describe-instances', 'describe-volumes']);
      assert.equal(result.json().storage_gb, 8);
      assert.equal((await ec2InstanceById(id)).State.Name, 'stopped');
    });

    it('when the caller knows the state and the size (--no-precheck --no-storage), then it makes two calls and leaves storage_gb null', async () => {
      const { id } = await launchManaged('stop-known');
      const result = await run('stop_instance.sh', ['--no-precheck', '--no-storage', ...FAST_POLL, id]);
      assert.equal(result.exitCode, 0, result.stderr);
      assert.deepEqual(calls.operations(), ['stop-instances', 'describe-instances']);
      assert.equal(result.json().state, 'stopped');
      assert.equal(result.json().storage_gb, null);
      assert.equal((await ec2InstanceById(id)).State.Name, 'stopped');
    });

    it('when start skips its check and EC2 reports the instance was terminated, then it exits 10 (IncorrectInstanceState) as the check would', async () => {
      // Real EC2 refuses to start a terminated instance; the emulator does not, so the script reads the
      // state the instance was in from the answer as well.
      const { id } = await launchManaged('gone');
      await ec2Client().send(new TerminateInstancesCommand({ InstanceIds: [id] }));
      const result = await run('start_instance.sh', ['--no-precheck', ...FAST_POLL, id]);
      assert.equal(result.exitCode, 10, result.stderr);
      assert.equal(result.json().error.code, 'IncorrectInstanceState');
      assert.match(result.stderr, /cannot start i-\w+: it is terminated/);
      assert.deepEqual(calls.operations(), ['start-instances']);
    });

    it('when start runs with --no-storage by hand, then it checks, starts and polls with one call each', async () => {
      const { id } = await launchManaged('start-known');
      await ec2Client().send(new StopInstancesCommand({ InstanceIds: [id] }));
      const result = await run('start_instance.sh', ['--no-storage', ...FAST_POLL, id]);
      assert.equal(result.exitCode, 0, result.stderr);
      assert.deepEqual(calls.operations(), ['describe-instances', 'start-instances', 'describe-instances']);
      assert.equal(result.json().state, 'running');
    });
  });

  describe('destroy_instance.sh', () => {
    it('when an instance is destroyed, then it is read once (the managed check) and terminated: two calls, printed in the state EC2 answered', async () => {
      const { id } = await launchManaged('destroyed');
      const result = await run('destroy_instance.sh', ['--no-storage', id]);
      assert.equal(result.exitCode, 0, result.stderr);
      assert.deepEqual(calls.operations(), ['describe-instances', 'terminate-instances']);
      const printed = result.json();
      assert.equal(printed.id, id);
      assert.equal(printed.name, 'destroyed');
      assert.ok(['shutting-down', 'terminated'].includes(printed.state), printed.state);
      assert.equal((await ec2InstanceById(id)).State.Name, 'terminated');
    });

    it('when run by hand on an instance already terminated, then it says so and makes no terminate call', async () => {
      const { id } = await launchManaged('destroyed-before');
      await ec2Client().send(new TerminateInstancesCommand({ InstanceIds: [id] }));
      const result = await run('destroy_instance.sh', [id]);
      assert.equal(result.exitCode, 0, result.stderr);
      assert.equal(result.json().state, 'terminated');
      assert.match(result.stderr, /already terminated; nothing to do/);
      assert.doesNotMatch(result.stderr, /terminating/);
      assert.deepEqual(calls.operations(), ['describe-instances']);
    });

    it('when run by hand on an unmanaged instance, then the check still refuses it', async () => {
      const id = await launchUnmanaged();
      const result = await run('destroy_instance.sh', ['--no-storage', id]);
      assert.equal(result.exitCode, 4);
      assert.equal(result.json().error.code, 'NotManaged');
      assert.deepEqual(calls.operations(), ['describe-instances']);
      assert.equal((await ec2InstanceById(id)).State.Name, 'running');
    });
  });

  describe('describe_instance.sh and list_instances.sh', () => {
    it('when --no-storage is given, then each reads EC2 with one call and storage_gb is null', async () => {
      const { id } = await launchManaged('read-once');
      const described = await run('describe_instance.sh', ['--no-storage', id]);
      assert.equal(described.exitCode, 0, described.stderr);
      assert.equal(described.json().storage_gb, null);
      assert.equal(described.json().id, id);
      const listed = await run('list_instances.sh', ['--no-storage']);
      assert.equal(listed.exitCode, 0, listed.stderr);
      assert.ok(listed.json().instances.some((i: any) => i.id === id && i.storage_gb === null));
      assert.deepEqual(calls.operations(), ['describe-instances', 'describe-instances']);
    });

    it('when run by hand, then the root volume size is read with one more call', async () => {
      const { id } = await launchManaged('read-sizes');
      const described = await run('describe_instance.sh', [id]);
      assert.equal(described.json().storage_gb, 8);
      assert.deepEqual(calls.operations(), ['describe-instances', 'describe-volumes']);
    });
  });

  describe('tag_instance.sh', () => {
    it('when the caller knows the size, then it reads the instance once, sets and removes tags, and reads nothing back', async () => {
      const { id } = await launchManaged('counted-tags');
      const result = await run('tag_instance.sh', ['--no-storage', '--set=Owner=erin', '--remove=team', id]);
      assert.equal(result.exitCode, 0, result.stderr);
      assert.deepEqual(calls.operations(), ['describe-instances', 'create-tags', 'delete-tags']);
      assert.equal(result.json().tags.Owner, 'erin');
    });
  });

  describe('ensure_security_group.sh', () => {
    it('when the group is new, then it finds the default VPC, creates the group and adds the rules without reading them back', async () => {
      const result = await run('ensure_security_group.sh', ['--name=counted', '--cidr=203.0.113.9/32']);
      assert.equal(result.exitCode, 0, result.stderr);
      assert.deepEqual(calls.operations(), ['describe-vpcs', 'describe-security-groups', 'create-security-group', 'authorize-security-group-ingress']);
      const group = (await ec2Client().send(new DescribeSecurityGroupsCommand({ GroupIds: [result.json().id] }))).SecurityGroups?.[0];
      const inEc2 = (group?.IpPermissions ?? []).map((rule) => ({ protocol: rule.IpProtocol, port: rule.FromPort, cidr: rule.IpRanges?.[0]?.CidrIp }));
      assert.deepEqual(result.json().rules, inEc2.sort((a, b) => (a.port ?? 0) - (b.port ?? 0)));
      calls.clear();

      const again = await run('ensure_security_group.sh', ['--name=counted', '--cidr=203.0.113.9/32']);
      assert.equal(again.exitCode, 0, again.stderr);
      assert.deepEqual(calls.operations(), ['describe-vpcs', 'describe-security-groups']);
      assert.deepEqual(again.json().rules, result.json().rules);
    });

    it('when a managed group holds one rule too many, then it revokes it with one call and reads nothing back', async () => {
      const first = await run('ensure_security_group.sh', ['--name=trimmed', '--ssh-cidr=203.0.113.9/32']);
      assert.equal(first.exitCode, 0, first.stderr);
      await ec2Client().send(new AuthorizeSecurityGroupIngressCommand({
        GroupId: first.json().id, IpProtocol: 'tcp', FromPort: 8080, ToPort: 8080, CidrIp: '0.0.0.0/0',
      }));
      calls.clear();

      const again = await run('ensure_security_group.sh', ['--name=trimmed', '--ssh-cidr=203.0.113.9/32']);
      assert.equal(again.exitCode, 0, again.stderr);
      assert.deepEqual(calls.operations(), ['describe-vpcs', 'describe-security-groups', 'revoke-security-group-ingress']);
      assert.equal(again.json().revoked, 1);
    });
  });
});
