/**
 * The real server on PostgreSQL: DATABASE_URL=postgres://… against a PostgreSQL started from the machine's
 * binaries, the real scripts and CLI against moto. What it records is read from PostgreSQL directly, and
 * what EC2 has through the emulator's own client, never through the server under test.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { pgRows as rows, usePostgresServers } from '../support/postgres.js';
import { UBUNTU_X86_AMI, allEc2Instances, ec2InstanceById } from '../support/ec2-reader.js';
import { fakeAwsEnv } from '../support/fake-aws.js';
import { captured, getJson, markers, postJson, until } from '../support/lifecycle.js';

describe('the server on PostgreSQL', function () {
  this.timeout(180_000);
  const pgs = usePostgresServers('server');
  const start = (env: Record<string, string> = {}) => pgs.start(env);

  it('when a launch, a stop and a terminate go through a server on PostgreSQL, then each is recorded there and EC2 follows', async () => {
    const server = await start();
    const created = await postJson(`${server.url}/instances`, { name: 'pg-web', ami: UBUNTU_X86_AMI, instance_type: 't3.micro', storage_gb: 8 });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const id = created.body.id as string;
    const stopped = await postJson(`${server.url}/instances/${id}/stop`);
    assert.equal(stopped.status, 200, JSON.stringify(stopped.body));
    assert.equal(stopped.body.state, 'stopped');
    assert.equal((await ec2InstanceById(id)).State?.Name, 'stopped');
    const destroyed = await getJson(`${server.url}/instances/${id}`, { method: 'DELETE' });
    assert.equal(destroyed.status, 204);

    const [record] = await rows<{ name: string; state: string; launch_status: string }>(pgs.url,
      'SELECT name, state, launch_status FROM instances WHERE instance_id = $1', [id]);
    assert.deepEqual(record, { name: 'pg-web', state: 'terminated', launch_status: 'launched' });
    const operations = await rows<{ kind: string; status: string }>(pgs.url, 'SELECT kind, status FROM operations ORDER BY row_id');
    assert.deepEqual(operations.filter((o) => o.kind !== 'sync'), [
      { kind: 'create', status: 'succeeded' }, { kind: 'stop', status: 'succeeded' }, { kind: 'terminate', status: 'succeeded' },
    ]);
    assert.equal((await ec2InstanceById(id)).State?.Name, 'terminated');
    assert.ok(server.logs.some((l) => l.message === 'listening' && typeof l.database === 'string' && l.database.startsWith('postgres://')));
    assert.equal((await getJson(`${server.url}/health/ready`)).status, 200);
  });

  it('when the server is SIGKILLed after EC2 accepted a launch, then a restart on the same PostgreSQL database records exactly one instance and launches nothing again', async () => {
    const hold = path.join(pgs.dir, 'hold');
    mkdirSync(hold);
    const capture = path.join(pgs.dir, 'aws-calls');
    const first = await start(fakeAwsEnv({ FAKE_AWS_HOLD_AFTER_OP: 'run-instances', FAKE_AWS_HOLD_DIR: hold, FAKE_AWS_CAPTURE_FILE: capture }));
    const pending = postJson(`${first.url}/instances`, { name: 'pg-crash', ami: UBUNTU_X86_AMI, instance_type: 't3.micro', storage_gb: 8 })
      .catch((error: unknown) => error);
    await until('EC2 accepted the launch (the fake answered nothing yet)', () => markers(hold, 'done').length === 1);
    const [op] = await rows<{ id: string; status: string }>(pgs.url, "SELECT id, status FROM operations WHERE kind = 'create'");
    assert.equal(op?.status, 'running');
    await pgs.killWithScript(first, hold, 'done');
    assert.ok((await pending) instanceof Error, 'the client lost its connection');

    // The restart finds the dead server's registration on this machine with its process gone: its work is taken over at once.
    const second = await start(fakeAwsEnv({ FAKE_AWS_CAPTURE_FILE: capture }));
    await until('the interrupted launch is reconciled', async () =>
      /reconciled at start-up/.test((await getJson(`${second.url}/operations/${op?.id}`)).body.note ?? ''));

    const ec2 = await allEc2Instances();
    assert.equal(ec2.length, 1);
    const records = await rows<{ instance_id: string; launch_status: string }>(pgs.url, 'SELECT instance_id, launch_status FROM instances');
    assert.deepEqual(records, [{ instance_id: ec2[0]?.InstanceId, launch_status: 'launched' }]);
    const [after] = await rows<{ status: string; instance_id: string }>(pgs.url, 'SELECT status, instance_id FROM operations WHERE id = $1', [op?.id]);
    assert.deepEqual(after, { status: 'interrupted', instance_id: ec2[0]?.InstanceId });
    assert.equal(captured(capture).filter((c) => c.operation === 'run-instances').length, 1, 'launched once, never again');
  });
});
