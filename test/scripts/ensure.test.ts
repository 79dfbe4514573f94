import { AuthorizeSecurityGroupIngressCommand, CreateKeyPairCommand, CreateSecurityGroupCommand, DescribeKeyPairsCommand, DescribeSecurityGroupsCommand, DescribeVpcsCommand } from '@aws-sdk/client-ec2';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { resetMoto } from '../support/global-fixture.js';
import { ec2Client } from '../support/ec2-reader.js';
import { runScript, tagsOf } from '../support/scripts.js';

async function groupByName(name: string): Promise<any[]> {
  return (await ec2Client().send(new DescribeSecurityGroupsCommand({ Filters: [{ Name: 'group-name', Values: [name] }] }))).SecurityGroups ?? [];
}

async function keyPairNames(): Promise<string[]> {
  return ((await ec2Client().send(new DescribeKeyPairsCommand({}))).KeyPairs ?? []).map((pair) => pair.KeyName as string);
}

function openPorts(group: any, cidr: string): number[] {
  return group.IpPermissions
    .filter((rule: any) => rule.IpProtocol === 'tcp' && rule.IpRanges.some((range: any) => range.CidrIp === cidr))
    .map((rule: any) => rule.FromPort)
    .sort((a: number, b: number) => a - b);
}

const MANAGED_GROUP_TAGS = { ResourceType: 'security-group' as const, Tags: [{ Key: 'ManagedBy', Value: 'ec2-creator' }] };

/** Every inbound rule of the group, one source each, as EC2 counts rules. */
async function inboundRules(groupId: string): Promise<string[]> {
  const [group] = (await ec2Client().send(new DescribeSecurityGroupsCommand({ GroupIds: [groupId] }))).SecurityGroups ?? [];
  return (group?.IpPermissions ?? []).flatMap((rule) => {
    const ports = rule.IpProtocol === '-1' ? 'all' : `${rule.FromPort}-${rule.ToPort}`;
    return [
      ...(rule.IpRanges ?? []).map((range) => range.CidrIp),
      ...(rule.Ipv6Ranges ?? []).map((range) => range.CidrIpv6),
      ...(rule.UserIdGroupPairs ?? []).map((pair) => pair.GroupId),
      ...(rule.PrefixListIds ?? []).map((list) => list.PrefixListId),
    ].map((source) => `${rule.IpProtocol} ${ports} ${source}`);
  }).sort();
}

describe('ensure_security_group.sh', () => {
  beforeEach(resetMoto);

  it('when the group is missing, then it creates it in the default VPC with SSH, HTTP and HTTPS from the CIDR', async () => {
    const result = await runScript('ensure_security_group.sh', ['--name=web-in', '--cidr=203.0.113.7/32']);
    assert.equal(result.exitCode, 0, result.stderr);
    const printed = result.json();
    assert.equal(printed.created, true);
    assert.deepEqual(printed.rules.map((r: any) => r.port), [22, 80, 443]);

    const [group] = await groupByName('web-in');
    const defaultVpc = (await ec2Client().send(new DescribeVpcsCommand({ Filters: [{ Name: 'is-default', Values: ['true'] }] }))).Vpcs?.[0]?.VpcId;
    assert.equal(group.GroupId, printed.id);
    assert.equal(group.VpcId, defaultVpc);
    assert.deepEqual(openPorts(group, '203.0.113.7/32'), [22, 80, 443]);
    assert.equal(tagsOf(group).ManagedBy, 'ec2-creator');
    assert.doesNotMatch(result.stderr, /warning/);
  });

  it('when it runs again, then it returns the same group and adds no rule twice', async () => {
    const first = (await runScript('ensure_security_group.sh', ['--name=again', '--cidr=198.51.100.0/24'])).json();
    const second = await runScript('ensure_security_group.sh', ['--name=again', '--cidr=198.51.100.0/24']);
    assert.equal(second.exitCode, 0, second.stderr);
    assert.equal(second.json().created, false);
    assert.equal(second.json().id, first.id);
    const groups = await groupByName('again');
    assert.equal(groups.length, 1);
    assert.equal(groups[0].IpPermissions.length, 3);
  });

  it('when an existing group lacks some rules, then only the missing ones are added', async () => {
    const group = await ec2Client().send(new CreateSecurityGroupCommand({
      GroupName: 'partial', Description: 'partial', TagSpecifications: [MANAGED_GROUP_TAGS],
    }));
    await ec2Client().send(new AuthorizeSecurityGroupIngressCommand({
      GroupId: group.GroupId, IpProtocol: 'tcp', FromPort: 22, ToPort: 22, CidrIp: '192.0.2.0/24',
    }));
    const result = await runScript('ensure_security_group.sh', ['--name', 'partial', '--cidr', '192.0.2.0/24']);
    assert.equal(result.exitCode, 0, result.stderr);
    assert.equal(result.json().created, false);
    assert.deepEqual(openPorts((await groupByName('partial'))[0], '192.0.2.0/24'), [22, 80, 443]);
    assert.deepEqual(result.json().rules, [22, 80, 443].map((port) => ({ protocol: 'tcp', port, cidr: '192.0.2.0/24' })));
  });

  it('when no CIDR is given, then it opens to 0.0.0.0/0 and warns on stderr', async () => {
    const result = await runScript('ensure_security_group.sh');
    assert.equal(result.exitCode, 0, result.stderr);
    assert.match(result.stderr, /warning: .*0\.0\.0\.0\/0/);
    assert.equal(result.json().name, 'ec2-creator-ssh-web');
    assert.deepEqual(openPorts((await groupByName('ec2-creator-ssh-web'))[0], '0.0.0.0/0'), [22, 80, 443]);
  });

  it('when the CIDR or name is malformed, then it exits 2 and creates nothing', async () => {
    for (const args of [['--cidr=300.0.0.0/8'], ['--cidr=10.0.0.0/33'], ['--cidr=10.0.0.0'], ['--cidr=--x'],
      ['--name=sg-sneaky'], ['--name=file://etc/passwd'], ['--name=a,b']]) {
      const result = await runScript('ensure_security_group.sh', args);
      assert.equal(result.exitCode, 2, args.join(' '));
      assert.equal(result.json().error.code, 'InvalidArgument');
    }
    const groups = (await ec2Client().send(new DescribeSecurityGroupsCommand({}))).SecurityGroups ?? [];
    assert.deepEqual(groups.map((g: any) => g.GroupName), ['default']);
  });

  it('when a managed group holds rules not asked for, then they are revoked and exactly the asked ones remain', async () => {
    const other = await ec2Client().send(new CreateSecurityGroupCommand({ GroupName: 'peer', Description: 'peer' }));
    const group = await ec2Client().send(new CreateSecurityGroupCommand({
      GroupName: 'converge', Description: 'converge', TagSpecifications: [MANAGED_GROUP_TAGS],
    }));
    await ec2Client().send(new AuthorizeSecurityGroupIngressCommand({
      GroupId: group.GroupId,
      IpPermissions: [
        { IpProtocol: 'tcp', FromPort: 22, ToPort: 22, IpRanges: [{ CidrIp: '198.51.100.0/24' }, { CidrIp: '0.0.0.0/0', Description: 'too wide' }] },
        { IpProtocol: 'tcp', FromPort: 22, ToPort: 22, Ipv6Ranges: [{ CidrIpv6: '::/0' }] },
        { IpProtocol: 'tcp', FromPort: 3306, ToPort: 3306, IpRanges: [{ CidrIp: '198.51.100.0/24' }] },
        { IpProtocol: 'tcp', FromPort: 80, ToPort: 443, IpRanges: [{ CidrIp: '203.0.113.0/24' }] },
        { IpProtocol: 'udp', FromPort: 53, ToPort: 53, IpRanges: [{ CidrIp: '10.0.0.0/8' }] },
        { IpProtocol: '-1', UserIdGroupPairs: [{ GroupId: other.GroupId }] },
      ],
    }));

    const result = await runScript('ensure_security_group.sh', [
      '--name=converge', '--ssh-cidr=198.51.100.0/24', '--ssh-cidr=2001:DB8::/32', '--web-cidr', '203.0.113.0/24',
    ]);

    assert.equal(result.exitCode, 0, result.stderr);
    assert.deepEqual(await inboundRules(group.GroupId as string), [
      'tcp 22-22 198.51.100.0/24', 'tcp 22-22 2001:db8::/32', 'tcp 443-443 203.0.113.0/24', 'tcp 80-80 203.0.113.0/24',
    ]);
    const printed = result.json();
    assert.equal(printed.id, group.GroupId);
    assert.equal(printed.created, false);
    assert.equal(printed.revoked, 6, 'the open 22, the IPv6 ::/0 on 22, 3306, the 80-443 range, udp 53 and the group reference');
    assert.deepEqual(printed.rules, [
      { protocol: 'tcp', port: 22, cidr: '198.51.100.0/24' },
      { protocol: 'tcp', port: 22, cidr: '2001:db8::/32' },
      { protocol: 'tcp', port: 80, cidr: '203.0.113.0/24' },
      { protocol: 'tcp', port: 443, cidr: '203.0.113.0/24' },
    ]);

    const again = await runScript('ensure_security_group.sh', [
      '--name=converge', '--ssh-cidr=198.51.100.0/24', '--ssh-cidr=2001:db8:0::/32', '--web-cidr', '203.0.113.0/24',
    ]);
    assert.equal(again.exitCode, 0, again.stderr);
    assert.equal(again.json().revoked, 0);
    assert.deepEqual(again.json().rules, printed.rules);
    assert.doesNotMatch(again.stderr, /allowing|revoking/, 'a converged group is left alone');
  });

  it('when only an IPv6 SSH CIDR is given, then the new group lets SSH in from it and keeps the web ports closed', async () => {
    const result = await runScript('ensure_security_group.sh', ['--name=ssh-only', '--ssh-cidr=2001:db8:1234::/48']);
    assert.equal(result.exitCode, 0, result.stderr);
    assert.equal(result.json().created, true);
    assert.deepEqual(await inboundRules(result.json().id), ['tcp 22-22 2001:db8:1234::/48']);
    const [group] = await groupByName('ssh-only');
    assert.deepEqual(group.IpPermissions[0].Ipv6Ranges.map((r: any) => r.CidrIpv6), ['2001:db8:1234::/48']);
    assert.deepEqual(group.IpPermissions[0].IpRanges, []);
    assert.deepEqual(result.json().rules, [{ protocol: 'tcp', port: 22, cidr: '2001:db8:1234::/48' }]);
    assert.doesNotMatch(result.stderr, /warning/);
  });

  it('when a group of that name is not tagged as managed, then it exits 4 and changes nothing', async () => {
    const group = await ec2Client().send(new CreateSecurityGroupCommand({ GroupName: 'someone-elses', Description: 'theirs' }));
    await ec2Client().send(new AuthorizeSecurityGroupIngressCommand({
      GroupId: group.GroupId, IpProtocol: 'tcp', FromPort: 5432, ToPort: 5432, CidrIp: '192.0.2.0/24',
    }));
    const before = await inboundRules(group.GroupId as string);

    const result = await runScript('ensure_security_group.sh', ['--name=someone-elses', '--cidr=198.51.100.0/24']);

    assert.equal(result.exitCode, 4, result.stderr);
    assert.equal(result.json().error.code, 'NotManaged');
    assert.match(result.stderr, /not tagged ManagedBy=ec2-creator; it was left unchanged/);
    assert.deepEqual(await inboundRules(group.GroupId as string), before);
    assert.equal((await groupByName('someone-elses')).length, 1, 'no second group was made');
  });

  it('when a CIDR option is given several times, then every CIDR gets its ports, each once', async () => {
    const result = await runScript('ensure_security_group.sh', [
      '--name=many', '--cidr=192.0.2.0/24', '--web-cidr=192.0.2.0/24', '--ssh-cidr=10.1.0.0/16', '--web-cidr=::/0',
    ]);
    assert.equal(result.exitCode, 0, result.stderr);
    assert.deepEqual(await inboundRules(result.json().id), [
      'tcp 22-22 10.1.0.0/16', 'tcp 22-22 192.0.2.0/24', 'tcp 443-443 192.0.2.0/24', 'tcp 443-443 ::/0', 'tcp 80-80 192.0.2.0/24', 'tcp 80-80 ::/0',
    ]);
    assert.match(result.stderr, /warning: ::\/0 is the whole internet/);
  });

  it('when a CIDR is malformed or has host bits set, then it exits 2 and creates nothing', async () => {
    for (const args of [['--ssh-cidr=2001:db8::1/32'], ['--web-cidr=10.0.0.1/8'], ['--ssh-cidr=2001:db8::/129'], ['--ssh-cidr=2001:db8:::/32'],
      ['--ssh-cidr=::ffff:10.0.0.0/104'], ['--web-cidr=fe80::/64 '], ['--ssh-cidr=1:2:3:4:5:6:7:8:9/128'], ['--ssh-cidr=$(id)/32']]) {
      const result = await runScript('ensure_security_group.sh', args);
      assert.equal(result.exitCode, 2, args.join(' '));
      assert.equal(result.json().error.code, 'InvalidArgument');
      assert.match(result.stderr, /invalid CIDR/);
    }
    const groups = (await ec2Client().send(new DescribeSecurityGroupsCommand({}))).SecurityGroups ?? [];
    assert.deepEqual(groups.map((g: any) => g.GroupName), ['default']);
  });

  it('when more CIDRs are asked for than a group holds rules, then it exits 2', async () => {
    const cidrs = Array.from({ length: 31 }, (_, i) => `--web-cidr=10.${i}.0.0/16`);
    const result = await runScript('ensure_security_group.sh', cidrs, { env: { AWS_ENDPOINT_URL: 'http://127.0.0.1:9' } });
    assert.equal(result.exitCode, 2, result.stderr);
    assert.match(result.stderr, /62 rules asked for/);
  });

  it('when the VPC does not exist, then it exits 3', async () => {
    const result = await runScript('ensure_security_group.sh', ['--vpc-id=vpc-0123456789abcdef0', '--cidr=10.0.0.0/8']);
    assert.equal(result.exitCode, 3, result.stderr);
  });
});

describe('ensure_key_pair.sh', () => {
  let dir: string;
  beforeEach(async () => {
    await resetMoto();
    dir = mkdtempSync(path.join(tmpdir(), 'keys-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('when the key pair exists, then it prints it without creating anything', async () => {
    await ec2Client().send(new CreateKeyPairCommand({ KeyName: 'present' }));
    const result = await runScript('ensure_key_pair.sh', ['present']);
    assert.equal(result.exitCode, 0, result.stderr);
    assert.equal(result.json().name, 'present');
    assert.equal(result.json().created, false);
    assert.equal(result.json().private_key_file, null);
  });

  it('when the key pair is missing and --create is not given, then it exits 3 and says how to create it', async () => {
    const result = await runScript('ensure_key_pair.sh', ['absent']);
    assert.equal(result.exitCode, 3);
    assert.match(result.stderr, /--create/);
    assert.deepEqual(await keyPairNames(), []);
  });

  it('when --create is given, then the key pair exists in EC2 and its private key is in a 0400 file, never on stdout', async () => {
    const keyFile = path.join(dir, 'nested', 'new.pem');
    const result = await runScript('ensure_key_pair.sh', ['new', '--create', `--private-key-file=${keyFile}`]);
    assert.equal(result.exitCode, 0, result.stderr);
    assert.equal(result.json().created, true);
    assert.equal(result.json().private_key_file, keyFile);
    assert.equal(statSync(keyFile).mode & 0o777, 0o400);
    assert.equal(statSync(path.dirname(keyFile)).mode & 0o077, 0, 'the folder it made is private too');
    const key = readFileSync(keyFile, 'utf8');
    assert.match(key, /^-----BEGIN [A-Z ]*PRIVATE KEY-----/);
    assert.ok(!result.stdout.includes('PRIVATE KEY') && !result.stderr.includes('PRIVATE KEY'));
    const pairs = (await ec2Client().send(new DescribeKeyPairsCommand({ KeyNames: ['new'] }))).KeyPairs ?? [];
    assert.equal(pairs[0]?.KeyFingerprint, result.json().fingerprint);
  });

  it('when the key file already exists, then it exits 4, keeps the file and creates no key pair', async () => {
    const keyFile = path.join(dir, 'taken.pem');
    writeFileSync(keyFile, 'precious');
    const result = await runScript('ensure_key_pair.sh', ['--create', '--private-key-file', keyFile, 'taken']);
    assert.equal(result.exitCode, 4);
    assert.equal(readFileSync(keyFile, 'utf8'), 'precious');
    assert.deepEqual(await keyPairNames(), []);
  });

  it('when no key file is named, then it goes to ~/.ssh/NAME.pem', async () => {
    const result = await runScript('ensure_key_pair.sh', ['--create', 'homekey'], { env: { HOME: dir } });
    assert.equal(result.exitCode, 0, result.stderr);
    assert.ok(existsSync(path.join(dir, '.ssh', 'homekey.pem')));
    assert.equal(statSync(path.join(dir, '.ssh')).mode & 0o777, 0o700);
  });
});
