/**
 * Changes of one kind that arrive together share one script run (one AWS call for all of them), while
 * each instance keeps its own operation, answer and error. The end-to-end tests give the window a few
 * seconds, so that requests fired together land in it however busy the machine is; the coalescer's
 * own rules are unit-tested below with calls made in one tick.
 */
import assert from 'node:assert/strict';
import { DeleteTagsCommand } from '@aws-sdk/client-ec2';
import request from 'supertest';
import { coalesce, sharedRunContext } from '../../app/ec2/coalesce.js';
import type { RunContext } from '../../app/ec2/runner.js';
import { arrangeRecordedInstance, createHarnessOn, expectProblem, storeKinds, type Harness } from '../support/app-harness.js';
import { ec2Client, ec2InstanceById, freshEc2, TEST_KEY_NAME, UBUNTU_X86_AMI } from '../support/ec2-reader.js';
import { recordAwsCalls } from '../support/fake-aws.js';

const GENEROUS_WINDOW_MS = 5_000;

for (const kind of storeKinds()) describe(`changes that arrive together share one script run (${kind})`, () => {
  let h: Harness;
  let calls: ReturnType<typeof recordAwsCalls>;

  beforeEach(async () => {
    await freshEc2();
    calls = recordAwsCalls();
    h = await createHarnessOn(kind, { env: calls.env, config: { coalesceWindowMs: GENEROUS_WINDOW_MS } });
  });
  afterEach(() => h.close());

  async function arrange(count: number, prefix: string): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < count; i += 1) ids.push(await arrangeRecordedInstance(h, { name: `${prefix}-${i}` }));
    calls.clear();
    return ids;
  }

  const runsOf = (script: string) => h.runs.filter((run) => run.script === script);
  const recordOf = (id: string) => h.records.instances.findByInstanceId(id);

  it('when eight stops arrive together, then one stop_instance.sh run makes two AWS calls for all, and each stop answers with its own instance stopped', async () => {
    const ids = await arrange(8, 'batch');

    const responses = await Promise.all(ids.map((id) => request(h.app).post(`/instances/${id}/stop`).then((r) => r)));

    responses.forEach((response, i) => {
      assert.equal(response.status, 200, JSON.stringify(response.body));
      assert.equal(response.body.id, ids[i]);
      assert.equal(response.body.state, 'stopped');
      assert.equal(response.body.storage_gb, 8, 'the size on record');
    });
    assert.equal(runsOf('stop_instance.sh').length, 1);
    // Requests sent together reach the coalescer in no set order (on PostgreSQL each first waits on queries of
    // its own): the one run names each of the eight once, and nothing else after `--`.
    const batchArgs = runsOf('stop_instance.sh')[0]?.args ?? [];
    assert.deepEqual(batchArgs.slice(batchArgs.indexOf('--') + 1).sort(), [...ids].sort());
    assert.deepEqual(calls.operations(), ['stop-instances', 'describe-instances']);
    for (const id of ids) {
      assert.equal((await ec2InstanceById(id)).State.Name, 'stopped');
      assert.equal((await recordOf(id))?.state, 'stopped');
      const [op] = await h.records.operations.list({ instanceId: id, kind: 'stop', limit: 5 });
      assert.equal(op?.status, 'succeeded', `the stop of ${id} has its own operation`);
    }
    const scriptLines = h.logs.filter((line) => line.message === 'script run' && line.script === 'stop_instance.sh');
    assert.equal(scriptLines.length, 1);
    assert.equal(scriptLines[0]?.outcome, 'ok');
  });

  it('when one of several stopped instances is gone from EC2, then that stop answers 409 and its record is terminated, while the others stop', async () => {
    const ids = await arrange(2, 'kept');
    const gone = 'i-0123456789abcdef0';
    await h.records.instances.insertLaunch({
      clientToken: 'ec2c-gone', name: 'gone', ami: UBUNTU_X86_AMI, instanceType: 't3.micro', storageGb: 8,
      keyName: TEST_KEY_NAME, securityGroupId: null, loginUser: 'ubuntu',
    });
    await h.records.instances.completeLaunch('ec2c-gone', {
      instanceId: gone, name: 'gone', state: 'running', publicIp: null, privateIp: null, storageGb: 8,
      keyName: TEST_KEY_NAME, securityGroupId: null, launchTime: '2026-01-05T10:00:00.000Z', // long ago: gone, not unseen yet
    });

    const [first, missing, second] = await Promise.all([ids[0], gone, ids[1]].map((id) =>
      request(h.app).post(`/instances/${id}/stop`).then((r) => r)));

    for (const response of [first, second]) {
      assert.equal(response?.status, 200, JSON.stringify(response?.body));
      assert.equal(response?.body.state, 'stopped');
    }
    const problem = expectProblem(missing as never, 409);
    assert.match(problem.detail, /no longer exists in EC2/);
    assert.equal((await recordOf(gone))?.state, 'terminated');
    for (const id of ids) assert.equal((await ec2InstanceById(id)).State.Name, 'stopped');
    assert.equal(runsOf('stop_instance.sh').length, 1);
    // EC2 refuses the whole call for one unknown id: one read finds it, and the others are stopped.
    assert.deepEqual(calls.operations(), ['stop-instances', 'describe-instances', 'stop-instances', 'describe-instances']);
    assert.equal((await h.records.operations.list({ instanceId: gone, kind: 'stop', limit: 5 }))[0]?.status, 'failed');
  });

  it('when several deletes arrive together and one instance lost its ManagedBy tag, then that delete is refused and it keeps running, while the others terminate', async () => {
    const ids = await arrange(3, 'doomed');
    const untagged = ids[1] as string;
    await ec2Client().send(new DeleteTagsCommand({ Resources: [untagged], Tags: [{ Key: 'ManagedBy' }] }));

    const responses = await Promise.all(ids.map((id) => request(h.app).delete(`/instances/${id}`).then((r) => r)));

    assert.equal(responses[0]?.status, 204);
    assert.equal(responses[2]?.status, 204);
    const problem = expectProblem(responses[1] as never, 409);
    assert.match(problem.detail, /not tagged ManagedBy=ec2-creator/);
    assert.equal((await ec2InstanceById(untagged)).State.Name, 'running');
    assert.equal((await recordOf(untagged))?.state, 'running');
    for (const id of [ids[0], ids[2]] as string[]) {
      assert.equal((await ec2InstanceById(id)).State.Name, 'terminated');
      assert.equal((await recordOf(id))?.state, 'terminated');
    }
    assert.equal(runsOf('destroy_instance.sh').length, 1);
  });
});

describe('the coalescer', () => {
  interface Recorded { one: string[]; many: string[][] }

  function coalescer(windowMs: number, maxBatch = 50, outcomes: (ids: string[]) => Map<string, string | Error> = (ids) =>
    new Map(ids.map((id) => [id, `done ${id}`]))): { change: (id: string, ctx?: RunContext) => Promise<string>; recorded: Recorded } {
    const recorded: Recorded = { one: [], many: [] };
    const change = coalesce<string>({
      windowMs,
      maxBatch,
      one: async (id) => {
        recorded.one.push(id);
        return `alone ${id}`;
      },
      many: async (ids) => {
        recorded.many.push(ids);
        return outcomes(ids);
      },
    });
    return { change, recorded };
  }

  it('when changes arrive within the window, then one run serves them in order and each caller gets its own result', async () => {
    const { change, recorded } = coalescer(10);

    const results = await Promise.all(['i-a', 'i-b', 'i-c'].map((id) => change(id)));

    assert.deepEqual(recorded.many, [['i-a', 'i-b', 'i-c']]);
    assert.deepEqual(recorded.one, []);
    assert.deepEqual(results, ['done i-a', 'done i-b', 'done i-c']);
  });

  it('when one id of a run fails, then only its caller gets the error', async () => {
    const { change } = coalescer(10, 50, (ids) => new Map(ids.map((id) => [id, id === 'i-b' ? new Error('i-b refused') : `done ${id}`])));

    const settled = await Promise.allSettled(['i-a', 'i-b', 'i-c'].map((id) => change(id)));

    assert.deepEqual(settled.map((s) => s.status), ['fulfilled', 'rejected', 'fulfilled']);
    assert.equal((settled[1] as PromiseRejectedResult).reason.message, 'i-b refused');
  });

  it('when the whole run fails, then every caller in it gets that failure', async () => {
    const change = coalesce<string>({
      windowMs: 10,
      maxBatch: 50,
      one: async () => 'alone',
      many: async () => {
        throw new Error('throttled');
      },
    });

    const settled = await Promise.allSettled(['i-a', 'i-b'].map((id) => change(id)));

    assert.deepEqual(settled.map((s) => s.status === 'rejected' && (s.reason as Error).message), ['throttled', 'throttled']);
  });

  it('when a change arrives alone, then it runs as a single-id run', async () => {
    const { change, recorded } = coalescer(10);
    assert.equal(await change('i-a'), 'alone i-a');
    assert.deepEqual(recorded, { one: ['i-a'], many: [] });
  });

  it('when the window is 0, then every change runs on its own at once', async () => {
    const { change, recorded } = coalescer(0);
    await Promise.all([change('i-a'), change('i-b')]);
    assert.deepEqual(recorded, { one: ['i-a', 'i-b'], many: [] });
  });

  it('when the batch is full, then it runs without waiting out the window, and later changes start the next', async () => {
    // An hour-long window: only the full batch can have started the first run.
    const { change, recorded } = coalescer(3_600_000, 2);
    const firstTwo = Promise.all([change('i-a'), change('i-b')]);
    assert.deepEqual(await firstTwo, ['done i-a', 'done i-b']);
    const [third, fourth] = [change('i-c'), change('i-d')];
    assert.deepEqual(await Promise.all([third, fourth]), ['done i-c', 'done i-d']);
    assert.deepEqual(recorded.many, [['i-a', 'i-b'], ['i-c', 'i-d']]);
  });

  it('when the same id comes twice in one window, then it is in two runs, never twice in one', async () => {
    const { change, recorded } = coalescer(10);
    await Promise.all([change('i-a'), change('i-b'), change('i-a')]);
    assert.deepEqual(recorded.many, [['i-a', 'i-b']]);
    assert.deepEqual(recorded.one, ['i-a']);
  });

  it('when a shared run starts, then every caller is told its process group and the longest time bound holds', () => {
    const told: Array<[string, number | null]> = [];
    const shared = sharedRunContext([
      { requestId: 'r1', timeoutMs: 1_000, onProcessGroup: (pgid) => told.push(['r1', pgid]) },
      { requestId: 'r2', timeoutMs: 3_000, onProcessGroup: (pgid) => told.push(['r2', pgid]) },
    ]);
    shared.onProcessGroup?.(4242);
    assert.deepEqual(told, [['r1', 4242], ['r2', 4242]]);
    assert.equal(shared.timeoutMs, 3_000);
    assert.equal(shared.requestId, 'r1,r2');
  });
});
