/**
 * Idempotency-Key: the same key with the same request answers the first result, launches once
 * (also across a restart of the app on the same database) and always hands EC2 the same client token, as
 * a capturing fake `aws` in front of moto shows; the same key with another request is refused (422).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import request from 'supertest';
import { clientTokenForKey } from '../../app/domain/lifecycle.js';
import { resetMoto } from '../support/global-fixture.js';
import { UBUNTU_X86_AMI, allEc2Instances, createKeyPair, ec2InstanceById } from '../support/ec2-reader.js';
import { createHarnessOn, expectProblem, storeKinds, type Harness } from '../support/app-harness.js';
import { captured, markers, until } from '../support/lifecycle.js';
import { fakeAwsEnv } from '../support/fake-aws.js';

const LAUNCH = { name: 'idem-1', ami: UBUNTU_X86_AMI, instance_type: 't3.micro', storage_gb: 8 };

for (const kind of storeKinds()) describe(`Idempotency-Key (${kind})`, function () {
  this.timeout(120_000);
  let dir: string;
  let capture: string;
  let gate: string;
  const harnesses: Harness[] = [];

  beforeEach(async () => {
    await resetMoto();
    await createKeyPair();
    dir = mkdtempSync(path.join(tmpdir(), 'ec2-creator-idem-'));
    capture = path.join(dir, 'aws-calls');
    gate = dir;
  });
  afterEach(() => {
    writeFileSync(path.join(gate, 'release'), '');
    for (const h of harnesses.splice(0)) h.close({ keepFiles: true });
    rmSync(dir, { recursive: true, force: true });
  });

  async function harness(options: { databaseUrl?: string; gateOp?: string } = {}): Promise<Harness> {
    const extra: Record<string, string> = { FAKE_AWS_CAPTURE_FILE: capture };
    if (options.gateOp) Object.assign(extra, { FAKE_AWS_GATE_OP: options.gateOp, FAKE_AWS_GATE_DIR: gate });
    const h = await createHarnessOn(kind, {
      env: fakeAwsEnv(extra),
      databaseUrl: options.databaseUrl ?? (kind === 'sqlite' ? path.join(dir, 'instances.db') : undefined),
    });
    harnesses.push(h);
    return h;
  }

  const launches = () => captured(capture).filter((c) => c.operation === 'run-instances');

  it('when the same key is sent twice and again after a restart, then one launch, the first answer every time, and EC2 always got the same client token', async () => {
    const h = await harness();
    const first = await request(h.app).post('/instances').set('Idempotency-Key', 'launch-web-1').send(LAUNCH);
    assert.equal(first.status, 201, JSON.stringify(first.body));

    const second = await request(h.app).post('/instances').set('Idempotency-Key', 'launch-web-1').send(LAUNCH);

    assert.equal(second.status, 201);
    assert.deepEqual(second.body, first.body);
    assert.equal(second.headers.location, `/instances/${first.body.id}`);
    assert.equal(second.headers['idempotent-replayed'], 'true');
    assert.equal(second.headers['operation-id'], first.headers['operation-id']);

    h.close({ keepFiles: true });
    harnesses.splice(harnesses.indexOf(h), 1);
    const restarted = await harness({ databaseUrl: h.databaseUrl });
    // Key order and whitespace do not matter: the fingerprint is of the canonical body.
    const third = await request(restarted.app)
      .post('/instances')
      .set('Idempotency-Key', 'launch-web-1')
      .set('Content-Type', 'application/json')
      .send(JSON.stringify({ storage_gb: 8, instance_type: 't3.micro', ami: UBUNTU_X86_AMI, name: 'idem-1' }, null, 2));

    assert.equal(third.status, 201);
    assert.deepEqual(third.body, first.body);
    const ec2 = await allEc2Instances();
    assert.equal(ec2.length, 1, 'one launch');
    assert.equal(ec2[0].InstanceId, first.body.id);
    const tokens = launches().map((l) => l.token);
    assert.deepEqual(tokens, [clientTokenForKey('', 'launch-web-1')], 'run-instances was called once, with the derived token');
    assert.ok(tokens[0] && tokens[0].length <= 64);
    const row = await restarted.records.instances.findByInstanceId(first.body.id);
    assert.equal(row?.client_token, tokens[0]);
    const ops = await restarted.records.operations.list({ kind: 'create', limit: 10 });
    assert.equal(ops.length, 1, 'replays record no new operation');
    assert.equal(ops[0]?.idempotency_key, 'launch-web-1');
    assert.equal(ops[0]?.client_token, tokens[0]);
    assert.equal(ops[0]?.status, 'succeeded');

    const different = await request(restarted.app).post('/instances').set('Idempotency-Key', 'launch-web-1').send({ ...LAUNCH, storage_gb: 9 });

    const problem = expectProblem(different, 422);
    assert.equal(problem.type, 'urn:ec2-creator:problem:idempotency-key-reused');
    assert.equal((await allEc2Instances()).length, 1);
    assert.equal(launches().length, 1);
  });

  it('when a key is reused while its first request is in flight, then a synchronous retry gets 409 naming the operation and an asynchronous one 202 with it', async () => {
    const launcher = await harness();
    const created = await request(launcher.app).post('/instances').send(LAUNCH);
    assert.equal(created.status, 201);
    const id = created.body.id as string;
    const h = await harness({ databaseUrl: launcher.databaseUrl, gateOp: 'stop-instances' });

    const first = await request(h.app).post(`/instances/${id}/stop`).set('Idempotency-Key', 'stop-1').set('Prefer', 'respond-async');
    assert.equal(first.status, 202);
    await until('the stop is inside aws', () => markers(gate, 'entered').length === 1);

    const syncRetry = await request(h.app).post(`/instances/${id}/stop`).set('Idempotency-Key', 'stop-1');
    const asyncRetry = await request(h.app).post(`/instances/${id}/stop`).set('Idempotency-Key', 'stop-1').set('Prefer', 'respond-async');
    const otherRequest = await request(h.app).post(`/instances/${id}/start`).set('Idempotency-Key', 'stop-1');

    assert.equal(expectProblem(syncRetry, 409).operation_id, first.body.id);
    assert.equal(asyncRetry.status, 202);
    assert.equal(asyncRetry.body.id, first.body.id);
    assert.equal(asyncRetry.headers.location, `/operations/${first.body.id}`);
    expectProblem(otherRequest, 422);
    writeFileSync(path.join(gate, 'release'), '');
    await until('the stop finished', async () => (await h.records.operations.get(first.body.id))?.status === 'succeeded');
    const replay = await request(h.app).post(`/instances/${id}/stop`).set('Idempotency-Key', 'stop-1');
    assert.equal(replay.status, 200);
    assert.equal(replay.body.state, 'stopped');
    assert.equal(replay.headers['idempotent-replayed'], 'true');
    assert.equal((await ec2InstanceById(id)).State.Name, 'stopped');
    assert.equal((await h.records.operations.list({ kind: 'stop', limit: 10 })).length, 1, 'one stop operation');
    assert.equal(captured(capture).filter((c) => c.operation === 'stop-instances').length, 1);
  });

  it('when keys are older than IDEMPOTENCY_KEY_TTL_HOURS, then the purge deletes them and keeps younger ones', async () => {
    const h = await harness();
    const claim = (key: string) => h.records.idempotency.claim({ scope: '', key, fingerprint: 'f', operationId: `op-${key}` }, null);
    await claim('old');
    await claim('young');
    const longAgo = new Date(Date.now() - 25 * 3_600_000).toISOString();
    await h.sql("UPDATE idempotency_keys SET created_at = ? WHERE key = 'old'", longAgo);

    assert.equal(await h.services.operations.purgeIdempotencyKeys(), 1);

    assert.equal(await h.records.idempotency.find('', 'old'), undefined);
    assert.ok(await h.records.idempotency.find('', 'young'));
    assert.ok(h.logs.some((l) => l.message === 'idempotency keys purged' && l.purged === 1));
  });

  it('when the Idempotency-Key is empty, too long or not printable ASCII, then 400 and nothing is recorded', async () => {
    const h = await harness();
    for (const key of ['', 'x'.repeat(256), 'clé']) {
      const response = await request(h.app).post('/instances').set('Idempotency-Key', key).send(LAUNCH);
      const problem = expectProblem(response, 400);
      assert.equal(problem.errors[0].field, 'Idempotency-Key');
    }
    assert.equal((await h.records.operations.list({ limit: 10 })).length, 0);
    assert.equal(launches().length, 0);
    assert.equal((await allEc2Instances()).length, 0);
  });
});
