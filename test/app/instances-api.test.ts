/**
 * Every endpoint end to end: supertest → createApp → real runner → real scripts → moto. After each call
 * the response, the SQLite row and EC2 (read with the aws CLI) are checked.
 */
import {
  DeleteTagsCommand, DescribeSecurityGroupsCommand, StopInstancesCommand, TerminateInstancesCommand,
} from '@aws-sdk/client-ec2';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import request from 'supertest';
import { resetMoto } from '../support/global-fixture.js';
import {
  AL2022_ARM_AMI, UBUNTU_X86_AMI, TEST_KEY_NAME, allEc2Instances, createKeyPair, ec2Client, ec2InstanceById,
} from '../support/ec2-reader.js';
import { arrangeRecordedInstance, createHarnessOn, expectProblem, launchedLongAgo, storeKinds, type Harness } from '../support/app-harness.js';

const ISO_UTC = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const INSTANCE_FIELDS = [
  'ami', 'backend_used', 'created_at', 'expires_at', 'id', 'instance_type', 'key_name', 'launch_time', 'name', 'on_expiry',
  'owner', 'private_ip', 'public_ip', 'schedule', 'security_group_id', 'ssh_string', 'state', 'storage_gb', 'tags', 'updated_at',
];

/** Creates through POST /instances: for the tests whose subject is the create. */
async function launch(h: Harness, body: Record<string, unknown> = {}): Promise<any> {
  const response = await request(h.app)
    .post('/instances')
    .send({ name: 'web-1', ami: UBUNTU_X86_AMI, instance_type: 't3.micro', storage_gb: 8, ...body });
  assert.equal(response.status, 201, JSON.stringify(response.body));
  return response.body;
}

/**
 * An instance the service already knows, for the tests whose subject is another action: launched
 * in-process and recorded as a completed create records it, without the create's aws CLI calls.
 */
async function arranged(h: Harness, name = 'web-1'): Promise<{ id: string }> {
  return { id: await arrangeRecordedInstance(h, { name }) };
}

for (const kind of storeKinds()) describe(`instances API against moto (${kind})`, function () {
  let h: Harness;
  const recordOf = (id: string) => h.records.instances.findByInstanceId(id);

  beforeEach(async () => {
    await resetMoto();
    await createKeyPair();
    h = await createHarnessOn(kind);
  });
  afterEach(() => h.close());

  it('when GET /health is called, then it answers {"status":"ok"} with a request id', async () => {
    const response = await request(h.app).get('/health').set('X-Request-Id', 'abc-123');
    assert.equal(response.status, 200);
    assert.deepEqual(response.body, { status: 'ok' });
    assert.equal(response.headers['x-request-id'], 'abc-123');
    assert.equal(h.runs.length, 0);
  });

  it('when an instance is created, then 201 + Location, the row and EC2 agree on everything', async () => {
    const response = await request(h.app)
      .post('/instances')
      .set('X-Request-Id', 'create-req-1')
      .send({ name: 'web-1', ami: UBUNTU_X86_AMI, instance_type: 't3.micro', storage_gb: 8 });

    assert.equal(response.status, 201, JSON.stringify(response.body));
    const body = response.body;
    assert.deepEqual(Object.keys(body).sort(), INSTANCE_FIELDS);
    assert.match(body.id, /^i-[0-9a-f]{17}$/);
    assert.equal(response.headers.location, `/instances/${body.id}`);
    assert.equal(body.name, 'web-1');
    assert.equal(body.ami, UBUNTU_X86_AMI);
    assert.equal(body.instance_type, 't3.micro');
    assert.equal(body.storage_gb, 8);
    assert.equal(body.key_name, TEST_KEY_NAME);
    assert.equal(body.backend_used, 'awscli');
    for (const field of ['created_at', 'updated_at', 'launch_time']) assert.match(body[field], ISO_UTC, field);

    const ec2 = await ec2InstanceById(body.id);
    assert.ok(ec2, 'EC2 knows the instance');
    // The create waits for the launch to settle, so the answer is EC2's state after it, never a guess.
    assert.equal(body.state, 'running', 'state is what EC2 reports once the launch settled');
    assert.equal(ec2.State.Name, body.state);
    assert.ok(body.public_ip, 'a running instance has its public IP in the answer');
    assert.equal(body.public_ip, ec2.PublicIpAddress ?? null);
    assert.equal(body.private_ip, ec2.PrivateIpAddress ?? null);
    assert.equal(ec2.KeyName, TEST_KEY_NAME);
    assert.equal(ec2.InstanceType, 't3.micro');
    const tags = Object.fromEntries((ec2.Tags ?? []).map((t: any) => [t.Key, t.Value]));
    assert.equal(tags.Name, 'web-1');
    assert.equal(tags.ManagedBy, 'ec2-creator');
    assert.equal(body.security_group_id, ec2.SecurityGroups?.[0]?.GroupId ?? null);
    assert.equal(body.ssh_string, ec2.PublicIpAddress ? `ssh -i ~/.ssh/${TEST_KEY_NAME}.pem ubuntu@${ec2.PublicIpAddress}` : '');

    const row = await recordOf(body.id);
    assert.ok(row);
    assert.equal(row.launch_status, 'launched');
    assert.equal(row.state, body.state);
    assert.equal(row.public_ip, body.public_ip);
    assert.equal(row.login_user, 'ubuntu');
    assert.match(row.client_token, /^ec2c-[0-9a-f-]{36}$/);
    assert.equal(tags['ec2-creator:client-token'], row.client_token, 'the launch carries the recorded client token');
    const createRun = h.runs.find((r) => r.script === 'create_instance.sh');
    assert.ok(createRun?.args.includes(`--client-token=${row.client_token}`));
    assert.ok(createRun?.args.includes('--wait'), 'the create waits for the launch to settle');

    const scriptLine = h.logs.find((l) => l.message === 'script run' && l.script === 'create_instance.sh');
    assert.ok(scriptLine, 'one log line per script run');
    assert.equal(scriptLine.request_id, 'create-req-1');
    assert.equal(scriptLine.exit_code, 0);
    assert.equal(typeof scriptLine.duration_ms, 'number');
    assert.ok(Array.isArray(scriptLine.args));
  });

  it('when a t4g instance is created from an arm64 Amazon Linux AMI, then the login user is ec2-user', async () => {
    const body = await launch(h, { name: 'arm-1', ami: AL2022_ARM_AMI, instance_type: 't4g.micro' });

    const ec2 = await ec2InstanceById(body.id);
    assert.equal(ec2.InstanceType, 't4g.micro');
    assert.equal((await recordOf(body.id))?.login_user, 'ec2-user');
    assert.equal(body.ssh_string, body.public_ip ? `ssh -i ~/.ssh/${TEST_KEY_NAME}.pem ec2-user@${body.public_ip}` : '');
  });

  it('when create_security_group is true, then the group exists in EC2 and the instance is in it', async () => {
    const body = await launch(h, { create_security_group: true, ssh_cidr: '203.0.113.7/32' });

    const groups = await ec2Client().send(new DescribeSecurityGroupsCommand({ Filters: [{ Name: 'tag:ManagedBy', Values: ['ec2-creator'] }] }));
    assert.equal(groups.SecurityGroups?.length, 1);
    const groupId = groups.SecurityGroups?.[0]?.GroupId;
    assert.equal(body.security_group_id, groupId);
    assert.equal((await recordOf(body.id))?.security_group_id, groupId);
    const ec2 = await ec2InstanceById(body.id);
    assert.deepEqual(ec2.SecurityGroups.map((g: any) => g.GroupId), [groupId]);
    assert.ok(h.runs.findIndex((r) => r.script === 'ensure_security_group.sh') < h.runs.findIndex((r) => r.script === 'create_instance.sh'));
  });

  it('when GET /instances/{id} is called after EC2 changed behind our back, then the row is refreshed', async () => {
    const created = await arranged(h);
    await ec2Client().send(new StopInstancesCommand({ InstanceIds: [created.id] }));

    const response = await request(h.app).get(`/instances/${created.id}`);

    assert.equal(response.status, 200);
    const ec2 = await ec2InstanceById(created.id);
    assert.equal(ec2.State.Name, 'stopped');
    assert.equal(response.body.state, 'stopped');
    assert.equal(response.body.public_ip, null);
    assert.equal(response.body.ssh_string, '');
    assert.equal((await recordOf(created.id))?.state, 'stopped');
    assert.ok(h.runs.some((r) => r.script === 'describe_instance.sh'));
  });

  it('when an instance is stopped then started, then the new public IP is in the response, row and ssh string', async () => {
    const created = await arranged(h);
    const before = await ec2InstanceById(created.id);

    const stopped = await request(h.app).post(`/instances/${created.id}/stop`);
    assert.equal(stopped.status, 200, JSON.stringify(stopped.body));
    assert.equal(stopped.body.state, 'stopped');
    assert.equal((await ec2InstanceById(created.id)).State.Name, 'stopped');
    assert.equal((await recordOf(created.id))?.state, 'stopped');

    const started = await request(h.app).post(`/instances/${created.id}/start`);

    assert.equal(started.status, 200, JSON.stringify(started.body));
    const after = await ec2InstanceById(created.id);
    assert.equal(after.State.Name, 'running');
    assert.equal(started.body.state, 'running');
    assert.ok(after.PublicIpAddress, 'moto gives a running instance a public IP');
    assert.notEqual(after.PublicIpAddress, before.PublicIpAddress, 'EC2 gave it a new address');
    assert.equal(started.body.public_ip, after.PublicIpAddress);
    assert.equal(started.body.ssh_string, `ssh -i ~/.ssh/${TEST_KEY_NAME}.pem ubuntu@${after.PublicIpAddress}`);
    const row = await recordOf(created.id);
    assert.equal(row?.public_ip, after.PublicIpAddress);
    assert.equal(row?.state, 'running');
  });

  it('when an instance is deleted, then 204, EC2 terminated it and the record is kept as terminated', async () => {
    const created = await arranged(h);

    const response = await request(h.app).delete(`/instances/${created.id}`);

    assert.equal(response.status, 204);
    assert.equal(response.text, '');
    const ec2 = await ec2InstanceById(created.id);
    assert.ok(['shutting-down', 'terminated'].includes(ec2.State.Name));
    const row = await recordOf(created.id);
    assert.equal(row?.state, 'terminated');
    const one = await request(h.app).get(`/instances/${created.id}`);
    assert.equal(one.status, 200);
    assert.equal(one.body.state, 'terminated');
  });

  it('when the instance vanished from EC2, then DELETE answers 204 and the record becomes terminated', async () => {
    const created = await arranged(h);
    await launchedLongAgo(h, created.id);
    await resetMoto(); // EC2 forgets everything, as it does with instances terminated long ago
    await createKeyPair();
    assert.equal(await ec2InstanceById(created.id), undefined);

    const response = await request(h.app).delete(`/instances/${created.id}`);

    assert.equal(response.status, 204);
    assert.equal((await recordOf(created.id))?.state, 'terminated');
    assert.ok((await h.sql('SELECT row_id FROM instances')).length >= 1, 'history is never deleted');
  });

  it('when the instance vanished from EC2, then GET shows it terminated instead of failing', async () => {
    const created = await arranged(h);
    await launchedLongAgo(h, created.id);
    await resetMoto();

    const response = await request(h.app).get(`/instances/${created.id}`);

    assert.equal(response.status, 200);
    assert.equal(response.body.state, 'terminated');
    assert.equal((await recordOf(created.id))?.state, 'terminated');
  });

  it('when the instance vanished from EC2, then stop answers 409 and the record becomes terminated', async () => {
    const created = await arranged(h);
    await launchedLongAgo(h, created.id);
    await resetMoto();

    const response = await request(h.app).post(`/instances/${created.id}/stop`);

    expectProblem(response, 409);
    assert.equal((await recordOf(created.id))?.state, 'terminated');
  });

  it('when starting a terminated instance, then 409 and EC2 is untouched', async () => {
    const created = await arranged(h);
    // Terminated in EC2 and recorded as DELETE records it (the delete itself is tested above).
    await ec2Client().send(new TerminateInstancesCommand({ InstanceIds: [created.id] }));
    await h.records.instances.markTerminated(created.id, null);
    const runsBefore = h.runs.length;

    const response = await request(h.app).post(`/instances/${created.id}/start`);

    expectProblem(response, 409);
    assert.equal(h.runs.length, runsBefore, 'no script ran');
    assert.ok(['shutting-down', 'terminated'].includes((await ec2InstanceById(created.id)).State.Name));
  });

  it('when an unknown but well-formed id is used, then every instance endpoint answers 404 without a script', async () => {
    const id = 'i-0123456789abcdef0';
    for (const [method, path] of [['get', `/instances/${id}`], ['delete', `/instances/${id}`], ['post', `/instances/${id}/start`], ['post', `/instances/${id}/stop`]] as const) {
      const response = await request(h.app)[method](path);
      expectProblem(response, 404);
    }
    assert.equal(h.runs.length, 0);
  });

  it('when the instance lost its ManagedBy tag, then DELETE is refused with 409 and the instance keeps running', async () => {
    const created = await arranged(h);
    // Strip the ManagedBy tag behind the service's back: destroy_instance.sh must refuse it.
    await ec2Client().send(new DeleteTagsCommand({ Resources: [created.id], Tags: [{ Key: 'ManagedBy' }] }));

    const response = await request(h.app).delete(`/instances/${created.id}`);

    expectProblem(response, 409);
    assert.equal((await ec2InstanceById(created.id)).State.Name, 'running');
    assert.notEqual((await recordOf(created.id))?.state, 'terminated');
  });

  describe('GET /instances', () => {
    // Listing reads the records only, so the records are arranged directly: three launches through the
    // scripts (each waiting for "running") made this test outlast mocha's timeout on a busy machine.
    async function recorded(name: string, state: 'running' | 'stopped' | 'terminated'): Promise<{ id: string }> {
      const id = `i-${randomBytes(9).toString('hex').slice(0, 17)}`;
      const clientToken = `token-${name}`;
      await h.records.instances.insertLaunch({
        clientToken, name, ami: UBUNTU_X86_AMI, instanceType: 't3.micro', storageGb: 8,
        keyName: TEST_KEY_NAME, securityGroupId: null, loginUser: 'ubuntu',
      });
      await h.records.instances.completeLaunch(clientToken, {
        instanceId: id, name, state, publicIp: state === 'running' ? '203.0.113.10' : null, privateIp: '10.0.0.10',
        storageGb: 8, keyName: TEST_KEY_NAME, securityGroupId: null, launchTime: new Date().toISOString(),
      });
      return { id };
    }

    it('when KEY_FILE is configured, then ssh_string names that file for the configured key pair and ~/.ssh/<key>.pem for another', async () => {
      h.close();
      h = await createHarnessOn(kind, { config: { keyFile: '/srv/keys/team key.pem' } });
      const ours = await recorded('ours', 'running');
      const clientToken = 'token-theirs';
      await h.records.instances.insertLaunch({
        clientToken, name: 'theirs', ami: UBUNTU_X86_AMI, instanceType: 't3.micro', storageGb: 8,
        keyName: 'someone-elses', securityGroupId: null, loginUser: 'ubuntu',
      });
      const theirs = await h.records.instances.completeLaunch(clientToken, {
        instanceId: 'i-0abcdef0123456789', name: 'theirs', state: 'running', publicIp: '203.0.113.11', privateIp: null,
        storageGb: 8, keyName: 'someone-elses', securityGroupId: null, launchTime: new Date().toISOString(),
      });

      const listed = await request(h.app).get('/instances');

      assert.equal(listed.status, 200);
      const sshOf = Object.fromEntries(listed.body.instances.map((i: any) => [i.id, i.ssh_string]));
      assert.deepEqual(sshOf, {
        [ours.id]: "ssh -i '/srv/keys/team key.pem' ubuntu@203.0.113.10",
        [theirs.instance_id]: 'ssh -i ~/.ssh/someone-elses.pem ubuntu@203.0.113.11',
      });
    });

    it('when several exist, then newest first, terminated hidden unless asked, filters and cursor work', async () => {
      const a = await recorded('alpha', 'terminated');
      const b = await recorded('beta', 'stopped');
      const c = await recorded('gamma', 'running');

      const visible = await request(h.app).get('/instances');
      assert.equal(visible.status, 200);
      assert.deepEqual(visible.body.instances.map((i: any) => i.id), [c.id, b.id]);
      assert.equal(visible.body.next_cursor, null);
      for (const i of visible.body.instances) assert.deepEqual(Object.keys(i).sort(), INSTANCE_FIELDS);

      const all = await request(h.app).get('/instances?include_terminated=true');
      assert.deepEqual(all.body.instances.map((i: any) => i.id), [c.id, b.id, a.id]);

      const terminated = await request(h.app).get('/instances?state=terminated');
      assert.deepEqual(terminated.body.instances.map((i: any) => i.id), [a.id]);

      const stopped = await request(h.app).get('/instances?state=stopped');
      assert.deepEqual(stopped.body.instances.map((i: any) => i.id), [b.id]);

      const byName = await request(h.app).get('/instances?name=gamma');
      assert.deepEqual(byName.body.instances.map((i: any) => i.id), [c.id]);

      const page1 = await request(h.app).get('/instances?include_terminated=true&limit=2');
      assert.deepEqual(page1.body.instances.map((i: any) => i.id), [c.id, b.id]);
      assert.equal(typeof page1.body.next_cursor, 'string');
      const page2 = await request(h.app).get(`/instances?include_terminated=true&limit=2&cursor=${page1.body.next_cursor}`);
      assert.deepEqual(page2.body.instances.map((i: any) => i.id), [a.id]);
      assert.equal(page2.body.next_cursor, null);

      assert.deepEqual(h.runs, [], 'listing answers from the records and runs no script');
    });
  });

  it('when the app is restarted on the same database file, then it shows the same records', async () => {
    const created = await arranged(h, 'survivor');
    const before = await request(h.app).get('/instances');
    const databaseUrl = h.databaseUrl;
    h.close({ keepFiles: true });

    const restarted = await createHarnessOn(kind, { databaseUrl });
    try {
      const after = await request(restarted.app).get('/instances');
      assert.equal(after.status, 200);
      assert.deepEqual(after.body, before.body);
      assert.equal(after.body.instances[0].id, created.id);
      const one = await request(restarted.app).get(`/instances/${created.id}`);
      assert.equal(one.status, 200);
      assert.equal(one.body.name, 'survivor');
      assert.equal(one.body.state, (await ec2InstanceById(created.id)).State.Name);
    } finally {
      restarted.close();
    }
    h = await createHarnessOn(kind); // afterEach closes this one
  });
});
