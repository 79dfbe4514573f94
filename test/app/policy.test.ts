/** The launch policy through the API (422, nothing launched) and its pure rules. */
import assert from 'node:assert/strict';
import request from 'supertest';
import { architectureForType, checkImageFits, checkLaunchRequest } from '../../app/domain/policy.js';
import { PolicyError } from '../../app/domain/errors.js';
import { loginUserFor, sshString } from '../../app/domain/login-user.js';
import { resetMoto } from '../support/global-fixture.js';
import { AL2022_ARM_AMI, UBUNTU_X86_AMI, allEc2Instances, createKeyPair } from '../support/ec2-reader.js';
import { createHarness, expectProblem, type Harness } from '../support/app-harness.js';

describe('launch policy through POST /instances', function () {
  let h: Harness;

  beforeEach(async () => {
    await resetMoto();
    await createKeyPair();
    h = createHarness({ config: { allowedInstanceTypes: ['t3.micro', 't4g.micro'], maxStorageGb: 30 } });
  });
  afterEach(() => h.close());

  const refusals: Array<{ why: string; body: Record<string, unknown>; field: string; scripts: string[] }> = [
    { why: 'the type is not allowed', body: { instance_type: 'm5.24xlarge' }, field: 'instance_type', scripts: [] },
    { why: 'storage is above MAX_STORAGE_GB', body: { storage_gb: 31 }, field: 'storage_gb', scripts: [] },
    { why: 'the AMI does not exist', body: { ami: 'ami-00000000000000000' }, field: 'ami', scripts: ['describe_image.sh'] },
    { why: 'a t4g type gets an x86_64 AMI', body: { instance_type: 't4g.micro', ami: UBUNTU_X86_AMI }, field: 'ami', scripts: ['describe_image.sh'] },
    { why: 'a t3 type gets an arm64 AMI', body: { instance_type: 't3.micro', ami: AL2022_ARM_AMI }, field: 'ami', scripts: ['describe_image.sh'] },
  ];

  for (const refusal of refusals) {
    it(`when ${refusal.why}, then 422 problem+json naming ${refusal.field} and nothing is launched`, async () => {
      const response = await request(h.app)
        .post('/instances')
        .send({ name: 'web-1', ami: UBUNTU_X86_AMI, instance_type: 't3.micro', storage_gb: 8, ...refusal.body });

      const problem = expectProblem(response, 422);
      assert.ok(problem.errors.some((e: { field: string }) => e.field === refusal.field), JSON.stringify(problem.errors));
      assert.deepEqual(h.runs.map((r) => r.script), refusal.scripts);
      assert.equal((await allEc2Instances()).length, 0);
      assert.equal(h.rowCount(), 0);
    });
  }

  it('when MAX_STORAGE_GB is raised, then a larger volume is launched', async () => {
    h.close();
    h = createHarness({ config: { maxStorageGb: 40 } });

    const response = await request(h.app)
      .post('/instances')
      .send({ name: 'big', ami: UBUNTU_X86_AMI, instance_type: 't3.micro', storage_gb: 40 });

    assert.equal(response.status, 201, JSON.stringify(response.body));
    assert.equal(response.body.storage_gb, 40);
    assert.equal((await allEc2Instances()).length, 1);
  });

  it('when the configured key pair does not exist in EC2, then 502 naming KEY_NAME, and the launch row is marked failed', async () => {
    h.close();
    h = createHarness({ config: { keyName: 'no-such-key' } });

    const response = await request(h.app)
      .post('/instances')
      .send({ name: 'web-1', ami: UBUNTU_X86_AMI, instance_type: 't3.micro', storage_gb: 8 });

    const problem = expectProblem(response, 502);
    assert.match(problem.detail, /KEY_NAME=no-such-key/);
    assert.equal((await allEc2Instances()).length, 0);
    const rows = h.store.db.prepare('SELECT launch_status, state, instance_id FROM instances').all();
    assert.deepEqual(rows, [{ launch_status: 'failed', state: 'failed', instance_id: null }]);
  });
});

describe('launch policy rules', () => {
  it('when the family is Graviton, then arm64 is needed, otherwise x86_64', () => {
    for (const t of ['t4g.micro', 'm6g.large', 'c7g.xlarge', 'r8g.large', 'm6gd.large', 'c7gn.large', 'x2gd.large', 'im4gn.large', 'is4gen.large', 'a1.medium']) {
      assert.equal(architectureForType(t), 'arm64', t);
    }
    for (const t of ['t3.micro', 't2.micro', 'm5.large', 'c6i.large', 'm6a.large', 'g4dn.xlarge', 'p4d.24xlarge', 'r5n.large', 'mac1.metal']) {
      assert.equal(architectureForType(t), 'x86_64', t);
    }
  });

  it('when type and storage are both outside the policy, then one PolicyError lists both fields', () => {
    assert.throws(
      () => checkLaunchRequest({ allowedInstanceTypes: ['t3.micro'], maxStorageGb: 30 }, { instance_type: 'm5.large', storage_gb: 31 }),
      (error: unknown) => error instanceof PolicyError && error.errors.map((e) => e.field).join() === 'instance_type,storage_gb',
    );
  });

  it('when the image is not available or has no architecture, then it does not fit', () => {
    assert.throws(() => checkImageFits({ id: 'ami-1', architecture: 'x86_64', state: 'pending' }, 't3.micro'), PolicyError);
    assert.throws(() => checkImageFits({ id: 'ami-1', architecture: null, state: 'available' }, 't3.micro'), PolicyError);
    assert.doesNotThrow(() => checkImageFits({ id: 'ami-1', architecture: 'arm64', state: 'available' }, 't4g.micro'));
  });

  it('when the AMI name names a distribution, then the login user is that distribution\'s', () => {
    const cases: Array<[string | null, string]> = [
      ['ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20240301', 'ubuntu'],
      ['debian-12-amd64-20240201-1644', 'admin'],
      ['amzn2-ami-kernel-5.10-hvm-2.0.20240306.2-x86_64-gp2', 'ec2-user'],
      ['al2023-ami-2023.3.20240304.0-kernel-6.1-x86_64', 'ec2-user'],
      ['al2022-ami-2022.0.20220728.1-kernel-5.15-arm64', 'ec2-user'],
      ['CentOS Stream 9 x86_64', 'centos'],
      ['RHEL-9.3.0_HVM-20240117-x86_64-49-Hourly2-GP3', 'ec2-user'],
      ['suse-sles-15-sp5-v20240129-hvm-ssd-x86_64', 'ec2-user'],
      ['my-golden-image-7', 'ec2-user'],
      [null, 'ec2-user'],
    ];
    for (const [name, user] of cases) assert.equal(loginUserFor({ name }), user, String(name));
    assert.equal(loginUserFor({ name: 'Windows_Server-2022', platform: 'Windows' }), 'Administrator');
  });

  it('when there is no public IP, then the ssh string is empty', () => {
    assert.equal(sshString({ public_ip: null, key_name: 'k', login_user: 'ubuntu' }), '');
    assert.equal(sshString({ public_ip: '1.2.3.4', key_name: 'k', login_user: 'ubuntu' }), 'ssh -i ~/.ssh/k.pem ubuntu@1.2.3.4');
    assert.equal(sshString({ public_ip: '1.2.3.4', key_name: null, login_user: 'admin' }), 'ssh admin@1.2.3.4');
  });

  it('when KEY_FILE is set, then the ssh string names it, as one shell word with ~/ still expanded', () => {
    const row = { public_ip: '1.2.3.4', key_name: 'k', login_user: 'ubuntu' };
    assert.equal(sshString(row, { keyName: 'k', keyFile: '/keys/k.pem' }), 'ssh -i /keys/k.pem ubuntu@1.2.3.4');
    assert.equal(sshString(row, { keyName: 'k', keyFile: "~/my keys/bob's.pem" }), `ssh -i ~/'my keys/bob'\\''s.pem' ubuntu@1.2.3.4`);
    assert.equal(sshString(row, { keyName: 'other', keyFile: '/keys/other.pem' }), 'ssh -i ~/.ssh/k.pem ubuntu@1.2.3.4');
    assert.equal(sshString(row, { keyName: 'k', keyFile: null }), 'ssh -i ~/.ssh/k.pem ubuntu@1.2.3.4');
  });
});
