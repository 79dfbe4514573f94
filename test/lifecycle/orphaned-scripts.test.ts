/**
 * Scripts lead their own process group, so a create_instance.sh outlives a server killed with SIGKILL and
 * may still launch after the restart. The restart must find it (its process group is recorded on the
 * operation), wait for it within its time bound or kill it, and only then resolve the launch by its client
 * token. The real server runs as a child process; the fake aws holds run-instances until the test releases
 * it, and every wait is on a marker file, a log line or an answer.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { UBUNTU_X86_AMI, allEc2Instances } from '../support/ec2-reader.js';
import { captured, getJson, liveMembersOfGroup, markers, postJson, readRows, until } from '../support/lifecycle.js';
import { useServerWorkspace } from '../support/server-workspace.js';
import { fakeAwsEnv } from '../support/fake-aws.js';

const LAUNCH = { name: 'orphan-1', ami: UBUNTU_X86_AMI, instance_type: 't3.micro', storage_gb: 8 };

function tag(instance: any, key: string): string | undefined {
  return (instance.Tags ?? []).find((t: any) => t.Key === key)?.Value;
}

describe('scripts that outlive a dead server', function () {
  this.timeout(180_000);
  const ws = useServerWorkspace('orphan');
  let capture: string;
  beforeEach(() => {
    capture = path.join(ws.dir, 'aws-calls');
  });
  const start = ws.start;

  /**
   * A keyed create whose create_instance.sh is held in front of run-instances, then the server is SIGKILLed
   * and the script is left running, as it would be on a real machine.
   */
  async function crashDuringLaunch(key: string): Promise<{ op: any; group: number }> {
    const first = await start({
      CREATE_TIMEOUT_MS: '600000',
      ...fakeAwsEnv({
        FAKE_AWS_GATE_OP: 'run-instances', FAKE_AWS_GATE_DIR: ws.gate, FAKE_AWS_GATE_MAX_S: '300', FAKE_AWS_CAPTURE_FILE: capture,
      }),
    });
    const pending = postJson(`${first.url}/instances`, LAUNCH, { 'Idempotency-Key': key, 'X-Request-Id': 'orphan-create' })
      .catch((error: unknown) => error);
    await until('create_instance.sh is held in front of run-instances', () => markers(ws.gate, 'entered').length === 1);
    const group = Number(markers(ws.gate, 'entered')[0]?.text);
    const ops = (await getJson(`${first.url}/operations?kind=create`)).body.operations;
    assert.equal(ops.length, 1);
    process.kill(first.pid, 'SIGKILL');
    assert.equal((await first.exited).signal, 'SIGKILL');
    assert.ok((await pending) instanceof Error, 'the client lost its connection');
    assert.ok(liveMembersOfGroup(group).length > 0, 'the script outlived the server');
    return { op: ops[0], group };
  }

  it('when the server is SIGKILLed while create_instance.sh waits in front of run-instances, then the restart waits for the script, records its launch by client token, and a keyed retry launches nothing new', async () => {
    const key = 'orphan-wait-0001';
    const { op, group } = await crashDuringLaunch(key);

    const second = await start({ CREATE_TIMEOUT_MS: '600000', ...fakeAwsEnv({ FAKE_AWS_CAPTURE_FILE: capture }) });
    const during = await postJson(`${second.url}/instances`, LAUNCH, { 'Idempotency-Key': key });
    assert.equal(during.status, 409, `a retry while the orphan runs launches nothing: ${JSON.stringify(during.body)}`);
    assert.equal(during.body.operation_id, op.id);
    const waiting = await second.waitForLog('recovery waits for the orphan', (l) => l.message === 'a script outlived the previous server; waiting for it');
    assert.equal(waiting.process_group, group);
    assert.equal(waiting.operation_id, op.id);
    assert.equal(waiting.script, 'create_instance.sh');
    assert.match((await getJson(`${second.url}/operations/${op.id}`)).body.note, new RegExp(`process group ${group}\\) outlived the server: waiting up to \\d+ ms`));

    writeFileSync(path.join(ws.gate, 'release'), '');
    await until('the interrupted launch is resolved', async () =>
      /reconciled at start-up/.test((await getJson(`${second.url}/operations/${op.id}`)).body.note ?? ''));

    assert.deepEqual(liveMembersOfGroup(group), [], 'the script finished');
    const ec2 = await allEc2Instances();
    assert.equal(ec2.length, 1, 'exactly one instance');
    assert.equal(tag(ec2[0], 'ec2-creator:client-token'), op.client_token);
    const after = (await getJson(`${second.url}/operations/${op.id}`)).body;
    assert.equal(after.status, 'interrupted');
    assert.equal(after.instance_id, ec2[0].InstanceId);
    assert.match(after.note, new RegExp(`process group ${group}\\) outlived the server and finished`));
    assert.match(after.note, /found by its client token/);
    assert.doesNotMatch(after.note, /nothing was launched/);
    assert.ok(second.logs.some((l) => l.message === 'the script that outlived the previous server is done' && l.operation_id === op.id && l.outcome === 'finished'));
    const rows = readRows<{ instance_id: string; launch_status: string; name: string }>(ws.database, 'SELECT * FROM instances');
    assert.equal(rows.length, 1, 'exactly one record');
    assert.equal(rows[0]?.instance_id, ec2[0].InstanceId);
    assert.equal(rows[0]?.launch_status, 'launched');
    assert.deepEqual(readRows(ws.database, 'SELECT script_pgid FROM operations WHERE id = ?', op.id), [{ script_pgid: null }]);

    const retried = await postJson(`${second.url}/instances`, LAUNCH, { 'Idempotency-Key': key });
    assert.equal(retried.status, 201, JSON.stringify(retried.body));
    assert.equal(retried.body.id, ec2[0].InstanceId, 'the retry answers with the launch the orphan made');
    assert.equal((await allEc2Instances()).length, 1, 'the retry launched nothing');
    assert.equal(captured(capture).filter((c) => c.operation === 'run-instances').length, 1, 'run-instances was called once, by the orphan');
    assert.equal(readRows(ws.database, 'SELECT * FROM instances').length, 1);
  });

  it('when the orphaned script is past its CREATE_TIMEOUT_MS at the restart, then its process group is killed, EC2 is checked by client token, and the launch is kept unresolved (EC2 may not show it yet) with a note that says so', async () => {
    const { op, group } = await crashDuringLaunch('orphan-kill-0001');

    // The shortest bound there is: the script has been running longer than that already, so it is killed.
    const second = await start({ CREATE_TIMEOUT_MS: '1000', ...fakeAwsEnv({ FAKE_AWS_CAPTURE_FILE: capture }) });
    await until('the interrupted launch is resolved', async () =>
      /reconciled at start-up/.test((await getJson(`${second.url}/operations/${op.id}`)).body.note ?? ''));

    assert.deepEqual(liveMembersOfGroup(group), [], 'no process of the orphaned script is left');
    const after = (await getJson(`${second.url}/operations/${op.id}`)).body;
    assert.equal(after.status, 'interrupted');
    assert.equal(after.instance_id, null);
    assert.match(after.note, new RegExp(`process group ${group}\\) outlived the server and was killed at its time bound \\(1000 ms\\)`));
    assert.match(after.note, /no instance carries its client token yet; the launch stays unresolved/);
    assert.ok(second.logs.some((l) => l.message === 'the script that outlived the previous server is done' && l.operation_id === op.id && l.outcome === 'killed'));
    const rows = readRows<{ launch_status: string; state: string; last_error: string }>(ws.database, 'SELECT * FROM instances');
    assert.equal(rows.length, 1);
    assert.equal(rows[0]?.launch_status, 'launching', 'not failed while EC2 may still show it');
    assert.equal(rows[0]?.state, 'pending');
    writeFileSync(path.join(ws.gate, 'release'), ''); // a killed script cannot launch any more
    assert.deepEqual(await allEc2Instances(), []);
    assert.equal(captured(capture).filter((c) => c.operation === 'run-instances').length, 1, 'only the held attempt, which never reached EC2');
    assert.deepEqual((await getJson(`${second.url}/instances`)).body.instances, []);
  });

  it('when the server is SIGKILLed while stop_instance.sh waits in front of stop-instances, then a start of that instance gets 409 naming the stop until the restart has waited for the script, and then the record matches EC2', async () => {
    const first = await start({
      STOP_TIMEOUT_MS: '600000',
      ...fakeAwsEnv({ FAKE_AWS_GATE_OP: 'stop-instances', FAKE_AWS_GATE_DIR: ws.gate, FAKE_AWS_GATE_MAX_S: '300' }),
    });
    const created = await postJson(`${first.url}/instances`, LAUNCH);
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const id = created.body.id as string;
    const stopping = await postJson(`${first.url}/instances/${id}/stop`, undefined, { Prefer: 'respond-async' });
    assert.equal(stopping.status, 202, JSON.stringify(stopping.body));
    const stopOp = stopping.body.id as string;
    await until('stop_instance.sh is held in front of stop-instances', () => markers(ws.gate, 'entered').length === 1);
    const group = Number(markers(ws.gate, 'entered')[0]?.text);
    process.kill(first.pid, 'SIGKILL');
    await first.exited;
    assert.ok(liveMembersOfGroup(group).length > 0, 'the script outlived the server');

    const second = await start({ STOP_TIMEOUT_MS: '600000', ...fakeAwsEnv({}) });
    const refused = await postJson(`${second.url}/instances/${id}/start`, undefined);
    assert.equal(refused.status, 409, JSON.stringify(refused.body));
    assert.equal(refused.body.operation_id, stopOp);
    const waiting = await second.waitForLog('recovery waits for the orphan', (l) => l.message === 'a script outlived the previous server; waiting for it');
    assert.equal(waiting.script, 'stop_instance.sh');
    assert.equal(waiting.operation_id, stopOp);

    writeFileSync(path.join(ws.gate, 'release'), '');
    await until('the interrupted stop is reconciled', async () =>
      /reconciled at start-up/.test((await getJson(`${second.url}/operations/${stopOp}`)).body.note ?? ''));

    const after = (await getJson(`${second.url}/operations/${stopOp}`)).body;
    assert.equal(after.status, 'interrupted');
    assert.match(after.note, new RegExp(`process group ${group}\\) outlived the server and finished`));
    assert.match(after.note, /the instance is stopped/);
    assert.deepEqual(liveMembersOfGroup(group), []);
    assert.equal((await allEc2Instances())[0].State.Name, 'stopped');
    assert.deepEqual(readRows(ws.database, 'SELECT state FROM instances WHERE instance_id = ?', id), [{ state: 'stopped' }]);
    const started = await postJson(`${second.url}/instances/${id}/start`, undefined);
    assert.equal(started.status, 200, JSON.stringify(started.body));
    assert.equal(started.body.state, 'running');
  });
  it('when the server is SIGKILLed while one stop_instance.sh run serves two stops, then the restart waits for that one script and reconciles both operations', async () => {
    // A window wide enough that the two asynchronous stops share one run however busy the machine is.
    const coalescing = { STOP_TIMEOUT_MS: '600000', COALESCE_WINDOW_MS: '5000' };
    const first = await start({
      ...coalescing,
      ...fakeAwsEnv({ FAKE_AWS_GATE_OP: 'stop-instances', FAKE_AWS_GATE_DIR: ws.gate, FAKE_AWS_GATE_MAX_S: '300' }),
    });
    const ids: string[] = [];
    for (const name of ['shared-1', 'shared-2']) {
      const created = await postJson(`${first.url}/instances`, { ...LAUNCH, name });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      ids.push(created.body.id as string);
    }
    const accepted = await Promise.all(ids.map((id) => postJson(`${first.url}/instances/${id}/stop`, undefined, { Prefer: 'respond-async' })));
    for (const answer of accepted) assert.equal(answer.status, 202, JSON.stringify(answer.body));
    const stopOps = accepted.map((answer) => answer.body.id as string);
    await until('one stop_instance.sh run is held in front of stop-instances', () => markers(ws.gate, 'entered').length === 1);
    const group = Number(markers(ws.gate, 'entered')[0]?.text);
    process.kill(first.pid, 'SIGKILL');
    await first.exited;
    assert.ok(liveMembersOfGroup(group).length > 0, 'the script outlived the server');

    const second = await start({ ...coalescing, ...fakeAwsEnv({}) });
    writeFileSync(path.join(ws.gate, 'release'), '');
    for (const op of stopOps) {
      await until(`the interrupted stop ${op} is reconciled`, async () =>
        /reconciled at start-up/.test((await getJson(`${second.url}/operations/${op}`)).body.note ?? ''));
      const after = (await getJson(`${second.url}/operations/${op}`)).body;
      assert.equal(after.status, 'interrupted');
      assert.match(after.note, new RegExp(`process group ${group}\\) outlived the server and finished`));
      assert.match(after.note, /the instance is stopped/);
    }
    assert.equal(markers(ws.gate, 'entered').length, 1, 'one script run served both stops');
    assert.deepEqual(liveMembersOfGroup(group), []);
    for (const id of ids) {
      assert.equal((await allEc2Instances()).find((instance) => instance.InstanceId === id)?.State.Name, 'stopped');
      assert.deepEqual(readRows(ws.database, 'SELECT state FROM instances WHERE instance_id = ?', id), [{ state: 'stopped' }]);
    }
  });
});
