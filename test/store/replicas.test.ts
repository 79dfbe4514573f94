/**
 * Several replicas on one PostgreSQL: real server processes sharing a database started from the machine's
 * binaries, the real scripts and CLI against moto (a fake aws in front of it only where a step must be held
 * or counted). The guarantees that used to live in one server's memory must hold between servers.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pgRows as rows, usePostgresServers } from '../support/postgres.js';
import { UBUNTU_X86_AMI, allEc2Instances } from '../support/ec2-reader.js';
import { fakeAwsEnv } from '../support/fake-aws.js';
import { captured, getJson, markers, postJson, until } from '../support/lifecycle.js';
import type { ServerProcess } from '../support/server-process.js';
import { openSse } from '../support/sse.js';

const launch = (name: string) => ({ name, ami: UBUNTU_X86_AMI, instance_type: 't3.micro', storage_gb: 8 });

describe('several replicas on one PostgreSQL', function () {
  this.timeout(240_000);
  const pgs = usePostgresServers('replicas');

  const replica = (env: Record<string, string> = {}): Promise<ServerProcess> => pgs.start({ LEASE_TIMEOUT_S: '3', ...env });

  it('when an instance is created on replica A, then replica B lists it, reads it, can stop it, and B\'s event stream tells of both', async () => {
    const [a, b] = await Promise.all([replica(), replica()]);
    const watching = await openSse(`${b.url}/events`);
    await watching.next('B\'s stream is open', (f) => f.event === 'stream.ready');
    const created = await postJson(`${a.url}/instances`, launch('shared-1'));
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const listed = await getJson(`${b.url}/instances`);
    assert.deepEqual(listed.body.instances.map((i: any) => i.id), [created.body.id]);
    assert.equal((await getJson(`${b.url}/instances/${created.body.id}`)).body.name, 'shared-1');
    const stopped = await postJson(`${b.url}/instances/${created.body.id}/stop`);
    assert.equal(stopped.status, 200, JSON.stringify(stopped.body));
    const changes = await watching.next('B\'s event stream tells of the stop it ran', (f) => f.event === 'operation.succeeded' && f.data.operation.kind === 'stop');
    assert.equal(changes.data.operation.instance_id, created.body.id);
    const fromA = watching.frames.find((f) => f.event === 'instance.created');
    assert.equal(fromA?.data.instance.id, created.body.id, 'the create recorded by A reached B\'s stream');
    const owners = await rows<{ kind: string; owner: string }>(pgs.url, "SELECT kind, owner FROM operations WHERE kind <> 'sync' ORDER BY row_id");
    assert.equal(owners.length, 2);
    assert.notEqual(owners[0]?.owner, owners[1]?.owner, 'each operation names the replica that ran it');
    watching.close();
  });

  it('when stops of one instance reach replica A and replica B at once, then one runs and the other gets 409 naming it', async () => {
    const gate = path.join(pgs.dir, 'gate');
    const plain = await replica();
    const created = await postJson(`${plain.url}/instances`, launch('contended'));
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const id = created.body.id as string;
    const a = await replica(fakeAwsEnv({ FAKE_AWS_GATE_OP: 'stop-instances', FAKE_AWS_GATE_DIR: gate }));

    const first = postJson(`${a.url}/instances/${id}/stop`);
    await until('A\'s stop is held in front of EC2', () => markers(gate, 'entered').length === 1);
    const second = await postJson(`${plain.url}/instances/${id}/stop`);
    assert.equal(second.status, 409, JSON.stringify(second.body));
    const [running] = await rows<{ id: string }>(pgs.url, "SELECT id FROM operations WHERE kind = 'stop' AND status = 'running'");
    assert.ok(running);
    assert.match(second.body.detail, new RegExp(`Operation ${running.id} on instance ${id} is still in flight`));

    writeFileSync(path.join(gate, 'release'), '');
    assert.equal((await first).status, 200);
    assert.equal((await rows(pgs.url, "SELECT id FROM operations WHERE kind = 'stop'")).length, 1, 'the refused stop recorded nothing');
  });

  it('when 15 creates are sent at once across three replicas, then no more than MAX_INSTANCES are launched and the rest get 409', async () => {
    const limits = { MAX_INSTANCES: '3', RATE_LIMIT_PER_MINUTE: '0' };
    const replicas = await Promise.all([replica(limits), replica(limits), replica(limits)]);
    const answers = await Promise.all(Array.from({ length: 15 }, (_, i) =>
      postJson(`${(replicas[i % 3] as ServerProcess).url}/instances`, launch(`burst-${i}`))));
    const statuses = answers.map((a) => a.status).sort();
    assert.deepEqual(statuses, [...Array(3).fill(201), ...Array(12).fill(409)], JSON.stringify(answers.map((a) => a.body)));
    for (const refused of answers.filter((a) => a.status === 409)) assert.match(refused.body.detail, /MAX_INSTANCES|quota|instances/i);
    assert.equal((await allEc2Instances()).length, 3);
    assert.equal((await rows(pgs.url, 'SELECT row_id FROM instances')).length, 3);
  });

  it('when the same Idempotency-Key reaches replica A and replica B, then the instance is launched once', async () => {
    const capture = path.join(pgs.dir, 'aws-calls');
    const counted = fakeAwsEnv({ FAKE_AWS_CAPTURE_FILE: capture });
    const [a, b] = await Promise.all([replica(counted), replica(counted)]);
    const key = { 'Idempotency-Key': 'across-replicas-1' };
    const answers = await Promise.all([postJson(`${a.url}/instances`, launch('once'), key), postJson(`${b.url}/instances`, launch('once'), key)]);
    assert.ok(answers.some((x) => x.status === 201), JSON.stringify(answers.map((x) => [x.status, x.body])));
    for (const answer of answers) assert.ok([201, 409].includes(answer.status), JSON.stringify(answer.body));
    const again = await postJson(`${b.url}/instances`, launch('once'), key);
    assert.equal(again.status, 201);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.equal((await allEc2Instances()).length, 1);
    assert.equal(captured(capture).filter((c) => c.operation === 'run-instances').length, 1, 'run-instances once');
    assert.equal((await rows(pgs.url, "SELECT id FROM operations WHERE kind = 'create'")).length, 1);
  });

  it('when replica A\'s script slots are busy and B\'s are free, then B runs what A queued and A\'s clients get the answers B recorded', async () => {
    const gate = path.join(pgs.dir, 'queue-gate');
    mkdirSync(gate);
    const b = await replica();
    const a = await replica({ MAX_CONCURRENT_SCRIPTS: '1', ...fakeAwsEnv({ FAKE_AWS_GATE_OP: 'run-instances', FAKE_AWS_GATE_DIR: gate }) });
    const held = postJson(`${a.url}/instances`, launch('held-on-a'));
    await until('A\'s launch holds its only script slot in front of EC2', () => markers(gate, 'entered').length === 1);

    const key = { 'Idempotency-Key': 'queued-on-a-1' };
    const queued = await postJson(`${a.url}/instances`, launch('queued-on-a'), key);
    assert.equal(queued.status, 201, JSON.stringify(queued.body));
    assert.equal(queued.body.name, 'queued-on-a');
    const refused = await postJson(`${a.url}/instances`, { ...launch('no-such-image'), ami: 'ami-00000000000000000' });
    assert.equal(refused.status, 422, JSON.stringify(refused.body));
    assert.equal(refused.headers.get('content-type'), 'application/problem+json; charset=utf-8');
    assert.deepEqual(refused.body.errors.map((e: any) => e.field), ['ami'], 'the failing field survives the trip through the record');
    assert.equal(refused.body.instance, '/instances');

    const ops = await rows<{ name: string; owner: string; status: string; request_id: string }>(pgs.url,
      "SELECT request::json->>'name' AS name, owner, status, request_id FROM operations WHERE kind = 'create' ORDER BY row_id");
    assert.deepEqual(ops.map((op) => [op.name, op.status]), [['held-on-a', 'running'], ['queued-on-a', 'succeeded'], ['no-such-image', 'failed']]);
    const [first, second, third] = ops;
    assert.notEqual(second?.owner, first?.owner, 'B ran the operation A queued');
    assert.equal(third?.owner, second?.owner);
    assert.deepEqual((await allEc2Instances()).map((i) => i.InstanceId), [queued.body.id], 'A\'s own launch is still held');
    assert.ok(b.logs.some((l) => l.message === 'took an operation another server queued' && l.request_id === second?.request_id));

    const replay = await postJson(`${a.url}/instances`, launch('queued-on-a'), key);
    assert.equal(replay.status, 201);
    assert.equal(replay.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(replay.body, queued.body, 'the answer B remembered is the one A gave');

    writeFileSync(path.join(gate, 'release'), '');
    assert.equal((await held).status, 201);
    assert.equal((await allEc2Instances()).length, 2);
  });

  it('when replica A is SIGKILLed with a launch still queued, then the next replica runs it: the 202 its client got is honoured, once', async () => {
    const gate = path.join(pgs.dir, 'dead-gate');
    mkdirSync(gate);
    const a = await replica({ MAX_CONCURRENT_SCRIPTS: '1', ...fakeAwsEnv({ FAKE_AWS_GATE_OP: 'run-instances', FAKE_AWS_GATE_DIR: gate }) });
    const held = postJson(`${a.url}/instances`, launch('running-on-a')).catch((error: unknown) => error);
    await until('A\'s launch holds its only script slot in front of EC2', () => markers(gate, 'entered').length === 1);
    const accepted = await postJson(`${a.url}/instances`, launch('queued-on-a'), { Prefer: 'respond-async' });
    assert.equal(accepted.status, 202, JSON.stringify(accepted.body));
    assert.equal(accepted.body.status, 'queued');

    await pgs.killWithScript(a, gate, 'entered'); // A's script, held before it called EC2: that launch never happened
    assert.ok((await held) instanceof Error, 'the synchronous client lost its connection');

    const b = await replica();
    await until('B has run the launch A had queued', async () =>
      (await getJson(`${b.url}/operations/${accepted.body.id}`)).body.status === 'succeeded');
    const queued = (await getJson(`${b.url}/operations/${accepted.body.id}`)).body;
    assert.equal(queued.result.name, 'queued-on-a');
    const ec2 = await allEc2Instances();
    assert.deepEqual(ec2.map((i) => i.InstanceId), [queued.instance_id], 'one instance: the queued launch, once');
    const [owner] = await rows<{ owner: string }>(pgs.url, 'SELECT owner FROM operations WHERE id = $1', [accepted.body.id]);
    assert.ok(b.logs.some((l) => l.message === 'took an operation another server queued' && l.operation_id === accepted.body.id));
    assert.equal(owner?.owner, b.logs.find((l) => l.message === 'listening')?.replica, 'B ran it');

    // The launch A was running never reached EC2, but EC2 may not show a launch at once: it stays unresolved
    // (counted) until EVENTUAL_CONSISTENCY_S has passed, never failed while EC2 may have it.
    await until('B has reconciled the launch A was running', async () =>
      /no instance carries its client token yet|had not started a launch/.test((await rows<{ note: string }>(pgs.url,
        "SELECT note FROM operations WHERE kind = 'create' AND id <> $1", [accepted.body.id]))[0]?.note ?? ''));
  });

  it('when replica A is SIGKILLed during a slow launch, then replica B takes it over after A\'s lease: one instance, one record, never launched twice', async () => {
    const hold = path.join(pgs.dir, 'hold');
    mkdirSync(hold);
    const capture = path.join(pgs.dir, 'aws-calls');
    const b = await replica(fakeAwsEnv({ FAKE_AWS_CAPTURE_FILE: capture }));
    const a = await replica(fakeAwsEnv({ FAKE_AWS_HOLD_AFTER_OP: 'run-instances', FAKE_AWS_HOLD_DIR: hold, FAKE_AWS_CAPTURE_FILE: capture }));
    const pending = postJson(`${a.url}/instances`, launch('taken-over')).catch((error: unknown) => error);
    await until('EC2 accepted A\'s launch (the fake answered nothing yet)', () => markers(hold, 'done').length === 1);
    const [op] = await rows<{ id: string; owner: string }>(pgs.url, "SELECT id, owner FROM operations WHERE kind = 'create'");
    await pgs.killWithScript(a, hold, 'done');
    assert.ok((await pending) instanceof Error, 'A\'s client lost its connection');

    await until('B has taken over and reconciled A\'s launch', async () =>
      /reconciled at start-up|found by its client token/.test((await getJson(`${b.url}/operations/${op?.id}`)).body.note ?? ''));
    const after = (await getJson(`${b.url}/operations/${op?.id}`)).body;
    assert.equal(after.status, 'interrupted');
    assert.match(after.note, /stopped renewing its lease/);
    const ec2 = await allEc2Instances();
    assert.equal(ec2.length, 1);
    assert.equal(after.instance_id, ec2[0]?.InstanceId);
    assert.deepEqual(await rows(pgs.url, 'SELECT instance_id, launch_status FROM instances'), [{ instance_id: ec2[0]?.InstanceId, launch_status: 'launched' }]);
    assert.equal(captured(capture).filter((c) => c.operation === 'run-instances').length, 1, 'launched once, never again');
    assert.deepEqual(await rows(pgs.url, 'SELECT id FROM replicas WHERE id = $1', [op?.owner]), [], 'the dead replica is gone from the table');
    assert.ok(b.logs.some((l) => l.message === 'replicas stopped renewing their lease; taking over their operations'));
  });
});
