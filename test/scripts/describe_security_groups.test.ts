import { CreateSecurityGroupCommand, CreateVpcCommand, DescribeVpcsCommand } from '@aws-sdk/client-ec2';
import assert from 'node:assert/strict';
import { resetMoto } from '../support/global-fixture.js';
import { ec2Client } from '../support/ec2-reader.js';
import { runScript } from '../support/scripts.js';

// A closed loopback port: any AWS call would fail with exit 5, so exit 2 proves none was made.
const NO_AWS = { AWS_ENDPOINT_URL: 'http://127.0.0.1:9' };

async function defaultVpcId(): Promise<string> {
  const vpcs = await ec2Client().send(new DescribeVpcsCommand({ Filters: [{ Name: 'is-default', Values: ['true'] }] }));
  return vpcs.Vpcs?.[0]?.VpcId as string;
}

describe('describe_security_groups.sh', () => {
  beforeEach(resetMoto);

  it('when the groups exist, then it prints each once in the order given, with its VPC, managed flag and the default VPC', async () => {
    const managed = await ec2Client().send(new CreateSecurityGroupCommand({
      GroupName: 'ours', Description: 'ours',
      TagSpecifications: [{ ResourceType: 'security-group', Tags: [{ Key: 'ManagedBy', Value: 'ec2-creator' }] }],
    }));
    const vpc = await ec2Client().send(new CreateVpcCommand({ CidrBlock: '10.9.0.0/16' }));
    const elsewhere = await ec2Client().send(new CreateSecurityGroupCommand({
      GroupName: 'theirs', Description: 'theirs', VpcId: vpc.Vpc?.VpcId,
    }));

    const result = await runScript('describe_security_groups.sh', [elsewhere.GroupId as string, '--', managed.GroupId as string, elsewhere.GroupId as string]);

    assert.equal(result.exitCode, 0, result.stderr);
    assert.deepEqual(result.json(), {
      default_vpc_id: await defaultVpcId(),
      groups: [
        { id: elsewhere.GroupId, name: 'theirs', vpc_id: vpc.Vpc?.VpcId, managed: false },
        { id: managed.GroupId, name: 'ours', vpc_id: await defaultVpcId(), managed: true },
      ],
    });
  });

  it('when a group does not exist, then it exits 3 naming that id', async () => {
    const present = await ec2Client().send(new CreateSecurityGroupCommand({ GroupName: 'present', Description: 'present' }));
    const result = await runScript('describe_security_groups.sh', [present.GroupId as string, 'sg-0123456789abcdef0']);
    assert.equal(result.exitCode, 3, result.stderr);
    const { code, message } = result.json().error;
    assert.equal(code, 'InvalidGroup.NotFound');
    assert.match(message, /'sg-0123456789abcdef0' does not exist/);
    assert.ok(!message.includes(present.GroupId as string), 'only the missing id is named');
  });

  for (const [what, args, pattern] of [
    ['no id', [], /at least one/],
    ['six ids', ['sg-00000001', 'sg-00000002', 'sg-00000003', 'sg-00000004', 'sg-00000005', 'sg-00000006'], /at most 5/],
    ['a group name instead of an id', ['default'], /invalid security group id/],
    ['an option disguised as an id', ['--', '--filters=x'], /invalid security group id/],
  ] as const) {
    it(`when given ${what}, then it exits 2 before any AWS call`, async () => {
      const result = await runScript('describe_security_groups.sh', [...args], { env: NO_AWS });
      assert.equal(result.exitCode, 2, result.stderr);
      assert.equal(result.json().error.code, 'InvalidArgument');
      assert.match(result.stderr, pattern);
    });
  }
});
