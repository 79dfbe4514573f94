/**
 * Operations, asynchronous requests and concurrency limits, in-process against moto with the
 * lifecycle fake aws holding `aws ec2 stop-instances` until the test releases it. Ordering comes from the
 * fake's marker files and the operation records, never from durations.
 */
import assert from 'node:assert/strict';
import request from 'supertest';
import { ec2InstanceById, freshEc2 } from '../support/ec2-reader.js';
import { arrangeManagedInstances, createHarnessOn, expectProblem, storeKinds, type Harness } from '../support/app-harness.js';
import { markers, until, useGate } from '../support/lifecycle.js';
import { fakeAwsEnv } from '../support/fake-aws.js';

for (const kind of storeKinds()) describe(`operations and concurrency (${kind})`, function () {
  this.timeout(240_000);
  let h: Harness;
  const gate = useGate();

  beforeEach(freshEc2);
  afterEach(() => {
    h.close();
  });

  const recordOf = (id: string) => h.records.instances.findByInstanceId(id);

  async function harness(config: { maxConcurrentScripts?: number; maxQueuedOperations?: number } = {}): Promise<Harness> {
    h = await createHarnessOn(kind, {
      env: fakeAwsEnv({ FAKE_AWS_GATE_OP: 'stop-instances', FAKE_AWS_GATE_DIR: gate.dir }),
      // Each stop in a script run of its own, so that "two inside aws at once" shows the cap (stops sharing
      // one run are test/app/coalescing.test.ts's subject).
      config: { maxInstances: 20, coalesceWindowMs: 0, ...config },
    });
    return h;
  }

  it('when a stop is requested with Prefer: respond-async and a second stop follows, then 202 + Location, the record shows stopping, the second gets 409 naming the first', async () => {
    await harness();
    const [id] = (await arrangeManagedInstances(h, ['async-1'])) as [string];

    const accepted = await request(h.app).post(`/instances/${id}/stop`).set('Prefer', 'respond-async').set('X-Request-Id', 'async-stop');

    assert.equal(accepted.status, 202, JSON.stringify(accepted.body));
    const op = accepted.body;
    assert.match(op.id, /^op-[0-9a-f-]{36}$/);
    assert.equal(accepted.headers.location, `/operations/${op.id}`);
    assert.equal(accepted.headers['preference-applied'], 'respond-async');
    assert.equal(op.kind, 'stop');
    assert.equal(op.instance_id, id);
    assert.equal(op.request_id, 'async-stop');
    assert.ok(['queued', 'running'].includes(op.status));
    await until('the stop is inside aws stop-instances', () => markers(gate.dir, 'entered').length === 1);
    const followed = await request(h.app).get(`/operations/${op.id}`);
    assert.equal(followed.status, 200);
    assert.equal(followed.body.status, 'running');
    assert.equal((await request(h.app).get('/instances?state=stopping')).body.instances[0]?.id, id, 'transitional state shown');

    const second = await request(h.app).post(`/instances/${id}/stop`);

    const problem = expectProblem(second, 409);
    assert.equal(problem.operation_id, op.id);
    assert.match(problem.detail, new RegExp(op.id));
    // Reads never wait behind the mutation.
    const read = await request(h.app).get(`/instances/${id}`);
    assert.equal(read.status, 200);
    assert.equal(markers(gate.dir, 'left').length, 0, 'the stop was still held while the read answered');

    gate.release();
    await until('the operation finished', async () => (await request(h.app).get(`/operations/${op.id}`)).body.status !== 'running');
    const finished = (await request(h.app).get(`/operations/${op.id}`)).body;
    assert.equal(finished.status, 'succeeded', JSON.stringify(finished));
    assert.equal(finished.result.state, 'stopped');
    assert.equal(typeof finished.duration_ms, 'number');
    assert.ok(finished.finished_at >= finished.started_at);
    assert.equal((await ec2InstanceById(id)).State.Name, 'stopped');
    assert.equal((await recordOf(id))?.state, 'stopped');
    assert.equal((await h.records.operations.list({ instanceId: id, kind: 'stop', limit: 10 })).length, 1, 'the refused stop recorded nothing');
    assert.ok(h.logs.some((l) => l.message === 'operation succeeded' && l.operation_id === op.id));
    const listed = await request(h.app).get(`/operations?instance_id=${id}&kind=stop&status=succeeded`);
    assert.deepEqual(listed.body.operations.map((o: any) => o.id), [op.id]);
  });

  // The engine's unit tests cover the cap, the FIFO order and the refusal in detail; this is the one
  // case end to end, with real scripts held inside aws stop-instances.
  it('when more stops arrive than MAX_CONCURRENT_SCRIPTS, then that many run in parallel, the next waits in the FIFO queue, and beyond the queue 503 with Retry-After', async () => {
    await harness({ maxConcurrentScripts: 2, maxQueuedOperations: 1 });
    const ids = await arrangeManagedInstances(h, ['par-0', 'par-1', 'par-2', 'par-3']);
    const [queuedId, refusedId] = [ids[2] as string, ids[3] as string];

    const parallel = ids.slice(0, 2).map((id) => request(h.app).post(`/instances/${id}/stop`).then((r) => r));
    await until('two stops are inside aws at once', () => markers(gate.dir, 'entered').length === 2);
    const queued = request(h.app).post(`/instances/${queuedId}/stop`).then((r) => r);
    await until('the third is recorded as queued', async () =>
      (await h.records.operations.list({ instanceId: queuedId, kind: 'stop', limit: 1 }))[0]?.status === 'queued');

    const refused = await request(h.app).post(`/instances/${refusedId}/stop`);

    const problem = expectProblem(refused, 503);
    assert.match(problem.detail, /2 script slots/);
    assert.match(String(refused.headers['retry-after']), /^\d+$/);
    assert.deepEqual(h.services.operations.stats(), { running: 2, queued: 1, active: 3 });
    assert.equal(markers(gate.dir, 'entered').length, 2, 'the queued stop did not start');
    assert.equal(h.runs.filter((r) => r.script === 'stop_instance.sh' && r.args.includes(queuedId)).length, 0);
    assert.equal((await h.records.operations.list({ instanceId: refusedId, kind: 'stop', limit: 5 })).length, 0, 'nothing recorded for the refused one');
    assert.notEqual((await recordOf(queuedId))?.state, 'stopping', 'a queued operation has not started: no transitional state yet');
    assert.equal((await request(h.app).get('/health/ready')).status, 200, 'a full queue is not a shutdown');

    gate.release();
    const answers = await Promise.all([...parallel, queued]);

    for (const answer of answers) assert.equal(answer.status, 200, JSON.stringify(answer.body));
    for (const id of ids.slice(0, 3)) {
      assert.equal((await ec2InstanceById(id)).State.Name, 'stopped');
      assert.equal((await recordOf(id))?.state, 'stopped');
    }
    assert.equal((await ec2InstanceById(refusedId)).State.Name, 'running');
    const ops = await h.records.operations.list({ kind: 'stop', limit: 20 });
    assert.equal(ops.length, 3);
    assert.ok(ops.every((o) => o.status === 'succeeded'));
    const third = ops.find((o) => o.instance_id === queuedId);
    const firstFinished = ops.filter((o) => o.instance_id !== queuedId).map((o) => o.finished_at as string).sort()[0] as string;
    assert.ok((third?.started_at as string) >= firstFinished, 'the queued stop started only when a slot was free');
  });
});
