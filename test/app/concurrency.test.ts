/**
 * With a slow AWS (a fake `aws` first on PATH that holds stop-instances until the test releases it),
 * the server keeps answering, independent stops run side by side and a second change of the same
 * instance is refused (409) rather than queued. No wall-clock thresholds: the
 * fake records when each call entered and left, and the test orders events, not durations.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import request from 'supertest';
import { resetMoto } from '../support/global-fixture.js';
import { createKeyPair, ec2InstanceById } from '../support/ec2-reader.js';
import { arrangeRecordedInstance, createHarnessOn, expectProblem, storeKinds, type Harness } from '../support/app-harness.js';
import { fakeAwsEnv } from '../support/fake-aws.js';

const WAIT_LIMIT_MS = 45_000;

async function until(what: string, condition: () => boolean): Promise<void> {
  const deadline = Date.now() + WAIT_LIMIT_MS;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

function stamps(dir: string, prefix: 'entered' | 'left'): bigint[] {
  return readdirSync(dir)
    .filter((f) => f.startsWith(`${prefix}.`))
    .filter((f) => !f.endsWith('.tmp'))
    .map((f) => statSync(path.join(dir, f), { bigint: true }).mtimeNs);
}

for (const kind of storeKinds()) describe(`a slow AWS does not block the service (${kind})`, function () {
  let h: Harness;
  let gate: string;

  beforeEach(async () => {
    await resetMoto();
    await createKeyPair();
    gate = mkdtempSync(path.join(tmpdir(), 'ec2-creator-gate-'));
    // Each stop in a script run of its own: the subject here is that runs do not wait for each other.
    // Stops sharing one run are test/app/coalescing.test.ts's subject.
    h = await createHarnessOn(kind, {
      env: fakeAwsEnv({ FAKE_AWS_GATE_OP: 'stop-instances', FAKE_AWS_GATE_DIR: gate }),
      config: { coalesceWindowMs: 0 },
    });
  });
  afterEach(() => {
    writeFileSync(path.join(gate, 'release'), ''); // never leave a fake waiting
    h.close();
    rmSync(gate, { recursive: true, force: true });
  });

  /**
   * Arranges an instance `h` already knows: launched in-process and recorded as a completed create
   * records it, so nothing passes the fake before the stops under test.
   */
  const arrange = (name: string): Promise<string> => arrangeRecordedInstance(h, { name });

  it('when a stop is held inside the aws call, then GET /health answers before the stop finishes', async () => {
    const id = await arrange('slow-stop');
    let stopDone = false;
    const stop = request(h.app).post(`/instances/${id}/stop`).then((r) => {
      stopDone = true;
      return r;
    });
    await until('the stop reaches aws stop-instances', () => stamps(gate, 'entered').length === 1);

    const health = await request(h.app).get('/health');

    assert.equal(health.status, 200);
    assert.deepEqual(health.body, { status: 'ok' });
    assert.equal(stopDone, false, 'the stop was still running when /health answered');
    assert.equal(stamps(gate, 'left').length, 0, 'aws stop-instances had not returned yet');
    writeFileSync(path.join(gate, 'release'), '');
    const stopped = await stop;
    assert.equal(stopped.status, 200, JSON.stringify(stopped.body));
    assert.equal(stopped.body.state, 'stopped');
    assert.equal((await ec2InstanceById(id)).State.Name, 'stopped');
    assert.equal((await h.records.instances.findByInstanceId(id))?.state, 'stopped');
  });

  it('when two instances are stopped at once, then both stops are inside aws at the same time', async () => {
    const first = await arrange('one');
    const second = await arrange('two');

    const stops = [first, second].map((id) => request(h.app).post(`/instances/${id}/stop`));
    const settled = Promise.all(stops.map((s) => s.then((r) => r)));
    // If the service ran scripts one after the other, the second would never enter while the first is held.
    await until('both stops to be inside aws stop-instances', () => stamps(gate, 'entered').length === 2);
    writeFileSync(path.join(gate, 'release'), '');
    const responses = await settled;

    for (const response of responses) assert.equal(response.status, 200, JSON.stringify(response.body));
    const entered = stamps(gate, 'entered');
    const left = stamps(gate, 'left');
    assert.equal(left.length, 2);
    const lastEntered = entered.reduce((a, b) => (a > b ? a : b));
    const firstLeft = left.reduce((a, b) => (a < b ? a : b));
    assert.ok(lastEntered < firstLeft, 'the two calls overlapped: both entered before either left');
    const runs = h.runs.filter((r) => r.script === 'stop_instance.sh');
    assert.equal(runs.length, 2);
    const [a, b] = runs as [typeof runs[0], typeof runs[0]];
    assert.ok(a.startedAt < (b.endedAt as bigint) && b.startedAt < (a.endedAt as bigint), 'the script runs overlapped');
    for (const id of [first, second]) {
      assert.equal((await ec2InstanceById(id)).State.Name, 'stopped');
      assert.equal((await h.records.instances.findByInstanceId(id))?.state, 'stopped');
    }
  });

  it('when a start is requested while a stop of the same instance is held, then 409 names the stop in flight', async () => {
    const id = await arrange('same');
    const stop = request(h.app).post(`/instances/${id}/stop`).then((r) => r);
    await until('the stop reaches aws stop-instances', () => stamps(gate, 'entered').length === 1);

    const start = await request(h.app).post(`/instances/${id}/start`);

    const problem = expectProblem(start, 409);
    const [running] = await h.records.operations.list({ instanceId: id, kind: 'stop', limit: 10 });
    assert.equal(running?.status, 'running');
    assert.equal(problem.operation_id, running?.id, 'the problem names the operation in flight');
    assert.equal(start.headers.location, `/operations/${running?.id}`);
    assert.equal(h.runs.filter((r) => r.script === 'start_instance.sh').length, 0, 'start did not run');
    assert.equal((await h.records.operations.list({ instanceId: id, kind: 'start', limit: 10 })).length, 0, 'a refused start records nothing');
    assert.equal((await h.records.instances.findByInstanceId(id))?.state, 'stopping', 'the record shows the transitional state while the stop runs');

    writeFileSync(path.join(gate, 'release'), '');
    const stopped = await stop;
    assert.equal(stopped.status, 200, JSON.stringify(stopped.body));
    assert.equal((await ec2InstanceById(id)).State.Name, 'stopped');
    assert.equal((await h.records.operations.get(running!.id))?.status, 'succeeded');
    assert.ok(existsSync(path.join(gate, 'release')));
  });
});
