/**
 * Asynchronous requests are refused exactly where synchronous ones are: whatever a synchronous request
 * refuses before a script runs (quota, a terminated instance, …) gets the same status before any 202, and
 * nothing is recorded for it. The quota counts launches in flight from the moment they are accepted.
 */
import assert from 'node:assert/strict';
import request from 'supertest';
import { allEc2Instances, ec2InstanceById, freshEc2, UBUNTU_X86_AMI } from '../support/ec2-reader.js';
import { arrangeManagedInstances, createHarnessOn, expectProblem, storeKinds, type Harness } from '../support/app-harness.js';
import { markers, until, useGate } from '../support/lifecycle.js';
import { fakeAwsEnv } from '../support/fake-aws.js';

const launch = (name: string) => ({ name, ami: UBUNTU_X86_AMI, instance_type: 't3.micro', storage_gb: 8 });

for (const storeKind of storeKinds()) describe(`asynchronous requests are as strict as synchronous ones (${storeKind})`, function () {
  this.timeout(240_000);
  let h: Harness;
  const gate = useGate();

  beforeEach(freshEc2);
  afterEach(() => {
    h.close();
  });

  const requestLine = (requestId: string) =>
    h.logs.find((l) => l.message === 'request' && l.request_id === requestId);
  const createOps = () => h.records.operations.list({ kind: 'create', limit: 20 });
  const unfinished = async () => (await createOps()).filter((o) => o.status === 'queued' || o.status === 'running');
  const recordOf = (id: string) => h.records.instances.findByInstanceId(id);
  const rowCount = async () => Number((await h.sql<{ n: number | string }>('SELECT count(*) AS n FROM instances'))[0]?.n);

  for (const maxInstances of [1, 2]) {
    it(`when three asynchronous creates arrive together with MAX_INSTANCES=${maxInstances}, then ${maxInstances} get 202 and the others 409 quota-exceeded before any operation, and EC2 ends with ${maxInstances}`, async () => {
      // Launches are held in front of EC2, so the later requests meet the earlier ones still in flight.
      h = await createHarnessOn(storeKind, {
        env: fakeAwsEnv({ FAKE_AWS_GATE_OP: 'run-instances', FAKE_AWS_GATE_DIR: gate.dir }),
        config: { maxInstances },
      });
      const names = ['together-1', 'together-2', 'together-3'];

      const answers = await Promise.all(names.map((name) =>
        request(h.app).post('/instances').set('Prefer', 'respond-async').set('X-Request-Id', `async-${name}`).send(launch(name))));

      const accepted = answers.filter((a) => a.status === 202);
      const refused = answers.filter((a) => a.status !== 202);
      assert.equal(accepted.length, maxInstances, JSON.stringify(answers.map((a) => [a.status, a.body])));
      assert.equal(refused.length, 3 - maxInstances);
      for (const answer of refused) {
        const problem = expectProblem(answer, 409);
        assert.equal(problem.type, 'urn:ec2-creator:problem:quota-exceeded');
        assert.match(problem.detail, new RegExp(`quota of ${maxInstances} live instances reached \\(${maxInstances} live\\)`));
        assert.equal(answer.headers['operation-id'], undefined, 'no operation for a refused create');
        assert.equal(requestLine(answer.headers['x-request-id'] as string)?.status, 409);
      }
      const refusedIds = refused.map((a) => a.headers['x-request-id'] as string);
      assert.ok((await createOps()).every((o) => !refusedIds.includes(o.request_id as string)),
        'nothing recorded for a refused create');

      await until('the accepted launches are inside aws run-instances', () => markers(gate.dir, 'entered').length === maxInstances);
      const held = await request(h.app).post('/instances').send(launch('while-held'));
      expectProblem(held, 409); // launches in flight count, also against a synchronous create
      gate.release();
      await until('every accepted create finished', async () => (await unfinished()).length === 0);

      const ops = await createOps();
      assert.deepEqual(ops.map((o) => o.status), Array(maxInstances).fill('succeeded'));
      assert.deepEqual(ops.map((o) => o.id).sort(), accepted.map((a) => a.body.id).sort());
      const ec2 = await allEc2Instances();
      assert.equal(ec2.length, maxInstances, 'EC2 holds exactly the allowed number of instances');
      assert.deepEqual(ec2.map((i) => i.InstanceId).sort(), ops.map((o) => o.instance_id).sort());
      for (const op of ops) {
        assert.equal((await recordOf(op.instance_id as string))?.launch_status, 'launched');
        assert.equal((await recordOf(op.instance_id as string))?.state, 'running');
        assert.ok(h.logs.some((l) => l.message === 'operation succeeded' && l.operation_id === op.id));
      }
      assert.equal(await rowCount(), maxInstances, 'no launch intent recorded for a refused create');
      assert.equal(h.runs.filter((r) => r.script === 'create_instance.sh').length, maxInstances);
    });
  }

  for (const kind of ['start', 'stop'] as const) {
    it(`when an asynchronous ${kind} names a terminated instance, then 409 before any 202 and no operation is recorded`, async () => {
      h = await createHarnessOn(storeKind, { env: fakeAwsEnv({}) });
      const [id] = (await arrangeManagedInstances(h, [`gone-${kind}`])) as [string];
      assert.equal((await request(h.app).delete(`/instances/${id}`)).status, 204);
      const runsBefore = h.runs.length;

      const answer = await request(h.app).post(`/instances/${id}/${kind}`).set('Prefer', 'respond-async').set('X-Request-Id', `late-${kind}`);

      const problem = expectProblem(answer, 409);
      assert.match(problem.detail, new RegExp(`${id} is terminated; it cannot ${kind}`));
      assert.equal(answer.headers['operation-id'], undefined);
      assert.equal(answer.headers['preference-applied'], undefined);
      assert.equal((await h.records.operations.list({ instanceId: id, kind, limit: 5 })).length, 0, 'no operation recorded');
      assert.equal(h.runs.length, runsBefore, 'no script ran');
      assert.equal((await recordOf(id))?.state, 'terminated');
      assert.equal((await ec2InstanceById(id)).State.Name, 'terminated');
      assert.equal(requestLine(`late-${kind}`)?.status, 409);
    });
  }
});
