import { CreateSecurityGroupCommand, DescribeVolumesCommand } from '@aws-sdk/client-ec2';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { resetMoto } from '../support/global-fixture.js';
import { AL2022_ARM_AMI, UBUNTU_X86_AMI, allEc2Instances, createKeyPair, ec2Client, ec2InstanceById } from '../support/ec2-reader.js';
import { SCRIPT_DEFAULT_KEY_NAME, runScript, tagsOf } from '../support/scripts.js';

const INSTANCE_FIELDS = [
  'ami', 'client_token', 'id', 'instance_type', 'key_name', 'launch_time', 'managed', 'name',
  'private_ip', 'public_ip', 'security_group_ids', 'state', 'storage_gb',
].sort();

async function volumesOf(instanceId: string): Promise<any[]> {
  const described = await ec2Client().send(new DescribeVolumesCommand({
    Filters: [{ Name: 'attachment.instance-id', Values: [instanceId] }],
  }));
  return described.Volumes ?? [];
}

describe('create_instance.sh', () => {
  beforeEach(async () => {
    await resetMoto();
    await createKeyPair(SCRIPT_DEFAULT_KEY_NAME);
  });

  it('when given a name, AMI, type and size, then it launches one tagged instance with a gp3 root volume of that size', async () => {
    const result = await runScript('create_instance.sh', ['web 1', UBUNTU_X86_AMI, 't3.micro', '12']);

    assert.equal(result.exitCode, 0, result.stderr);
    const printed = result.json();
    assert.deepEqual(Object.keys(printed).sort(), INSTANCE_FIELDS);
    assert.match(printed.id, /^i-[0-9a-f]{17}$/);
    assert.equal(printed.name, 'web 1');
    assert.equal(printed.storage_gb, 12);
    assert.equal(printed.key_name, 'my_ec2_keypair');
    assert.equal(printed.managed, true);

    const instance = await ec2InstanceById(printed.id);
    assert.equal(instance.KeyName, 'my_ec2_keypair');
    assert.equal(instance.InstanceType, 't3.micro');
    assert.deepEqual(tagsOf(instance), {
      Name: 'web 1', ManagedBy: 'ec2-creator', 'ec2-creator:client-token': printed.client_token,
    });
    const volumes = await volumesOf(printed.id);
    assert.equal(volumes.length, 1, 'the root volume is resized, no second disk is added');
    assert.equal(volumes[0].Size, 12);
    assert.equal(volumes[0].VolumeType, 'gp3');
    assert.equal(volumes[0].Attachments[0].Device, '/dev/sda1', "the ubuntu image's own root device");
    assert.deepEqual(tagsOf(volumes[0]), { Name: 'web 1', ManagedBy: 'ec2-creator' });
    assert.match(result.stderr, /launched i-/);
  });

  it('when options are used instead of positions, then KEY_NAME, the key name option, the token and the group all apply', async () => {
    await createKeyPair('deploy key');
    const group = await ec2Client().send(new CreateSecurityGroupCommand({ GroupName: 'web', Description: 'web' }));

    const result = await runScript('create_instance.sh', [
      '--key-name=deploy key', '--client-token', 'retry-42', '--security-group-id', group.GroupId as string,
      '--name=api', `--ami=${AL2022_ARM_AMI}`, '--instance-type=t4g.micro', '--storage-gb=8',
    ], { env: { KEY_NAME: 'ignored-because-the-option-wins' } });

    assert.equal(result.exitCode, 0, result.stderr);
    const printed = result.json();
    assert.equal(printed.client_token, 'retry-42');
    assert.deepEqual(printed.security_group_ids, [group.GroupId]);
    const instance = await ec2InstanceById(printed.id);
    assert.equal(instance.ClientToken, 'retry-42');
    assert.equal(instance.KeyName, 'deploy key');
    assert.deepEqual(instance.SecurityGroups.map((g: any) => g.GroupId), [group.GroupId]);
    assert.equal(tagsOf(instance)['ec2-creator:client-token'], 'retry-42');
  });

  it('when KEY_NAME is set, then the instance uses that key pair', async () => {
    await createKeyPair('team-key');
    const result = await runScript('create_instance.sh', ['db', UBUNTU_X86_AMI, 't3.micro', '8'], { env: { KEY_NAME: 'team-key' } });
    assert.equal(result.exitCode, 0, result.stderr);
    assert.equal((await ec2InstanceById(result.json().id)).KeyName, 'team-key');
  });

  it('when --wait is given, then it prints the instance once EC2 reports it running', async () => {
    const result = await runScript('create_instance.sh', ['--wait', '--poll-interval=1', 'w', UBUNTU_X86_AMI, 't3.micro', '8']);
    assert.equal(result.exitCode, 0, result.stderr);
    assert.equal(result.json().state, 'running');
    assert.match(result.stderr, /waiting up to 600s/);
  });

  for (const [storage, why] of [['1000000', 'far above the cap'], ['31', 'one above the default cap'], ['0', 'zero'], ['-5', 'negative'], ['8.5', 'fractional'], ['1e3', 'exponent']] as const) {
    it(`when the storage size is ${why} (${storage}), then it exits 2 and launches nothing`, async () => {
      const result = await runScript('create_instance.sh', ['--', 'web', UBUNTU_X86_AMI, 't3.micro', storage]);
      assert.equal(result.exitCode, 2);
      assert.equal(result.json().error.code, 'InvalidArgument');
      assert.match(result.stderr, /STORAGE_GB|storage|option/i);
      assert.deepEqual(await allEc2Instances(), []);
    });
  }

  it('when MAX_STORAGE_GB raises the cap, then a larger volume is allowed', async () => {
    const result = await runScript('create_instance.sh', ['big', UBUNTU_X86_AMI, 't3.micro', '100'], { env: { MAX_STORAGE_GB: '100' } });
    assert.equal(result.exitCode, 0, result.stderr);
    assert.equal((await volumesOf(result.json().id))[0].Size, 100);
  });

  it('when the key pair does not exist, then it exits 3 naming the key as given, without the CLI\'s prefix or the emulator\'s braces, and launches nothing', async () => {
    const result = await runScript('create_instance.sh', ['--key-name=missing', 'web', UBUNTU_X86_AMI, 't3.micro', '8']);
    assert.equal(result.exitCode, 3);
    const { code, message } = result.json().error;
    assert.equal(code, 'InvalidKeyPair.NotFound');
    assert.match(message, /^The keypair 'missing' does not exist/);
    assert.ok(result.stderr.includes(message), result.stderr);
    assert.deepEqual(await allEc2Instances(), []);
  });

  it('when the AMI does not exist, then it exits 3 and launches nothing', async () => {
    const result = await runScript('create_instance.sh', ['web', 'ami-0123456789abcdef0', 't3.micro', '8']);
    assert.equal(result.exitCode, 3);
    assert.equal(result.json().error.code, 'InvalidAMIID.NotFound');
    assert.deepEqual(await allEc2Instances(), []);
  });

  it('when an argument is missing or one too many, then it exits 2 with the usage hint', async () => {
    for (const args of [['web', UBUNTU_X86_AMI, 't3.micro'], ['web', UBUNTU_X86_AMI, 't3.micro', '8', 'sg-12345678', 'extra']]) {
      const result = await runScript('create_instance.sh', args);
      assert.equal(result.exitCode, 2, args.join(' '));
      assert.match(result.json().error.message, /--help/);
    }
    assert.deepEqual(await allEc2Instances(), []);
  });
});

describe('create_instance.sh against hostile input', () => {
  let canaryDir: string;
  before(() => {
    canaryDir = mkdtempSync(path.join(tmpdir(), 'canary-'));
  });
  after(() => rmSync(canaryDir, { recursive: true, force: true }));
  beforeEach(async () => {
    await resetMoto();
    await createKeyPair(SCRIPT_DEFAULT_KEY_NAME);
  });

  const canary = () => path.join(canaryDir, 'pwned');
  const names = () => [
    'x},{Key=Owner,Value=evil',
    "it's",
    'say "hi"',
    'a,b',
    '{braces}',
    `$(touch ${canary()})`,
    `\`touch ${canary()}\``,
    'line\nbreak',
    '--endpoint-url=http://127.0.0.1:1',
    '-n',
    'x'.repeat(300),
    '; rm -rf / #',
    'tab\there',
    '',
  ];

  it('when the name carries injection attempts, then each is refused with exit 2 or stored literally as the Name tag and nothing else', async () => {
    for (const name of names()) {
      const result = await runScript('create_instance.sh', ['--', name, UBUNTU_X86_AMI, 't3.micro', '8']);
      assert.ok([0, 2].includes(result.exitCode), `${JSON.stringify(name)} exited ${result.exitCode}: ${result.stderr}`);
      if (result.exitCode === 0) {
        const instance = await ec2InstanceById(result.json().id);
        const tags = tagsOf(instance);
        assert.equal(tags.Name, name, 'the name is stored exactly as given');
        assert.deepEqual(Object.keys(tags).sort(), ['ManagedBy', 'Name', 'ec2-creator:client-token']);
        assert.equal(tags.ManagedBy, 'ec2-creator');
      } else {
        assert.equal(result.json().error.code, 'InvalidArgument');
      }
    }
    const instances = await allEc2Instances();
    for (const instance of instances) {
      assert.deepEqual(Object.keys(tagsOf(instance)).sort(), ['ManagedBy', 'Name', 'ec2-creator:client-token']);
    }
    assert.equal(existsSync(canary()), false, 'no command in a name was executed');
  });

  it('when another argument carries an option or a URL, then it exits 2 before any AWS call', async () => {
    const hostile: [string, string[]][] = [
      ['AMI', ['web', '--endpoint-url=http://127.0.0.1:1', 't3.micro', '8']],
      ['type', ['web', UBUNTU_X86_AMI, 't3.micro --dry-run', '8']],
      ['type', ['web', UBUNTU_X86_AMI, '--instance-type=t3.micro', '8']],
      ['size', ['web', UBUNTU_X86_AMI, 't3.micro', '8; touch /tmp/x']],
      ['group', ['web', UBUNTU_X86_AMI, 't3.micro', '8', 'sg-1234567g']],
      ['key', ['--key-name=file:///etc/passwd', 'web', UBUNTU_X86_AMI, 't3.micro', '8']],
      ['key', ['--key-name=http://127.0.0.1:1/key', 'web', UBUNTU_X86_AMI, 't3.micro', '8']],
      ['token', ['--client-token=$(id)', 'web', UBUNTU_X86_AMI, 't3.micro', '8']],
      ['token', [`--client-token=${'t'.repeat(65)}`, 'web', UBUNTU_X86_AMI, 't3.micro', '8']],
    ];
    for (const [what, args] of hostile) {
      const result = await runScript('create_instance.sh', args, {
        // Any AWS call would fail differently (exit 5) on this closed port, so exit 2 proves none was made.
        env: { AWS_ENDPOINT_URL: 'http://127.0.0.1:9' },
      });
      assert.equal(result.exitCode, 2, `${what}: ${args.join(' ')} → ${result.stderr}`);
      assert.equal(result.json().error.code, 'InvalidArgument');
    }
    assert.deepEqual(await allEc2Instances(), []);
  });
});
