/**
 * Launches left without an instance id by a crash or a shutdown timeout count against MAX_INSTANCES until
 * they are resolved. Start-up resolves them: EC2 is asked by client token; one found is recorded. One whose
 * script is gone and that no instance carries is failed once EC2 has had time to show it (EC2's reads lag
 * behind a launch: EVENTUAL_CONSISTENCY_S, five minutes), and a failed launch never counts.
 */
import { RunInstancesCommand } from '@aws-sdk/client-ec2';
import assert from 'node:assert/strict';
import request from 'supertest';
import { resetMoto } from '../support/global-fixture.js';
import { UBUNTU_X86_AMI, allEc2Instances, createKeyPair, ec2Client } from '../support/ec2-reader.js';
import { createHarnessOn, storeKinds } from '../support/app-harness.js';
import { getJson, killGroup, liveMembersOfGroup, markers, postJson, readRows, until, writeRows } from '../support/lifecycle.js';
import { type ServerProcess } from '../support/server-process.js';
import { useServerWorkspace } from '../support/server-workspace.js';
import { fakeAwsEnv } from '../support/fake-aws.js';
import { freshPostgresDatabase, pgRows } from '../support/postgres.js';

const launch = (name: string) => ({ name, ami: UBUNTU_X86_AMI, instance_type: 't3.micro', storage_gb: 8 });

for (const kind of storeKinds()) describe(`no phantom quota after launches were cut off (${kind})`, function () {
  this.timeout(180_000);
  const ws = useServerWorkspace('quota');
  /** The servers' database: the workspace's SQLite file, or a PostgreSQL database of this test's own. */
  let databaseUrl = '';
  beforeEach(async () => {
    databaseUrl = kind === 'sqlite' ? ws.database : await freshPostgresDatabase();
  });
  const start = (env: Record<string, string> = {}) => ws.start({ DATABASE_URL: databaseUrl, MAX_INSTANCES: '2', ...env });
  const rowsOf = async <T>(sql: string): Promise<T[]> => (kind === 'sqlite' ? readRows<T>(databaseUrl, sql) : pgRows<T>(databaseUrl, sql));

  /** MAX_INSTANCES asynchronous creates, each held by the fake aws in front of run-instances. */
  async function holdLaunches(server: ServerProcess): Promise<string[]> {
    const ids: string[] = [];
    for (const name of ['held-1', 'held-2']) {
      const accepted = await postJson(`${server.url}/instances`, launch(name), { Prefer: 'respond-async' });
      assert.equal(accepted.status, 202, JSON.stringify(accepted.body));
      ids.push(accepted.body.id);
    }
    await until('both launches are held in front of EC2', () => markers(ws.gate, 'entered').length === 2);
    const refused = await postJson(`${server.url}/instances`, launch('one-too-many'));
    assert.equal(refused.status, 409, 'the quota is full while they are in flight');
    return ids;
  }

  /**
   * Within the window after the cut-off launches, nothing about them is given up: they still count, and a sync
   * says it left them unconfirmed. Then their last attempt is made older than the window, as the database
   * would have it five minutes later, and a sync fails them.
   */
  async function keptThenFailedPastTheWindow(server: ServerProcess): Promise<void> {
    const refused = await postJson(`${server.url}/instances`, launch('too-early'));
    assert.equal(refused.status, 409, `the launches still count: ${JSON.stringify(refused.body)}`);
    const rows = await rowsOf<{ launch_status: string }>("SELECT launch_status FROM instances WHERE name LIKE 'held-%'");
    assert.deepEqual(rows.map((r) => r.launch_status).filter((s) => s === 'failed'), [], 'not failed while EC2 may still show them');
    const early = await postJson(`${server.url}/instances/sync`);
    assert.equal(early.body.unconfirmed, 2, JSON.stringify(early.body));

    const longAgo = new Date(Date.now() - 10 * 60_000).toISOString();
    const backdate = "UPDATE instances SET updated_at = $1 WHERE name LIKE 'held-%'";
    if (kind === 'sqlite') writeRows(databaseUrl, backdate.replace('$1', '?'), longAgo);
    else await pgRows(databaseUrl, backdate, [longAgo]);
    const late = await postJson(`${server.url}/instances/sync`);
    assert.deepEqual([late.body.unconfirmed, late.body.vanished], [0, 0], JSON.stringify(late.body));
  }

  async function assertLaunchesFailedAndCreateSucceeds(server: ServerProcess, held: string[]): Promise<void> {
    assert.deepEqual((await getJson(`${server.url}/instances`)).body.instances, []);
    const created = await postJson(`${server.url}/instances`, launch('after-restart'));
    assert.equal(created.status, 201, JSON.stringify(created.body));

    const ec2 = await allEc2Instances();
    assert.deepEqual(ec2.map((i) => i.InstanceId), [created.body.id], 'only the new launch reached EC2');
    const rows = await rowsOf<{ name: string; instance_id: string | null; launch_status: string; state: string; last_error: string | null }>(
      'SELECT * FROM instances ORDER BY row_id',
    );
    assert.deepEqual(rows.map((r) => [r.name, r.launch_status, r.state]).sort(), [
      ['after-restart', 'launched', 'running'], ['held-1', 'failed', 'failed'], ['held-2', 'failed', 'failed'],
    ]);
    for (const row of rows.filter((r) => r.name.startsWith('held-'))) {
      assert.match(row.last_error ?? '', /no EC2 instance carries this launch's client token/);
    }
    for (const id of held) {
      const op = (await getJson(`${server.url}/operations/${id}`)).body;
      assert.equal(op.status, 'interrupted');
      assert.equal(op.instance_id, null);
    }
  }

  it('when the server is SIGKILLed with MAX_INSTANCES launches in flight that never reached EC2, then the restart keeps them counted while EC2 may still show them, fails them after, and a create succeeds', async () => {
    const first = await start(fakeAwsEnv({ FAKE_AWS_GATE_OP: 'run-instances', FAKE_AWS_GATE_DIR: ws.gate, FAKE_AWS_GATE_MAX_S: '300' }));
    const held = await holdLaunches(first);
    process.kill(first.pid, 'SIGKILL');
    await first.exited;
    // The machine went down with the server: the scripts die too, before run-instances.
    for (const marker of markers(ws.gate, 'entered')) killGroup(Number(marker.text));
    for (const marker of markers(ws.gate, 'entered')) await until('the script is gone', () => liveMembersOfGroup(Number(marker.text)).length === 0);

    const second = await start(fakeAwsEnv({}));
    const recovered = await second.waitForLog('start-up recovery', (l) => l.message === 'start-up recovery done');
    assert.deepEqual([...recovered.interrupted].sort(), [...held].sort());
    assert.equal(recovered.launches_failed.length, 0);
    for (const id of held) {
      const op = (await getJson(`${second.url}/operations/${id}`)).body;
      assert.match(op.note, /no instance carries its client token yet; the launch stays unresolved until a sync finds it or gives it up/);
    }

    await keptThenFailedPastTheWindow(second);
    await assertLaunchesFailedAndCreateSucceeds(second, held);
  });

  it('when a shutdown times out with MAX_INSTANCES launches in flight, then after the restart they are failed once EC2 has had time to show them, and a create succeeds', async () => {
    const first = await start({
      SHUTDOWN_TIMEOUT_MS: '0',
      ...fakeAwsEnv({ FAKE_AWS_GATE_OP: 'run-instances', FAKE_AWS_GATE_DIR: ws.gate, FAKE_AWS_GATE_MAX_S: '300' }),
    });
    const held = await holdLaunches(first);
    process.kill(first.pid, 'SIGTERM');
    assert.equal((await first.exited).code, 0);
    // The shutdown sent SIGKILL to each script's group before it exited; dying takes the kernel a moment,
    // while the gate would hold an unkilled script for minutes.
    for (const marker of markers(ws.gate, 'entered')) {
      await until('the shutdown killed the script', () => liveMembersOfGroup(Number(marker.text)).length === 0);
    }

    const second = await start(fakeAwsEnv({}));
    await until('the start-up reconciliation ran', async () =>
      (await getJson(`${second.url}/operations?kind=sync`)).body.operations.some((o: any) => o.request_id === 'startup' && o.status === 'succeeded'));

    const recovered = await second.waitForLog('start-up recovery', (l) => l.message === 'start-up recovery done');
    assert.deepEqual(recovered.interrupted, [], 'the shutdown had marked them interrupted already');
    assert.equal(recovered.launches_failed.length, 0);
    await keptThenFailedPastTheWindow(second);
    await assertLaunchesFailedAndCreateSucceeds(second, held);
  });
});

for (const kind of storeKinds()) describe(`a launch failed too early (${kind})`, function () {
  this.timeout(120_000);

  it('when EC2 shows an instance carrying the client token of a launch already failed, then sync records it on that launch, never leaving it unknown', async () => {
    await resetMoto();
    await createKeyPair();
    const h = await createHarnessOn(kind);
    const recordOf = (id: string) => h.records.instances.findByInstanceId(id);
    try {
      const token = 'ec2c-00000000-0000-4000-8000-00000000f00d';
      await h.records.instances.insertLaunch({
        clientToken: token, name: 'late', ami: UBUNTU_X86_AMI, instanceType: 't3.micro', storageGb: 8, keyName: 'k',
        securityGroupId: null, loginUser: 'ubuntu',
      });
      await h.records.instances.failLaunch(token, 'failed', "no EC2 instance carries this launch's client token");
      // EC2 answered slowly: the launch shows up only after it was given up.
      const launched = await ec2Client().send(new RunInstancesCommand({
        ImageId: UBUNTU_X86_AMI, InstanceType: 't3.micro', MinCount: 1, MaxCount: 1, ClientToken: token,
        TagSpecifications: [{
          ResourceType: 'instance',
          Tags: [{ Key: 'Name', Value: 'late' }, { Key: 'ManagedBy', Value: 'ec2-creator' }, { Key: 'ec2-creator:client-token', Value: token }],
        }],
      }));
      const id = launched.Instances?.[0]?.InstanceId as string;

      const response = await request(h.app).post('/instances/sync');

      assert.equal(response.status, 200, JSON.stringify(response.body));
      assert.equal(response.body.imported, 1);
      const [count] = await h.sql<{ n: number | string }>('SELECT count(*) AS n FROM instances');
      assert.equal(Number(count?.n), 1, 'the launch\'s own record, no second one');
      assert.equal((await recordOf(id))?.client_token, token);
      assert.equal((await recordOf(id))?.launch_status, 'launched');
      assert.equal((await recordOf(id))?.state, 'running');
      assert.deepEqual((await request(h.app).get('/instances')).body.instances.map((i: any) => i.id), [id]);
      assert.ok(h.logs.some((l) => l.message === 'reconciliation recorded a launch given up as failed: EC2 has it after all' && l.instance_id === id));
    } finally {
      h.close();
    }
  });
});
