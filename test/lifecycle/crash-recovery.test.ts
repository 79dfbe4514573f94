/**
 * Crash recovery: the real server as a child process, killed with SIGKILL in the middle of a
 * launch, then restarted on the same database. A fake `aws` in front of moto holds the launch at a chosen
 * point; the tests wait on its marker files (events), never on durations.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { resetMoto } from '../support/global-fixture.js';
import { UBUNTU_X86_AMI, allEc2Instances, createKeyPair } from '../support/ec2-reader.js';
import {
  captured, getJson, killGroup, markers, postJson, readRows, until,
} from '../support/lifecycle.js';
import { startServerProcess, type ServerProcess } from '../support/server-process.js';
import { fakeAwsEnv } from '../support/fake-aws.js';

const LAUNCH = { name: 'crash-1', ami: UBUNTU_X86_AMI, instance_type: 't3.micro', storage_gb: 8 };

function tag(instance: any, key: string): string | undefined {
  return (instance.Tags ?? []).find((t: any) => t.Key === key)?.Value;
}

describe('crash recovery: SIGKILL during a launch, then a restart', function () {
  this.timeout(180_000);
  let dir: string;
  let servers: ServerProcess[] = [];
  let orphanGroups: number[] = [];

  beforeEach(async () => {
    await resetMoto();
    await createKeyPair();
    dir = mkdtempSync(path.join(tmpdir(), 'ec2-creator-crash-'));
    servers = [];
    orphanGroups = [];
  });
  afterEach(() => {
    for (const server of servers) server.child.kill('SIGKILL');
    for (const group of orphanGroups) killGroup(group);
    rmSync(dir, { recursive: true, force: true });
  });

  async function start(env: Record<string, string>): Promise<ServerProcess> {
    const server = await startServerProcess(env);
    servers.push(server);
    return server;
  }

  /** SIGKILL the server; the script it ran dies with the machine too (its own process group). */
  async function crash(server: ServerProcess, scriptGroup: number): Promise<void> {
    process.kill(server.pid, 'SIGKILL');
    const { signal } = await server.exited;
    assert.equal(signal, 'SIGKILL');
    orphanGroups.push(scriptGroup);
    killGroup(scriptGroup);
  }

  it('when the server is SIGKILLed after EC2 accepted a launch, then after the restart there is exactly one instance and one record, and the operation is interrupted then reconciled', async () => {
    const database = path.join(dir, 'instances.db');
    const hold = path.join(dir, 'hold');
    mkdirSync(hold);
    const capture = path.join(dir, 'aws-calls');
    const first = await start({
      DATABASE_URL: database,
      ...fakeAwsEnv({ FAKE_AWS_HOLD_AFTER_OP: 'run-instances', FAKE_AWS_HOLD_DIR: hold, FAKE_AWS_CAPTURE_FILE: capture }),
    });

    const pending = postJson(`${first.url}/instances`, LAUNCH, { 'X-Request-Id': 'crash-create' }).catch((error: unknown) => error);
    await until('EC2 accepted the launch (the fake answered nothing yet)', () => markers(hold, 'done').length === 1);
    const running = await getJson(`${first.url}/operations?kind=create`);
    assert.equal(running.body.operations.length, 1);
    const op = running.body.operations[0];
    assert.equal(op.status, 'running');
    assert.match(op.client_token, /^ec2c-/);
    await crash(first, Number(markers(hold, 'done')[0]?.text));
    assert.ok((await pending) instanceof Error, 'the client lost its connection');
    assert.equal((await allEc2Instances()).length, 1, 'EC2 has the instance the dead server never recorded');

    const second = await start({ DATABASE_URL: database, ...fakeAwsEnv({ FAKE_AWS_CAPTURE_FILE: capture }) });
    await until('the interrupted operation is reconciled', async () =>
      /reconciled at start-up/.test((await getJson(`${second.url}/operations/${op.id}`)).body.note ?? ''));

    const ec2 = await allEc2Instances();
    assert.equal(ec2.length, 1, 'exactly one instance in EC2');
    assert.equal(tag(ec2[0], 'ec2-creator:client-token'), op.client_token);
    const after = (await getJson(`${second.url}/operations/${op.id}`)).body;
    assert.equal(after.status, 'interrupted');
    assert.equal(after.instance_id, ec2[0].InstanceId);
    assert.match(after.note, /found by its client token/);
    assert.equal(after.request_id, 'crash-create');
    const listed = await getJson(`${second.url}/instances`);
    assert.deepEqual(listed.body.instances.map((i: any) => i.id), [ec2[0].InstanceId]);
    assert.equal(listed.body.instances[0].name, 'crash-1');
    const rows = readRows<{ instance_id: string; launch_status: string; client_token: string }>(database, 'SELECT * FROM instances');
    assert.equal(rows.length, 1, 'exactly one record');
    assert.equal(rows[0]?.instance_id, ec2[0].InstanceId);
    assert.equal(rows[0]?.launch_status, 'launched');
    assert.equal(captured(capture).filter((c) => c.operation === 'run-instances').length, 1, 'launched once, never again');
    const syncs = (await getJson(`${second.url}/operations?kind=sync`)).body.operations;
    assert.equal(syncs.length, 1);
    assert.equal(syncs[0].status, 'succeeded');
    assert.equal(syncs[0].request_id, 'startup');
    assert.ok(second.logs.some((l) => l.message === 'operations left unfinished by the previous process are interrupted'));
  });

  it('when a launch with an Idempotency-Key dies before reaching EC2, then the retry after the restart launches once with the same client token', async () => {
    const database = path.join(dir, 'instances.db');
    const gate = path.join(dir, 'gate');
    mkdirSync(gate);
    const capture = path.join(dir, 'aws-calls');
    const first = await start({
      DATABASE_URL: database,
      ...fakeAwsEnv({ FAKE_AWS_GATE_OP: 'run-instances', FAKE_AWS_GATE_DIR: gate, FAKE_AWS_CAPTURE_FILE: capture }),
    });
    const key = { 'Idempotency-Key': 'crash-retry-0001' };

    const pending = postJson(`${first.url}/instances`, LAUNCH, key).catch((error: unknown) => error);
    await until('the launch is held in front of EC2', () => markers(gate, 'entered').length === 1);
    await crash(first, Number(markers(gate, 'entered')[0]?.text));
    assert.ok((await pending) instanceof Error);
    assert.equal((await allEc2Instances()).length, 0, 'nothing reached EC2');

    const second = await start({ DATABASE_URL: database, ...fakeAwsEnv({ FAKE_AWS_CAPTURE_FILE: capture }) });
    const retried = await postJson(`${second.url}/instances`, LAUNCH, key);
    assert.equal(retried.status, 201, JSON.stringify(retried.body));
    const again = await postJson(`${second.url}/instances`, LAUNCH, key);
    assert.equal(again.status, 201);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(again.body, retried.body, 'the first result, replayed');
    const different = await postJson(`${second.url}/instances`, { ...LAUNCH, name: 'other' }, key);
    assert.equal(different.status, 422, JSON.stringify(different.body));

    const ec2 = await allEc2Instances();
    assert.equal(ec2.length, 1, 'one instance');
    assert.equal(ec2[0].InstanceId, retried.body.id);
    const launches = captured(capture).filter((c) => c.operation === 'run-instances');
    assert.equal(launches.length, 2, 'the killed attempt and the retry');
    assert.match(launches[0]?.token ?? '', /^idem-[A-Za-z0-9_-]{43}$/);
    assert.equal(launches[1]?.token, launches[0]?.token, 'the same client token every time');
    assert.equal(tag(ec2[0], 'ec2-creator:client-token'), launches[0]?.token);
    const ops = (await getJson(`${second.url}/operations?kind=create`)).body.operations;
    assert.deepEqual(ops.map((o: any) => o.status), ['succeeded', 'interrupted'], 'newest first');
    assert.equal(ops[0].idempotency_key, 'crash-retry-0001');
    assert.equal(ops[1].idempotency_key, 'crash-retry-0001');
    assert.equal(readRows(database, 'SELECT * FROM instances').length, 1);
  });
});
