/**
 * Reconciliation: POST /instances/sync reads EC2 once (list_instances.sh) and brings the records
 * in line: instances launched outside the API are imported, states changed behind our back are updated,
 * instances EC2 forgot are marked terminated. Concurrent syncs share one run. Plus the operations list.
 */
import { TerminateInstancesCommand } from '@aws-sdk/client-ec2';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import request from 'supertest';
import { resetMoto } from '../support/global-fixture.js';
import { TEST_KEY_NAME, UBUNTU_X86_AMI, allEc2Instances, createKeyPair, ec2Client, ec2InstanceById } from '../support/ec2-reader.js';
import { createHarnessOn, expectProblem, launchedLongAgo, realScriptsDir, storeKinds, type Harness } from '../support/app-harness.js';
import { markers, until } from '../support/lifecycle.js';
import { fakeAwsEnv } from '../support/fake-aws.js';

for (const kind of storeKinds()) describe(`reconciliation and the operations list (${kind})`, function () {
  this.timeout(120_000);
  const harnesses: Harness[] = [];
  let gate: string;

  beforeEach(async () => {
    await resetMoto();
    await createKeyPair();
    gate = mkdtempSync(path.join(tmpdir(), 'ec2-creator-sync-'));
  });
  afterEach(() => {
    writeFileSync(path.join(gate, 'release'), '');
    for (const h of harnesses.splice(0)) h.close({ keepFiles: true });
    rmSync(gate, { recursive: true, force: true });
  });

  async function harness(options: Parameters<typeof createHarnessOn>[1] = {}): Promise<Harness> {
    const h = await createHarnessOn(kind, options);
    harnesses.push(h);
    return h;
  }

  async function launch(h: Harness, name: string): Promise<string> {
    const response = await request(h.app).post('/instances').send({ name, ami: UBUNTU_X86_AMI, instance_type: 't3.micro', storage_gb: 8 });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    return response.body.id as string;
  }

  it('when an instance was created by create_instance.sh directly and another terminated with the aws CLI, then sync imports the first and marks the second terminated', async () => {
    const h = await harness();
    const kept = await launch(h, 'kept');
    const doomed = await launch(h, 'doomed');
    const direct = JSON.parse(execFileSync(path.join(realScriptsDir, 'create_instance.sh'), ['--', 'by-hand', UBUNTU_X86_AMI, 't3.micro', '8'], {
      env: { ...process.env, KEY_NAME: TEST_KEY_NAME },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    })) as { id: string };
    await ec2Client().send(new TerminateInstancesCommand({ InstanceIds: [doomed] }));
    assert.equal((await request(h.app).get('/instances')).body.instances.some((i: any) => i.id === direct.id), false);

    const response = await request(h.app).post('/instances/sync').set('X-Request-Id', 'sync-1');

    assert.equal(response.status, 200, JSON.stringify(response.body));
    assert.equal(response.body.imported, 1);
    assert.equal(response.body.vanished, 0);
    assert.ok(response.body.updated >= 1, 'at least the terminated one changed');
    assert.match(response.body.operation_id, /^op-/);
    const imported = await h.records.instances.findByInstanceId(direct.id);
    assert.equal(imported?.name, 'by-hand');
    assert.equal(imported?.launch_status, 'launched');
    assert.equal(imported?.login_user, 'ubuntu');
    assert.equal(imported?.key_name, TEST_KEY_NAME);
    assert.equal((await h.records.instances.findByInstanceId(doomed))?.state, 'terminated');
    assert.equal((await ec2InstanceById(doomed)).State.Name, 'terminated');
    assert.equal((await h.records.instances.findByInstanceId(kept))?.state, (await ec2InstanceById(kept)).State.Name);
    const listed = await request(h.app).get('/instances');
    assert.deepEqual(listed.body.instances.map((i: any) => i.id).sort(), [kept, direct.id].sort());
    assert.equal((await allEc2Instances()).length, 3);
    const op = (await request(h.app).get(`/operations/${response.body.operation_id}`)).body;
    assert.equal(op.kind, 'sync');
    assert.equal(op.status, 'succeeded');
    assert.equal(op.request_id, 'sync-1');
    assert.deepEqual(op.result, { updated: response.body.updated, imported: 1, vanished: 0, unconfirmed: 0 });
    assert.ok(h.logs.some((l) => l.message === 'reconciliation imported an instance launched outside the API' && l.instance_id === direct.id));

    const again = await request(h.app).post('/instances/sync');
    assert.equal(again.status, 200);
    assert.deepEqual({ ...again.body, operation_id: undefined }, { updated: 0, imported: 0, vanished: 0, unconfirmed: 0, operation_id: undefined });
  });

  it('when two syncs arrive together, then they share one run of list_instances.sh; when EC2 forgot an instance, then it is counted vanished', async () => {
    const launcher = await harness();
    const id = await launch(launcher, 'forgotten');
    await launchedLongAgo(launcher, id);
    const h = await harness({
      databaseUrl: launcher.databaseUrl,
      env: fakeAwsEnv({ FAKE_AWS_GATE_OP: 'describe-instances', FAKE_AWS_GATE_DIR: gate }),
    });

    const first = request(h.app).post('/instances/sync').then((r) => r);
    await until('the first sync is reading EC2', () => markers(gate, 'entered').length === 1);
    const second = request(h.app).post('/instances/sync').then((r) => r);
    await until('the second sync joined the first', () => h.logs.some((l) => l.message === 'sync joined the one in flight'));
    const asyncJoin = await request(h.app).post('/instances/sync').set('Prefer', 'respond-async');
    assert.equal(asyncJoin.status, 202);
    await resetMoto(); // EC2 forgets the instance while the (held) sync reads it
    writeFileSync(path.join(gate, 'release'), '');
    const [a, b] = await Promise.all([first, second]);

    assert.equal(a.status, 200, JSON.stringify(a.body));
    assert.deepEqual(b.body, a.body, 'one answer for both');
    assert.equal(asyncJoin.body.id, a.body.operation_id);
    assert.deepEqual({ updated: a.body.updated, imported: a.body.imported, vanished: a.body.vanished }, { updated: 0, imported: 0, vanished: 1 });
    assert.equal(h.runs.filter((r) => r.script === 'list_instances.sh').length, 1, 'EC2 was read once');
    const forgotten = await h.records.instances.findByInstanceId(id);
    assert.equal(forgotten?.state, 'terminated');
    assert.match(forgotten?.last_error ?? '', /vanished/);
    assert.equal(await ec2InstanceById(id), undefined);
    assert.equal((await h.records.operations.list({ kind: 'sync', limit: 10 })).length, 1);
  });

  it('when operations are listed, then newest first with filters (kind, status, instance, actor, client address) and a cursor', async () => {
    const h = await harness();
    const id = await launch(h, 'listed');
    await request(h.app).post(`/instances/${id}/stop`).expect(200);
    const byAlice = await h.services.operations.submit({ kind: 'sync', capped: false, ctx: { actor: 'alice', clientAddress: '203.0.113.7' }, run: async () => 0 });
    assert.equal(byAlice.type, 'started');
    if (byAlice.type === 'started') await byAlice.done;

    const all = await request(h.app).get('/operations');
    assert.equal(all.status, 200);
    assert.deepEqual(all.body.operations.map((o: any) => o.kind), ['sync', 'stop', 'create']);
    const mine = all.body.operations[1];
    assert.ok(mine.client_address, 'the client address is recorded');
    assert.equal(mine.actor, null);
    const byAddress = await request(h.app).get(`/operations?client_address=${encodeURIComponent(mine.client_address)}`);
    assert.deepEqual(byAddress.body.operations.map((o: any) => o.kind), ['stop', 'create']);
    const byActor = await request(h.app).get('/operations?actor=alice');
    assert.deepEqual(byActor.body.operations.map((o: any) => [o.kind, o.client_address]), [['sync', '203.0.113.7']]);
    const stops = await request(h.app).get(`/operations?instance_id=${id}&kind=stop&status=succeeded`);
    assert.equal(stops.body.operations.length, 1);
    const page1 = await request(h.app).get('/operations?limit=2');
    assert.equal(page1.body.operations.length, 2);
    const page2 = await request(h.app).get(`/operations?limit=2&cursor=${page1.body.next_cursor}`);
    assert.deepEqual(page2.body.operations.map((o: any) => o.kind), ['create']);
    assert.equal(page2.body.next_cursor, null);
    expectProblem(await request(h.app).get('/operations?status=bogus'), 400);
    expectProblem(await request(h.app).get('/operations/op-nope'), 400);
    expectProblem(await request(h.app).get('/operations/op-00000000-0000-4000-8000-000000000000'), 404);
    expectProblem(await request(h.app).get('/instances/sync'), 405);
  });
});
