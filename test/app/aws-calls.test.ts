/**
 * The AWS calls behind each API operation. The service keeps a record of every instance it manages, so
 * its scripts skip what a person running them by hand needs checked: the record says the instance is
 * managed and what state it is in, and the root volume's size never changes after launch. Images and key
 * pairs, which a launch cannot change, are read once per server.
 */
import assert from 'node:assert/strict';
import request from 'supertest';
import { resetMoto } from '../support/global-fixture.js';
import { UBUNTU_X86_AMI, createKeyPair, ec2InstanceById, launchOutsideTheService } from '../support/ec2-reader.js';
import { recordAwsCalls } from '../support/fake-aws.js';
import { createHarness, type Harness } from '../support/app-harness.js';

describe('the AWS calls behind each API operation', () => {
  let h: Harness;
  let calls: ReturnType<typeof recordAwsCalls>;

  before(async () => {
    await resetMoto();
    await createKeyPair();
    calls = recordAwsCalls();
    h = createHarness({ env: calls.env });
  });
  after(() => h.close());
  beforeEach(() => calls.clear());

  async function create(name: string): Promise<string> {
    const response = await request(h.app).post('/instances').send({ name, ami: UBUNTU_X86_AMI, instance_type: 't3.micro', storage_gb: 9 });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    assert.equal(response.body.storage_gb, 9);
    return response.body.id as string;
  }

  it('when the first instance is created, then the image and key pair are read once, and the launch polls without reading volumes', async () => {
    const id = await create('first');
    assert.deepEqual(calls.operations(), ['describe-images', 'describe-key-pairs', 'run-instances', 'describe-instances']);
    assert.equal((await ec2InstanceById(id)).State.Name, 'running');
    assert.equal(h.row(id)?.storage_gb, 9);
  });

  it('when another instance is created from the same image with the same key, then only the launch and its poll reach AWS', async () => {
    const id = await create('second');
    assert.deepEqual(calls.operations(), ['run-instances', 'describe-instances']);
    assert.equal((await ec2InstanceById(id)).State.Name, 'running');
  });

  it('when an instance is stopped, started and deleted, then each is the change and one read, and the record keeps its size', async () => {
    const id = await create('cycled');
    calls.clear();

    const stopped = await request(h.app).post(`/instances/${id}/stop`);
    assert.equal(stopped.status, 200, JSON.stringify(stopped.body));
    assert.deepEqual(calls.operations(), ['stop-instances', 'describe-instances']);
    assert.equal(stopped.body.storage_gb, 9, 'the size on record, not re-read');
    assert.equal((await ec2InstanceById(id)).State.Name, 'stopped');
    calls.clear();

    const started = await request(h.app).post(`/instances/${id}/start`);
    assert.equal(started.status, 200, JSON.stringify(started.body));
    assert.deepEqual(calls.operations(), ['start-instances', 'describe-instances']);
    assert.equal((await ec2InstanceById(id)).State.Name, 'running');
    calls.clear();

    const deleted = await request(h.app).delete(`/instances/${id}`);
    assert.equal(deleted.status, 204);
    assert.deepEqual(calls.operations(), ['describe-instances', 'terminate-instances'], 'the managed check, then the change');
    assert.equal((await ec2InstanceById(id)).State.Name, 'terminated');
    assert.equal(h.row(id)?.state, 'terminated');
    assert.equal(h.row(id)?.storage_gb, 9);
  });

  it('when an instance is read through the API, then EC2 is read with one call', async () => {
    const id = await create('read');
    calls.clear();
    const response = await request(h.app).get(`/instances/${id}`);
    assert.equal(response.status, 200);
    assert.equal(response.body.storage_gb, 9);
    assert.deepEqual(calls.operations(), ['describe-instances']);
  });

  it('when sync finds nothing to import, then it is one call; an instance it imports has its volume read once', async () => {
    let response = await request(h.app).post('/instances/sync');
    assert.equal(response.status, 200, JSON.stringify(response.body));
    assert.deepEqual(calls.operations(), ['describe-instances']);
    calls.clear();

    const [outside] = await launchOutsideTheService({ tags: { ManagedBy: 'ec2-creator', Name: 'by-hand' } });
    response = await request(h.app).post('/instances/sync');
    assert.equal(response.status, 200, JSON.stringify(response.body));
    assert.equal(response.body.imported, 1);
    assert.deepEqual(calls.operations(), ['describe-instances', 'describe-instances', 'describe-volumes']);
    assert.equal(h.row(outside as string)?.storage_gb, 8);
  });
});
