/**
 * While an operation changes an instance, the record shows the transitional state it set (pending,
 * stopping, shutting-down); reads of EC2 and syncs in the meantime must not put back what EC2 said before
 * the change took effect, and a read that began before a change and answers after it must not put back
 * its older view either. Ordering comes from the fake aws's marker files and from a read held by the
 * test, never from durations.
 */
import assert from 'node:assert/strict';
import request from 'supertest';
import type { ScriptRunner } from '../../app/ec2/runner.js';
import { resetMoto } from '../support/global-fixture.js';
import { createKeyPair, ec2InstanceById, freshEc2 } from '../support/ec2-reader.js';
import { arrangeManagedInstances, createHarnessOn, storeKinds, type Harness } from '../support/app-harness.js';
import { markers, until, useGate } from '../support/lifecycle.js';
import { fakeAwsEnv } from '../support/fake-aws.js';

const CASES = [
  { kind: 'start', before: 'stopped', transitional: 'pending', after: 'running' },
  { kind: 'stop', before: 'running', transitional: 'stopping', after: 'stopped' },
] as const;

for (const storeKind of storeKinds()) describe(`transitional states hold while their operation runs (${storeKind})`, function () {
  this.timeout(240_000);
  let h: Harness;
  const recordOf = (id: string) => h.records.instances.findByInstanceId(id);
  const operationOf = (id: string) => h.records.operations.get(id);
  const gate = useGate();

  beforeEach(freshEc2);
  afterEach(() => {
    h.close();
  });

  for (const { kind, before, transitional, after } of CASES) {
    it(`when an asynchronous ${kind} is held inside aws, then GET /instances/{id}, GET /instances and POST /instances/sync all show ${transitional}, and ${after} once it is released`, async () => {
      h = await createHarnessOn(storeKind, { env: fakeAwsEnv({ FAKE_AWS_GATE_OP: `${kind}-instances`, FAKE_AWS_GATE_DIR: gate.dir }) });
      const [id] = (await arrangeManagedInstances(h, [`held-${kind}`])) as [string];
      if (kind === 'start') assert.equal((await request(h.app).post(`/instances/${id}/stop`)).body.state, 'stopped');

      const accepted = await request(h.app).post(`/instances/${id}/${kind}`).set('Prefer', 'respond-async');
      assert.equal(accepted.status, 202, JSON.stringify(accepted.body));
      await until(`the ${kind} is inside aws ${kind}-instances`, () => markers(gate.dir, 'entered').length === 1);
      assert.equal((await ec2InstanceById(id)).State.Name, before, 'EC2 has not seen the change yet');

      const read = await request(h.app).get(`/instances/${id}`).set('X-Request-Id', `read-during-${kind}`);

      assert.equal(read.status, 200, JSON.stringify(read.body));
      assert.equal(read.body.state, transitional);
      assert.equal((await recordOf(id))?.state, transitional);
      assert.ok(h.runs.some((r) => r.script === 'describe_instance.sh' && r.args.includes(id)), 'the read did ask EC2');
      assert.ok(h.logs.some((l) => l.message === 'read kept the state set by a change of the instance'
        && l.request_id === `read-during-${kind}` && l.instance_id === id && l.state === transitional && l.ec2_state === before));
      const listed = await request(h.app).get('/instances');
      assert.deepEqual(listed.body.instances.map((i: any) => [i.id, i.state]), [[id, transitional]]);

      const synced = await request(h.app).post('/instances/sync').set('X-Request-Id', `sync-during-${kind}`);

      assert.equal(synced.status, 200, JSON.stringify(synced.body));
      assert.equal(synced.body.updated, 0);
      assert.equal((await recordOf(id))?.state, transitional);
      assert.equal((await request(h.app).get('/instances')).body.instances[0]?.state, transitional);
      assert.ok(h.logs.some((l) => l.message === 'reconciliation left instances to the operations changing them'
        && l.request_id === `sync-during-${kind}` && Array.isArray(l.instance_ids) && (l.instance_ids as string[]).includes(id)));
      assert.equal(markers(gate.dir, 'left').length, 0, `the ${kind} was still held throughout`);

      gate.release();
      await until('the operation finished', async () => (await operationOf(accepted.body.id))?.status !== 'running'
        && (await operationOf(accepted.body.id))?.status !== 'queued');
      assert.equal((await operationOf(accepted.body.id))?.status, 'succeeded');
      const final = await request(h.app).get(`/instances/${id}`);
      assert.equal(final.body.state, after);
      assert.equal((await recordOf(id))?.state, after);
      assert.equal((await ec2InstanceById(id)).State.Name, after);
    });
  }
});

for (const storeKind of storeKinds()) describe(`a read that began before a change does not undo it (${storeKind})`, function () {
  this.timeout(240_000);
  let h: Harness;
  const recordOf = (id: string) => h.records.instances.findByInstanceId(id);
  let releaseRead: () => void = () => undefined;

  beforeEach(async () => {
    await resetMoto();
    await createKeyPair();
    h = await createHarnessOn(storeKind);
  });
  afterEach(() => {
    releaseRead();
    h.close();
  });

  /** The next run of `script` reads EC2 at once but hands its answer back only when the test says so. */
  function holdAnswerOf(script: string): { read: Promise<void> } {
    const runner = h.runner as { run: ScriptRunner['run'] };
    const original = runner.run.bind(h.runner);
    let signalRead: () => void = () => undefined;
    const read = new Promise<void>((resolve) => { signalRead = resolve; });
    const released = new Promise<void>((resolve) => { releaseRead = resolve; });
    let held = false;
    runner.run = (async (name, args, validate, ctx) => {
      const result = await original(name, args, validate, ctx);
      if (name === script && !held) {
        held = true;
        signalRead();
        await released;
      }
      return result;
    }) as ScriptRunner['run'];
    return { read };
  }

  it('when GET /instances/{id} read EC2 before a stop and answers after the stop finished, then the record and the answer stay stopped', async () => {
    const [id] = (await arrangeManagedInstances(h, ['stale-read'])) as [string];
    const { read } = holdAnswerOf('describe_instance.sh');
    const pending = request(h.app).get(`/instances/${id}`).set('X-Request-Id', 'stale-get').then((r) => r);
    await read; // EC2 said running

    const stopped = await request(h.app).post(`/instances/${id}/stop`);
    assert.equal(stopped.body.state, 'stopped');
    releaseRead();
    const answer = await pending;

    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.equal(answer.body.state, 'stopped');
    assert.equal((await recordOf(id))?.state, 'stopped');
    assert.equal((await ec2InstanceById(id)).State.Name, 'stopped');
    assert.ok(h.logs.some((l) => l.message === 'read kept the state set by a change of the instance'
      && l.request_id === 'stale-get' && l.instance_id === id && l.state === 'stopped' && l.ec2_state === 'running'));
  });

  it('when a sync read EC2 before a stop and records after the stop finished, then the record stays stopped', async () => {
    const [id] = (await arrangeManagedInstances(h, ['stale-sync'])) as [string];
    const { read } = holdAnswerOf('list_instances.sh');
    const pending = request(h.app).post('/instances/sync').set('X-Request-Id', 'stale-sync').then((r) => r);
    await read; // EC2 said running

    const stopped = await request(h.app).post(`/instances/${id}/stop`);
    assert.equal(stopped.body.state, 'stopped');
    releaseRead();
    const answer = await pending;

    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.equal(answer.body.updated, 0);
    assert.equal((await recordOf(id))?.state, 'stopped');
    assert.equal((await ec2InstanceById(id)).State.Name, 'stopped');
    assert.ok(h.logs.some((l) => l.message === 'reconciliation left instances to the operations changing them'
      && l.request_id === 'stale-sync' && (l.instance_ids as string[]).includes(id)));
  });
});
