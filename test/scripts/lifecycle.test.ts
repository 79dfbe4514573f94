import { StopInstancesCommand, TerminateInstancesCommand } from '@aws-sdk/client-ec2';
import assert from 'node:assert/strict';
import { resetMoto } from '../support/global-fixture.js';
import { AL2022_ARM_AMI, UBUNTU_X86_AMI, createKeyPair, ec2Client, ec2InstanceById, launchOutsideTheService } from '../support/ec2-reader.js';
import { SCRIPT_DEFAULT_KEY_NAME, launchManaged, launchUnmanaged, runScript } from '../support/scripts.js';

// These tests are about the scripts that act on an instance, so the instance is launched in-process as
// create_instance.sh would launch it (test/scripts/create_instance.test.ts covers the create itself).

const FAST_POLL = ['--poll-interval=1'];

describe('describe_instance.sh', () => {
  beforeEach(async () => {
    await resetMoto();
    await createKeyPair(SCRIPT_DEFAULT_KEY_NAME);
  });

  it('when the instance exists, then it prints it with the root volume size and the state EC2 reports', async () => {
    const created = await launchManaged('described');
    const result = await runScript('describe_instance.sh', [created.id]);
    assert.equal(result.exitCode, 0, result.stderr);
    const printed = result.json();
    assert.equal(printed.id, created.id);
    assert.equal(printed.name, 'described');
    assert.equal(printed.storage_gb, 8);
    assert.equal(printed.state, (await ec2InstanceById(created.id)).State.Name);
    assert.equal(printed.public_ip, (await ec2InstanceById(created.id)).PublicIpAddress);
  });

  it('when EC2 does not know the id, then it exits 3 with the AWS error code', async () => {
    const result = await runScript('describe_instance.sh', ['i-0123456789abcdef0']);
    assert.equal(result.exitCode, 3);
    assert.equal(result.json().error.code, 'InvalidInstanceID.NotFound');
    assert.match(result.stderr, /i-0123456789abcdef0/);
  });

  it('when an instance has no Name tag, then name is null rather than a placeholder', async () => {
    const id = await launchUnmanaged();
    const printed = (await runScript('describe_instance.sh', [id])).json();
    assert.equal(printed.name, null);
    assert.equal(printed.managed, false);
  });
});

describe('stop_instance.sh and start_instance.sh', () => {
  beforeEach(async () => {
    await resetMoto();
    await createKeyPair(SCRIPT_DEFAULT_KEY_NAME);
  });

  it('when a running instance is stopped, then it prints it stopped with no public IP (null, not "None")', async () => {
    const created = await launchManaged();
    const result = await runScript('stop_instance.sh', [created.id, ...FAST_POLL]);
    assert.equal(result.exitCode, 0, result.stderr);
    const printed = result.json();
    assert.equal(printed.state, 'stopped');
    assert.equal(printed.public_ip, null);
    assert.equal((await ec2InstanceById(created.id)).State.Name, 'stopped');
    assert.match(result.stderr, /waiting up to 600s for i-\w+ to be stopped/);
  });

  it('when a stopped instance is started, then it prints it running with the public IP EC2 now reports', async () => {
    const created = await launchManaged();
    await ec2Client().send(new StopInstancesCommand({ InstanceIds: [created.id] }));
    const result = await runScript('start_instance.sh', [...FAST_POLL, created.id]);
    assert.equal(result.exitCode, 0, result.stderr);
    const printed = result.json();
    const instance = await ec2InstanceById(created.id);
    assert.equal(printed.state, 'running');
    assert.equal(instance.State.Name, 'running');
    assert.ok(printed.public_ip, 'a running instance has a public IP');
    assert.equal(printed.public_ip, instance.PublicIpAddress);
  });

  it('when the instance is already stopped, then stopping it again succeeds and changes nothing', async () => {
    const created = await launchManaged();
    await ec2Client().send(new StopInstancesCommand({ InstanceIds: [created.id] }));
    const result = await runScript('stop_instance.sh', [created.id]);
    assert.equal(result.exitCode, 0, result.stderr);
    assert.equal(result.json().state, 'stopped');
  });

  it('when --no-wait is given, then it prints the instance as EC2 reports it right after the request', async () => {
    const created = await launchManaged();
    const result = await runScript('stop_instance.sh', ['--no-wait', created.id]);
    assert.equal(result.exitCode, 0, result.stderr);
    assert.ok(['stopping', 'stopped'].includes(result.json().state));
    assert.doesNotMatch(result.stderr, /waiting/);
  });

  for (const script of ['start_instance.sh', 'stop_instance.sh']) {
    it(`when ${script} meets a terminated instance, then it exits 10 (IncorrectInstanceState) and leaves it terminated`, async () => {
      const created = await launchManaged();
      await ec2Client().send(new TerminateInstancesCommand({ InstanceIds: [created.id] }));
      const result = await runScript(script, [created.id]);
      assert.equal(result.exitCode, 10, result.stderr);
      assert.equal(result.json().error.code, 'IncorrectInstanceState');
      assert.equal((await ec2InstanceById(created.id)).State.Name, 'terminated');
    });

    it(`when ${script} is given an id EC2 does not know, then it exits 3`, async () => {
      const result = await runScript(script, ['i-0123456789abcdef0']);
      assert.equal(result.exitCode, 3);
      assert.equal(result.json().error.code, 'InvalidInstanceID.NotFound');
    });
  }
});

describe('destroy_instance.sh', () => {
  beforeEach(async () => {
    await resetMoto();
    await createKeyPair(SCRIPT_DEFAULT_KEY_NAME);
  });

  it('when a managed instance is destroyed with --wait, then EC2 reports it terminated and so does the output', async () => {
    const created = await launchManaged();
    const result = await runScript('destroy_instance.sh', ['--wait', ...FAST_POLL, created.id]);
    assert.equal(result.exitCode, 0, result.stderr);
    assert.equal(result.json().state, 'terminated');
    assert.equal((await ec2InstanceById(created.id)).State.Name, 'terminated');
  });

  it('when it is destroyed twice, then the second run succeeds and changes nothing', async () => {
    const created = await launchManaged();
    await runScript('destroy_instance.sh', [created.id]);
    const again = await runScript('destroy_instance.sh', [created.id]);
    assert.equal(again.exitCode, 0, again.stderr);
    assert.equal(again.json().state, 'terminated');
  });

  it('when the instance is not managed by ec2-creator, then it exits 4 and the instance keeps running', async () => {
    const id = await launchUnmanaged();
    const result = await runScript('destroy_instance.sh', [id]);
    assert.equal(result.exitCode, 4);
    assert.equal(result.json().error.code, 'NotManaged');
    assert.match(result.stderr, /--allow-unmanaged/);
    assert.equal((await ec2InstanceById(id)).State.Name, 'running');
  });

  it('when --allow-unmanaged is given, then an unmanaged instance is terminated too', async () => {
    const id = await launchUnmanaged();
    const result = await runScript('destroy_instance.sh', ['--allow-unmanaged', id]);
    assert.equal(result.exitCode, 0, result.stderr);
    assert.equal((await ec2InstanceById(id)).State.Name, 'terminated');
  });
});

describe('list_instances.sh', () => {
  beforeEach(async () => {
    await resetMoto();
    await createKeyPair(SCRIPT_DEFAULT_KEY_NAME);
  });

  it('when instances exist, then it prints one object holding only the managed ones, newest first', async () => {
    const first = await launchManaged('first');
    const second = await launchManaged('second');
    const unmanaged = await launchUnmanaged();
    const result = await runScript('list_instances.sh');
    assert.equal(result.exitCode, 0, result.stderr);
    const printed = result.json();
    assert.deepEqual(Object.keys(printed), ['instances']);
    const ids = printed.instances.map((i: any) => i.id);
    assert.deepEqual(new Set(ids), new Set([first.id, second.id]));
    assert.ok(!ids.includes(unmanaged));
    const times = printed.instances.map((i: any) => i.launch_time);
    assert.deepEqual(times, [...times].sort().reverse());
  });

  it('when --all is given, then instances launched outside ec2-creator are listed too', async () => {
    const managed = await launchManaged();
    const unmanaged = await launchUnmanaged();
    const ids = (await runScript('list_instances.sh', ['--all'])).json().instances.map((i: any) => i.id);
    assert.deepEqual(new Set(ids), new Set([managed.id, unmanaged]));
  });

  it('when --state is given, then only instances in that state are listed', async () => {
    const running = await launchManaged('running one');
    const stopped = await launchManaged('stopped one');
    await ec2Client().send(new StopInstancesCommand({ InstanceIds: [stopped.id] }));
    const listed = (await runScript('list_instances.sh', ['--state=stopped'])).json().instances;
    assert.deepEqual(listed.map((i: any) => i.id), [stopped.id]);
    assert.ok(!listed.some((i: any) => i.id === running.id));
  });

  it('when there are more instances than one page holds, then every page is read', async () => {
    await launchOutsideTheService({ count: 7, tags: { ManagedBy: 'ec2-creator' } });
    const result = await runScript('list_instances.sh', ['--page-size=5']);
    assert.equal(result.exitCode, 0, result.stderr);
    assert.equal(result.json().instances.length, 7);
  });

  it('when nothing is managed, then it prints an empty list', async () => {
    await launchUnmanaged();
    assert.deepEqual((await runScript('list_instances.sh')).json(), { instances: [] });
  });

  it('when the state filter is not an EC2 state, then it exits 2', async () => {
    const result = await runScript('list_instances.sh', ['--state=sleeping']);
    assert.equal(result.exitCode, 2);
    assert.match(result.json().error.message, /sleeping/);
  });
});

describe('describe_image.sh', () => {
  beforeEach(resetMoto);

  it('when the image exists, then it prints its architecture and name', async () => {
    const arm = (await runScript('describe_image.sh', [AL2022_ARM_AMI])).json();
    assert.equal(arm.id, AL2022_ARM_AMI);
    assert.equal(arm.architecture, 'arm64');
    assert.match(arm.name, /^al2022-ami/);
    const x86 = (await runScript('describe_image.sh', [UBUNTU_X86_AMI])).json();
    assert.equal(x86.architecture, 'x86_64');
    assert.equal(x86.root_device_name, '/dev/sda1');
  });

  it('when the image does not exist, then it exits 3', async () => {
    const result = await runScript('describe_image.sh', ['ami-0123456789abcdef0']);
    assert.equal(result.exitCode, 3);
    assert.equal(result.json().error.code, 'InvalidAMIID.NotFound');
  });
});
