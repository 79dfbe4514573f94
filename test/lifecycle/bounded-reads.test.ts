/**
 * Reads that run scripts are bounded: concurrent reads of one instance share one describe run, and reads
 * of different instances wait, first in first out, behind MAX_CONCURRENT_READS (never 503, never a slot
 * of a change). The fake aws holds describe-instances until the test releases it; the order of events
 * comes from its marker files and the harness's record of script runs, never from durations.
 */
import assert from 'node:assert/strict';
import request from 'supertest';
import { ConfigError, loadConfig } from '../../app/config.js';
import { ec2InstanceById, freshEc2 } from '../support/ec2-reader.js';
import { arrangeManagedInstances, createHarness, type Harness } from '../support/app-harness.js';
import { markers, until, useGate } from '../support/lifecycle.js';
import { fakeAwsEnv } from '../support/fake-aws.js';

describe('reads are bounded', function () {
  this.timeout(240_000);
  let h: Harness;
  let arranger: Harness | undefined;
  const gate = useGate();

  beforeEach(freshEc2);
  afterEach(() => {
    h.close({ keepFiles: true });
    arranger?.close();
    arranger = undefined;
  });

  /** Instances recorded (through a harness without the gate.dir) in the database a gated harness then serves. */
  async function gatedHarnessWith(names: string[], config: { maxConcurrentReads?: number } = {}): Promise<string[]> {
    arranger = createHarness();
    const ids = await arrangeManagedInstances(arranger, names);
    h = createHarness({
      databasePath: arranger.databasePath,
      env: fakeAwsEnv({ FAKE_AWS_GATE_OP: 'describe-instances', FAKE_AWS_GATE_DIR: gate.dir }),
      config,
    });
    return ids;
  }

  const describes = () => h.runs.filter((r) => r.script === 'describe_instance.sh');
  const joined = (id: string) => h.logs.filter((l) => l.message === 'read joined the describe in flight' && l.instance_id === id);

  it('when 12 GET /instances/{id} of one instance arrive while its describe is held, then one describe_instance.sh runs and all 12 answer 200 after the release', async () => {
    const [id] = (await gatedHarnessWith(['shared-read'])) as [string];
    const n = 12;

    const reads = Array.from({ length: n }, (_, i) =>
      request(h.app).get(`/instances/${id}`).set('X-Request-Id', `shared-${i}`).then((r) => r));
    await until('the first read is inside aws and every other joined it, or a second describe started', () =>
      (markers(gate.dir, 'entered').length === 1 && joined(id).length === n - 1) || describes().length > 1);

    assert.equal(describes().length, 1, 'one describe for all the reads');
    assert.equal(markers(gate.dir, 'entered').length, 1, 'one describe-instances inside aws');
    gate.release();
    const answers = await Promise.all(reads);

    for (const answer of answers) {
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      assert.equal(answer.body.id, id);
      assert.equal(answer.body.state, 'running');
    }
    assert.equal(describes().length, 1);
    assert.equal(markers(gate.dir, 'left').length, 1);
    assert.equal(h.row(id)?.state, 'running');
    assert.equal((await ec2InstanceById(id)).State.Name, 'running');
    const first = h.logs.filter((l) => l.message === 'script run' && l.script === 'describe_instance.sh');
    assert.equal(first.length, 1);
    assert.equal(joined(id).length, n - 1);
    assert.ok(!joined(id).some((l) => l.request_id === first[0]?.request_id), 'the reader that ran it did not join itself');
    assert.equal(h.logs.filter((l) => l.message === 'request' && l.path === `/instances/${id}` && l.status === 200).length, n);
  });

  it('when MAX_CONCURRENT_READS=2 and three instances are read at once, then two describes are inside aws, the third waits and starts only after one finished', async () => {
    const ids = await gatedHarnessWith(['cap-0', 'cap-1', 'cap-2'], { maxConcurrentReads: 2 });
    const waiting = () => h.logs.filter((l) => l.message === 'read waits for a free read slot');

    const reads = ids.map((id) => request(h.app).get(`/instances/${id}`).then((r) => r));
    await until('two describes are inside aws and the third waits, or a third started', () =>
      (markers(gate.dir, 'entered').length === 2 && waiting().length === 1) || markers(gate.dir, 'entered').length > 2);

    assert.equal(markers(gate.dir, 'entered').length, 2, 'only MAX_CONCURRENT_READS describes inside aws');
    assert.equal(describes().length, 2, 'the third describe_instance.sh has not started');
    const waiter = waiting()[0] as Record<string, unknown>;
    assert.equal(waiter.max_concurrent_reads, 2);
    const third = waiter.instance_id as string;
    assert.ok(ids.includes(third));
    assert.deepEqual(h.services.operations.stats(), { running: 0, queued: 0, active: 0 }, 'reads take no slot of a change');
    gate.release();
    const answers = await Promise.all(reads);

    for (const answer of answers) assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.equal(describes().length, 3);
    const thirdRun = describes().find((r) => r.args.includes(third));
    const firstEnded = describes().filter((r) => r !== thirdRun).map((r) => r.endedAt as bigint).reduce((a, b) => (a < b ? a : b));
    assert.ok((thirdRun?.startedAt as bigint) >= firstEnded, 'the third describe started only after one of the first two finished');
    for (const id of ids) {
      assert.equal(h.row(id)?.state, 'running');
      assert.equal((await ec2InstanceById(id)).State.Name, 'running');
    }
  });
});

describe('MAX_CONCURRENT_READS', () => {
  it('when it is unset, then 4 describes run at once', () => {
    assert.equal(loadConfig({ AUTH_DISABLED: 'true' }, '/srv/app').maxConcurrentReads, 4);
    assert.equal(loadConfig({ AUTH_DISABLED: 'true', MAX_CONCURRENT_READS: '16' }, '/srv/app').maxConcurrentReads, 16);
  });

  for (const value of ['0', 'many', '-1', '2.5', '257']) {
    it(`when MAX_CONCURRENT_READS=${JSON.stringify(value)}, then start-up fails naming MAX_CONCURRENT_READS`, () => {
      assert.throws(
        () => loadConfig({ AUTH_DISABLED: 'true', MAX_CONCURRENT_READS: value }),
        (error: unknown) => error instanceof ConfigError && error.variable === 'MAX_CONCURRENT_READS' && /MAX_CONCURRENT_READS/.test(error.message),
      );
    });
  }
});
