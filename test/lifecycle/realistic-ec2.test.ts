/**
 * The service on EC2 as AWS documents it: the realistic emulator (scripts/lib/realistic-ec2.ts) between the
 * real scripts and moto. A launch is pending for a while, EC2 does not show a new id at once, states refuse
 * changes, and a repeated ClientToken answers the first launch. Where order matters the emulator's clock is
 * the test's (pending lasts until the test moves time on) or a request is held; the field run at the end
 * uses real time with AWS-like durations and throttling, and asserts only what must hold whatever the
 * timing: every request answered without a 5xx, one instance per create, the records equal to EC2.
 */
import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { RunInstancesCommand } from '@aws-sdk/client-ec2';
import request from 'supertest';
import { startRealisticEc2, type RealisticEc2, type RealisticEc2Options } from '../../scripts/lib/realistic-ec2.js';
import { motoEndpoint } from '../support/global-fixture.js';
import { allEc2Instances, ec2ClientFor, freshEc2, TEST_KEY_NAME, UBUNTU_X86_AMI } from '../support/ec2-reader.js';
import { createHarnessOn, expectProblem, storeKinds, testConfig, type Harness, type HarnessOptions, type StoreKind } from '../support/app-harness.js';
import { getJson, postJson, until } from '../support/lifecycle.js';
import { openSse, type SseClient } from '../support/sse.js';
import { useServerWorkspace } from '../support/server-workspace.js';

const LAUNCH = { name: 'field', ami: UBUNTU_X86_AMI, instance_type: 't3.micro', storage_gb: 8 };
const TOKEN_TAG = 'ec2-creator:client-token';
const tagOf = (instance: any, key: string): string | undefined => (instance.Tags ?? []).find((t: any) => t.Key === key)?.Value;

/** What AWS shows and what the field run used: pending 8 s, stopping 10 s, NotFound 2–6 s, 30 % throttled. */
const AWS_LIKE: Partial<RealisticEc2Options> = {
  pendingMs: 8_000, stoppingMs: 10_000, shuttingDownMs: 8_000, notFoundMs: [2_000, 6_000], throttleRate: 0.3, seed: 24,
};

function useEmulator() {
  const state = { emulator: undefined as unknown as RealisticEc2, clock: 0 };
  afterEach(async () => {
    await state.emulator?.close();
  });
  return Object.assign(state, {
    /** With `manual`, the emulator's time stands still until the test moves `clock`. */
    async start(options: Partial<RealisticEc2Options> & { manual?: boolean } = {}): Promise<RealisticEc2> {
      const { manual, ...rest } = options;
      state.clock = 10_000_000;
      state.emulator = await startRealisticEc2({
        upstream: motoEndpoint(), pendingMs: 8_000, stoppingMs: 10_000, notFoundMs: [4_000, 4_000],
        ...(manual ? { now: () => state.clock } : {}), ...rest,
      });
      return state.emulator;
    },
  });
}

for (const kind of storeKinds()) describe(`a launch on realistic EC2 is recorded while it is pending (${kind})`, function () {
  this.timeout(180_000);
  const ec2 = useEmulator();
  let h: Harness;
  let server: Server | undefined;
  let stream: SseClient | undefined;

  beforeEach(freshEc2);
  afterEach(async () => {
    stream?.close();
    if (server) await new Promise((resolve) => server?.close(resolve));
    server = undefined;
    h?.services.events.close();
    h?.close();
  });

  it('when EC2 has named the instance but it is still pending, then GET, the list and the event stream show it pending, a stop or delete gets 409 naming the create, a sync leaves it alone, and it is recorded running once EC2 says so', async () => {
    const emulator = await ec2.start({ manual: true });
    h = await createHarnessOn(kind, { env: { AWS_ENDPOINT_URL: emulator.endpoint }, config: { pollIntervalS: 1 } });
    server = h.app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server?.once('listening', resolve));
    stream = await openSse(`http://127.0.0.1:${(server.address() as AddressInfo).port}/events`);
    await stream.next('the stream is ready', (f) => f.event === 'stream.ready');

    const accepted = await request(h.app).post('/instances').set('Prefer', 'respond-async').send(LAUNCH);
    assert.equal(accepted.status, 202, JSON.stringify(accepted.body));
    const opId = accepted.body.id as string;
    await until('EC2 has named the instance', async () => (await h.records.operations.get(opId))?.instance_id != null);
    const id = (await h.records.operations.get(opId))?.instance_id as string;

    const read = await request(h.app).get(`/instances/${id}`);
    assert.equal(read.status, 200, JSON.stringify(read.body));
    assert.equal(read.body.state, 'pending');
    assert.deepEqual((await request(h.app).get('/instances')).body.instances.map((i: any) => [i.id, i.state]), [[id, 'pending']]);
    const created = await stream.next('instance.created', (f) => f.event === 'instance.created');
    assert.deepEqual([created.data.instance.id, created.data.instance.state], [id, 'pending']);
    for (const [method, path] of [['post', `/instances/${id}/stop`], ['delete', `/instances/${id}`]] as const) {
      const refused = expectProblem(await request(h.app)[method](path), 409);
      assert.equal(refused.operation_id, opId, `${method} ${path}`);
      assert.match(refused.detail, new RegExp(`The create operation ${opId} on instance ${id} is still in flight`));
    }
    const synced = await request(h.app).post('/instances/sync');
    assert.equal(synced.status, 200, JSON.stringify(synced.body));
    assert.equal(synced.body.vanished, 0);
    assert.equal((await h.records.instances.findByInstanceId(id))?.state, 'pending');
    assert.equal((await h.records.operations.get(opId))?.status, 'running', 'the launch still waits for running');

    ec2.clock += 10_000;

    await until('the launch succeeded', async () => (await h.records.operations.get(opId))?.status === 'succeeded');
    assert.equal((await h.records.instances.findByInstanceId(id))?.state, 'running');
    const changed = await stream.next('the change to running', (f) => f.event === 'instance.state_changed' && f.data.instance.id === id);
    assert.deepEqual([changed.data.previous_state, changed.data.instance.state], ['pending', 'running']);
    const instances = await allEc2Instances();
    assert.deepEqual(instances.map((i) => i.InstanceId), [id], 'one instance in EC2');
    assert.equal(tagOf(instances[0], TOKEN_TAG), (await h.records.instances.findByInstanceId(id))?.client_token);
  });
});

describe('the service on realistic EC2: launches whose answer comes late or not at all', function () {
  this.timeout(180_000);
  const ec2 = useEmulator();
  let h: Harness;
  const kind: StoreKind = 'sqlite';
  const harness = async (options: HarnessOptions = {}): Promise<Harness> =>
    createHarnessOn(kind, { ...options, env: { AWS_ENDPOINT_URL: ec2.emulator.endpoint }, config: { pollIntervalS: 1, ...options.config } });

  beforeEach(freshEc2);
  afterEach(() => h?.close());

  it('when EC2 answers NotFound for the new id at first, then a synchronous create waits it out and answers 201 with the instance running', async () => {
    await ec2.start({ manual: true });
    h = await harness();

    const response = request(h.app).post('/instances').send(LAUNCH).then((r) => r);
    await until('the script was told EC2 does not know the new id', () => ec2.emulator.stats.notFound >= 1);
    ec2.clock += 10_000;

    const created = await response;
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body.state, 'running');
    assert.deepEqual((await allEc2Instances()).map((i) => i.InstanceId), [created.body.id]);
    assert.equal((await h.records.instances.findByInstanceId(created.body.id))?.state, 'running');
  });

  it('when the launch\'s wait runs out before EC2 shows the instance, then the create answers 201 pending and says why, a sync counts it unconfirmed rather than vanished, and a read records it running once EC2 shows it', async () => {
    await ec2.start({ manual: true });
    h = await harness({ config: { timeouts: { ...testConfig().timeouts, create: 8_000 } } });

    const created = await request(h.app).post('/instances').send(LAUNCH);

    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body.state, 'pending');
    const id = created.body.id as string;
    const [op] = (await request(h.app).get(`/operations?instance_id=${id}&kind=create`)).body.operations;
    assert.equal(op.status, 'succeeded');
    assert.match(op.note, new RegExp(`EC2 launched ${id}; the launch's wait ended before it was running`));
    const synced = await request(h.app).post('/instances/sync');
    assert.deepEqual([synced.body.vanished, synced.body.unconfirmed], [0, 1], JSON.stringify(synced.body));
    assert.equal((await h.records.instances.findByInstanceId(id))?.state, 'pending');

    ec2.clock += 10_000;

    assert.equal((await request(h.app).get(`/instances/${id}`)).body.state, 'running');
    assert.equal((await allEc2Instances()).length, 1);
  });

  it('when the launch script is killed while EC2 holds its answer, then the create says the outcome is not known, the launch keeps its quota slot, and a retry with the same Idempotency-Key records that instance without a second launch', async () => {
    await ec2.start({ manual: true });
    h = await harness({ config: { maxInstances: 1, launchLookupS: 2, timeouts: { ...testConfig().timeouts, create: 6_000 } } });
    const held = ec2.emulator.hold('RunInstances', 'after');

    const first = await request(h.app).post('/instances').set('Idempotency-Key', 'late-answer-1').send(LAUNCH);

    await held.entered;
    const unknown = expectProblem(first, 504);
    assert.match(unknown.detail, /The outcome of the launch is not known/);
    assert.match(unknown.detail, /Retry with the same Idempotency-Key/);
    assert.equal((await allEc2Instances()).length, 1, 'EC2 did launch it');
    const quota = expectProblem(await request(h.app).post('/instances').send({ ...LAUNCH, name: 'other' }), 409);
    assert.match(quota.detail, /quota/);
    const [row] = await h.sql<{ launch_status: string; instance_id: string | null }>('SELECT launch_status, instance_id FROM instances');
    assert.deepEqual(row, { launch_status: 'unknown', instance_id: null });

    ec2.clock += 10_000; // EC2 shows it now
    held.release();
    const retried = await request(h.app).post('/instances').set('Idempotency-Key', 'late-answer-1').send(LAUNCH);

    assert.equal(retried.status, 201, JSON.stringify(retried.body));
    const [only] = await allEc2Instances();
    assert.equal(retried.body.id, only.InstanceId);
    assert.equal(ec2.emulator.stats.launched, 1, 'run-instances reached EC2 once');
    assert.equal((await h.records.instances.findByInstanceId(only.InstanceId))?.launch_status, 'launched');
  });

  it('when EC2 refuses a stop with IncorrectInstanceState, then the stop answers 409 with EC2\'s words and the record keeps the state EC2 shows', async () => {
    await ec2.start({ manual: true });
    h = await harness();
    const client = ec2ClientFor(ec2.emulator.endpoint);
    const launched = await client.send(new RunInstancesCommand({
      ImageId: UBUNTU_X86_AMI, InstanceType: 't3.micro', MinCount: 1, MaxCount: 1, KeyName: TEST_KEY_NAME,
      TagSpecifications: [{ ResourceType: 'instance', Tags: [{ Key: 'Name', Value: 'elsewhere' }, { Key: 'ManagedBy', Value: 'ec2-creator' }] }],
    }));
    client.destroy();
    const id = launched.Instances?.[0]?.InstanceId as string;
    ec2.clock += 4_000; // shown, still pending
    assert.equal((await request(h.app).post('/instances/sync')).body.imported, 1);

    const refused = expectProblem(await request(h.app).post(`/instances/${id}/stop`), 409);

    assert.equal(refused.type, 'urn:ec2-creator:problem:incorrect-state');
    assert.match(refused.detail, new RegExp(`EC2 refused to stop ${id}: This instance '${id}' is not in a state from which it can be stopped\\.`));
    assert.equal((await h.records.instances.findByInstanceId(id))?.state, 'pending');
    const [op] = (await request(h.app).get(`/operations?instance_id=${id}&kind=stop`)).body.operations;
    assert.equal(op.error_code, 'incorrect-state');
    assert.equal(ec2.emulator.stateOf(id), 'pending');
  });
});

describe('the service on realistic EC2: a server killed mid-launch', function () {
  this.timeout(240_000);
  const ec2 = useEmulator();
  const ws = useServerWorkspace('realistic');

  it('when the server is SIGKILLed while EC2 holds the answer to its launch, then after the restart a retry with the same Idempotency-Key answers with that one instance, and the records equal EC2', async () => {
    await ec2.start(AWS_LIKE);
    const env = { AWS_ENDPOINT_URL: ec2.emulator.endpoint, POLL_INTERVAL_S: '1' };
    const first = await ws.start(env);
    const held = ec2.emulator.hold('RunInstances', 'after');
    const accepted = await postJson(`${first.url}/instances`, LAUNCH, { 'Idempotency-Key': 'killed-1', Prefer: 'respond-async' });
    assert.equal(accepted.status, 202, JSON.stringify(accepted.body));
    await held.entered;

    process.kill(first.pid, 'SIGKILL');
    await first.exited;
    held.release();
    const second = await ws.start(env);
    await second.waitForLog('start-up recovery', (l) => l.message === 'start-up recovery done', 120_000);
    const retried = await postJson(`${second.url}/instances`, LAUNCH, { 'Idempotency-Key': 'killed-1' });

    assert.ok(retried.status === 201 || retried.status === 200, JSON.stringify(retried.body));
    const instances = await allEc2Instances();
    assert.deepEqual(instances.map((i) => i.InstanceId), [retried.body.id], 'one instance for the one request');
    assert.equal(ec2.emulator.stats.launched, 1, 'launched once: a repeated launch answered the first (ClientToken)');
    const listed = (await getJson(`${second.url}/instances`)).body.instances;
    assert.deepEqual(listed.map((i: any) => i.id), [retried.body.id]);
    await until('EC2 shows it running', () => ec2.emulator.stateOf(retried.body.id) === 'running');
    assert.equal((await getJson(`${second.url}/instances/${retried.body.id}`)).body.state, 'running');
  });
});

describe('the service on realistic EC2: a field run with AWS-like timing and throttling', function () {
  this.timeout(600_000);
  const ec2 = useEmulator();
  let h: Harness;

  beforeEach(freshEc2);
  afterEach(() => h?.close());

  it('when creates, stops, starts, deletes and syncs meet instances in transition, then every answer is 2xx or a 409, each create has one instance, and the records equal EC2', async () => {
    await ec2.start(AWS_LIKE);
    h = await createHarnessOn('sqlite', { env: { AWS_ENDPOINT_URL: ec2.emulator.endpoint }, config: { pollIntervalS: 1 } });
    const answers: Array<{ what: string; status: number; body: unknown }> = [];
    const api = async (what: string, call: request.Test): Promise<request.Response> => {
      const response = await call;
      answers.push({ what, status: response.status, body: response.body });
      return response;
    };
    const opDone = (id: string) => until(`operation ${id} finished`, async () =>
      ['succeeded', 'failed', 'interrupted'].includes((await h.records.operations.get(id))?.status ?? ''), 300_000);

    // One create waits for its answer, one is followed by its operation; both meet changes while pending.
    const syncCreate = api('sync create', request(h.app).post('/instances').send({ ...LAUNCH, name: 'sync-create' }));
    const asyncCreate = await api('async create', request(h.app).post('/instances').set('Prefer', 'respond-async').send({ ...LAUNCH, name: 'async-create' }));
    assert.equal(asyncCreate.status, 202);
    await until('EC2 named the asynchronous launch', async () => (await h.records.operations.get(asyncCreate.body.id))?.instance_id != null);
    const b = (await h.records.operations.get(asyncCreate.body.id))?.instance_id as string;
    await api('stop while pending', request(h.app).post(`/instances/${b}/stop`));
    await api('delete while pending', request(h.app).delete(`/instances/${b}`));
    await api('sync during launches', request(h.app).post('/instances/sync'));
    const a = (await syncCreate).body.id as string;
    await opDone(asyncCreate.body.id);

    const stopping = await api('async stop', request(h.app).post(`/instances/${a}/stop`).set('Prefer', 'respond-async'));
    await api('start while stopping', request(h.app).post(`/instances/${a}/start`));
    await api('sync while stopping', request(h.app).post('/instances/sync'));
    await opDone(stopping.body.id);
    await api('start after the stop', request(h.app).post(`/instances/${a}/start`));
    await api('delete after the launch', request(h.app).delete(`/instances/${b}`));
    await api('sync at the end', request(h.app).post('/instances/sync'));

    const unexpected = answers.filter((r) => !(r.status < 300 || r.status === 409));
    assert.deepEqual(unexpected, [], 'every answer is 2xx or 409');
    for (const refused of answers.filter((r) => r.status === 409)) {
      assert.match((refused.body as any).detail, /still in flight|not in a state|does not show/, refused.what);
    }
    assert.ok(answers.filter((r) => r.what.endsWith('while pending')).every((r) => r.status === 409), 'a change during the launch waits for it');
    const instances = await allEc2Instances();
    assert.deepEqual(instances.map((i) => tagOf(i, 'Name')).sort(), ['async-create', 'sync-create'], 'one instance per create');
    await until('EC2 has settled', () => [a, b].every((id) => !['pending', 'stopping', 'shutting-down'].includes(ec2.emulator.stateOf(id) ?? '')), 120_000);
    await api('sync once EC2 settled', request(h.app).post('/instances/sync'));
    const recorded = (await request(h.app).get('/instances?include_terminated=true')).body.instances;
    const inEc2 = await allEc2Instances();
    assert.deepEqual(
      recorded.map((i: any) => [i.id, i.state]).sort(),
      inEc2.map((i) => [i.InstanceId, i.State?.Name]).sort(),
      'the records say what EC2 says',
    );
    assert.ok(ec2.emulator.stats.throttled > 0, 'AWS throttled some calls');
    assert.deepEqual(answers.filter((r) => r.status >= 500), []);
  });
});
