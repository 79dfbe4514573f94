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
  'private_ip', 'public_ip', 'security_group_ids', 'state', 'storage_gb', 'tags',
].sort();
// A closed loopback port: any AWS call would fail with exit 5, so exit 2 proves none was made.
const NO_AWS = { AWS_ENDPOINT_URL: 'http://127.0.0.1:9' };

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
    assert.deepEqual(printed.tags, tagsOf(instance), 'the document carries every tag of the instance');
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

  const hostileTagText = () => [...names().filter((text) => text !== ''), 'ok\n', 'ok\n; rm -rf / #', 'a=b', 'x\u2028y', 'ü\u0007'];

  it('when tag keys and values carry injection attempts, then each is refused with exit 2 or stored literally on instance and volume', async () => {
    const stored: Array<{ id: string; key: string; value: string }> = [];
    for (const text of hostileTagText()) {
      // A key holds no '=' (the option splits at the first one): what follows it is part of the value.
      const key = text.includes('=') ? text.slice(0, text.indexOf('=')) : text;
      const cases = [
        { args: [`--tag=${text}=v`], key, value: text.includes('=') ? `${text.slice(text.indexOf('=') + 1)}=v` : 'v' },
        { args: ['--tag', `k=${text}`], key: 'k', value: text },
        { args: [`--owner=${text}`], key: 'Owner', value: text },
      ];
      for (const attempt of cases) {
        // The key pair and image are known: only run-instances reaches AWS, where the tags are what matters.
        const known = ['--no-precheck', '--root-device=/dev/sda1'];
        const result = await runScript('create_instance.sh', [...known, ...attempt.args, '--', 'tagged', UBUNTU_X86_AMI, 't3.micro', '8']);
        assert.ok([0, 2].includes(result.exitCode), `${JSON.stringify(attempt.args)} exited ${result.exitCode}: ${result.stderr}`);
        if (result.exitCode === 0) stored.push({ id: result.json().id, key: attempt.key, value: attempt.value });
        else assert.equal(result.json().error.code, 'InvalidArgument');
      }
    }
    for (const { id, key, value } of stored) {
      const instance = await ec2InstanceById(id);
      const tags = tagsOf(instance);
      assert.equal(tags[key], value, `${JSON.stringify(key)} is stored exactly as given`);
      assert.deepEqual(Object.keys(tags).sort(), ['ManagedBy', 'Name', 'ec2-creator:client-token', key].sort());
      assert.equal(tags.ManagedBy, 'ec2-creator');
      const [volume] = await volumesOf(id);
      assert.equal(tagsOf(volume)[key], value);
    }
    const instances = await allEc2Instances();
    assert.equal(instances.length, stored.length, 'a refused attempt launched nothing');
    assert.ok(stored.length > 0, 'some texts are legal tag text and must go through');
    assert.equal(existsSync(canary()), false, 'no command in a tag was executed');
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

describe('create_instance.sh cost tags and security groups', () => {
  beforeEach(async () => {
    await resetMoto();
    await createKeyPair(SCRIPT_DEFAULT_KEY_NAME);
  });

  it('when given tags, an owner and an expiry, then the instance carries all of them and its volume the tags and owner', async () => {
    const result = await runScript('create_instance.sh', [
      '--tag', 'team=web platform', '--tag=cost-center=cc=42', '--tag', 'コスト=Ünïcode 漢字', '--tag=empty=',
      '--owner=alice@example.com', '--expires-at=2026-11-24T10:00:00.000Z', '--', 'tagged', UBUNTU_X86_AMI, 't3.micro', '8',
    ]);

    assert.equal(result.exitCode, 0, result.stderr);
    const printed = result.json();
    const userTags = { team: 'web platform', 'cost-center': 'cc=42', コスト: 'Ünïcode 漢字', empty: '' };
    const instance = await ec2InstanceById(printed.id);
    assert.deepEqual(tagsOf(instance), {
      Name: 'tagged', ManagedBy: 'ec2-creator', 'ec2-creator:client-token': printed.client_token,
      Owner: 'alice@example.com', 'ec2-creator:expires-at': '2026-11-24T10:00:00.000Z', ...userTags,
    });
    assert.deepEqual(printed.tags, tagsOf(instance));
    const [volume] = await volumesOf(printed.id);
    assert.deepEqual(tagsOf(volume), { Name: 'tagged', ManagedBy: 'ec2-creator', Owner: 'alice@example.com', ...userTags },
      'the volume is billed apart: it carries the owner and the user tags, not the expiry or the token');
  });

  it('when a tag is at the limits EC2 allows (ten tags, a 128-character key, a 256-character value), then it is accepted', async () => {
    const tags = Array.from({ length: 9 }, (_, i) => `--tag=k${i}=v${i}`);
    const result = await runScript('create_instance.sh', [
      ...tags, `--tag=${'k'.repeat(128)}=${'v'.repeat(256)}`, '--expires-at=2028-02-29T23:59:59Z', 'limits', UBUNTU_X86_AMI, 't3.micro', '8',
    ]);
    assert.equal(result.exitCode, 0, result.stderr);
    const tagsInEc2 = tagsOf(await ec2InstanceById(result.json().id));
    assert.equal(tagsInEc2['k'.repeat(128)], 'v'.repeat(256));
    assert.equal(tagsInEc2.k8, 'v8');
    assert.equal(tagsInEc2['ec2-creator:expires-at'], '2028-02-29T23:59:59Z');
  });

  it('when several security groups are given, one of them twice, then the instance is in each of them once', async () => {
    const first = await ec2Client().send(new CreateSecurityGroupCommand({ GroupName: 'one', Description: 'one' }));
    const second = await ec2Client().send(new CreateSecurityGroupCommand({ GroupName: 'two', Description: 'two' }));
    const result = await runScript('create_instance.sh', [
      `--security-group-id=${first.GroupId}`, '--security-group-id', second.GroupId as string,
      `--security-group-id=${first.GroupId}`, 'grouped', UBUNTU_X86_AMI, 't3.micro', '8',
    ]);
    assert.equal(result.exitCode, 0, result.stderr);
    assert.match(result.stderr, /given more than once/);
    const inEc2 = (await ec2InstanceById(result.json().id)).SecurityGroups.map((g: any) => g.GroupId).sort();
    assert.deepEqual(inEc2, [first.GroupId, second.GroupId].sort());
    assert.deepEqual([...result.json().security_group_ids].sort(), inEc2);
  });

  const refused: [string, string[], RegExp][] = [
    ['the Name key', ['--tag=Name=x'], /Name is reserved/],
    ['the Owner key', ['--tag=Owner=x'], /Owner is reserved: use --owner/],
    ['the ManagedBy key', ['--tag=ManagedBy=someone-else'], /ManagedBy is reserved/],
    ['an ec2-creator: key', ['--tag=ec2-creator:expires-at=2030-01-01T00:00:00Z'], /reserved/],
    ['an ec2-creator: key in other case', ['--tag=EC2-Creator:client-token=x'], /reserved/],
    ['an aws: key', ['--tag=aws:cloudformation:stack-name=x'], /aws: belong to AWS/],
    ['an AWS: key in upper case', ['--tag=AWS:Foo=x'], /aws: belong to AWS/],
    ['a key given twice', ['--tag=team=a', '--tag=team=b'], /more than once/],
    ['eleven tags', Array.from({ length: 11 }, (_, i) => `--tag=k${i}=v`), /at most 10/],
    ['a tag without =', ['--tag=team'], /KEY=VALUE/],
    ['an empty key', ['--tag==v'], /must not be empty/],
    ['a 129-character key', [`--tag=${'k'.repeat(129)}=v`], /129 characters long/],
    ['a 257-character value', [`--tag=k=${'v'.repeat(257)}`], /257 characters long/],
    ['a value with a comma', ['--tag=k=a,b'], /may hold only/],
    ['an empty owner', ['--owner='], /owner must not be empty/],
    ['a blank owner', ['--owner=   '], /owner must not be blank/],
    ['an owner with a semicolon', ['--owner=a;b'], /owner may hold only/],
    ['an expiry with a time zone offset', ['--expires-at=2026-11-24T10:00:00+01:00'], /ISO 8601 UTC/],
    ['an expiry without a time', ['--expires-at=2026-11-24'], /ISO 8601 UTC/],
    ['an expiry on 30 February', ['--expires-at=2026-02-30T10:00:00Z'], /no such date/],
    ['an expiry at hour 24', ['--expires-at=2026-11-24T24:00:00Z'], /no such date/],
    ['an expiry in words', ['--expires-at=tomorrow'], /ISO 8601 UTC/],
    ['six security groups', ['sg-00000001', 'sg-00000002', 'sg-00000003', 'sg-00000004', 'sg-00000005', 'sg-00000006']
      .map((id) => `--security-group-id=${id}`), /at most 5 security groups/],
    ['a malformed second group', ['--security-group-id=sg-12345678', '--security-group-id=default'], /invalid security group id/],
  ];
  for (const [what, options, message] of refused) {
    it(`when given ${what}, then it exits 2 before any AWS call and launches nothing`, async () => {
      const result = await runScript('create_instance.sh', [...options, '--', 'web', UBUNTU_X86_AMI, 't3.micro', '8'], { env: NO_AWS });
      assert.equal(result.exitCode, 2, result.stderr);
      assert.equal(result.json().error.code, 'InvalidArgument');
      assert.match(result.stderr, message);
      assert.deepEqual(await allEc2Instances(), []);
    });
  }
});
