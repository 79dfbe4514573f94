/**
 * Per-kind script timeouts: a stop whose `aws` hangs (ignoring SIGTERM, with a grandchild that
 * ignores it too) is killed with its whole process group after STOP_TIMEOUT_MS; the operation fails as
 * timed out and the instance is reconciled with EC2.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import request from 'supertest';
import { resetMoto } from '../support/global-fixture.js';
import { UBUNTU_X86_AMI, createKeyPair, ec2InstanceById } from '../support/ec2-reader.js';
import { createHarness, expectProblem, type Harness } from '../support/app-harness.js';
import { boundAboveCalls } from '../support/cli-timing.js';
import { killGroup, liveMembersOfGroup, markers, until } from '../support/lifecycle.js';
import { fakeAwsEnv } from '../support/fake-aws.js';

/** Whether a process runs (a zombie has already died: it only waits for its parent to reap it). */
function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0] !== 'Z';
  } catch {
    return false;
  }
}

describe('script timeouts', function () {
  this.timeout(120_000);
  let dir: string;
  const harnesses: Harness[] = [];

  beforeEach(async () => {
    await resetMoto();
    await createKeyPair();
    dir = mkdtempSync(path.join(tmpdir(), 'ec2-creator-hang-'));
  });
  afterEach(() => {
    for (const marker of markers(dir, 'hang')) killGroup(Number(marker.text.split(' ')[0]));
    for (const h of harnesses.splice(0)) h.close({ keepFiles: true });
    rmSync(dir, { recursive: true, force: true });
  });

  it('when a stop script spawns a grandchild and hangs past STOP_TIMEOUT_MS, then no process of its group is left, the operation failed as timeout and the record matches EC2', async () => {
    const launcher = createHarness({ databasePath: path.join(dir, 'instances.db') });
    harnesses.push(launcher);
    const created = await request(launcher.app).post('/instances').send({ name: 'hang-1', ami: UBUNTU_X86_AMI, instance_type: 't3.micro', storage_gb: 8 });
    assert.equal(created.status, 201);
    const id = created.body.id as string;
    // The stop must reach the hanging stop-instances (after its describe) before its timeout fires.
    const stopTimeoutMs = await boundAboveCalls(2, 2_000);
    const h = createHarness({
      databasePath: launcher.databasePath,
      killGraceMs: 300,
      config: { timeouts: { create: 60_000, start: 60_000, stop: stopTimeoutMs, terminate: 60_000, describe: 60_000 } },
      env: fakeAwsEnv({ FAKE_AWS_HANG_OP: 'stop-instances', FAKE_AWS_HANG_DIR: dir }),
    });
    harnesses.push(h);

    const response = await request(h.app).post(`/instances/${id}/stop`).set('X-Request-Id', 'hang-stop');

    const problem = expectProblem(response, 504);
    assert.match(problem.detail, new RegExp(`within ${stopTimeoutMs} ms`));
    const [hang] = markers(dir, 'hang');
    assert.ok(hang, 'the fake aws hung');
    const [group, grandchild] = (hang?.text ?? '').split(' ').map(Number) as [number, number];
    await until('the process group is gone', () => liveMembersOfGroup(group).length === 0, 10_000);
    assert.deepEqual(liveMembersOfGroup(group), []);
    assert.ok(grandchild > 0);
    assert.ok(!isAlive(grandchild), 'the grandchild is dead too (gone, or a zombie nobody reaped yet)');

    const [op] = h.store.operations.list({ kind: 'stop', limit: 1 });
    assert.equal(op?.status, 'failed');
    assert.equal(op?.error_code, 'timeout');
    assert.equal(op?.request_id, 'hang-stop');
    assert.match(op?.error_message ?? '', new RegExp(`stop_instance\\.sh did not finish within ${stopTimeoutMs} ms`));
    const line = h.logs.find((l) => l.message === 'script run' && l.script === 'stop_instance.sh');
    assert.equal(line?.timed_out, true);
    const stopRun = h.runs.findIndex((r) => r.script === 'stop_instance.sh');
    assert.ok(h.runs.slice(stopRun + 1).some((r) => r.script === 'describe_instance.sh'), 'reconciled with a describe after the timeout');
    const ec2 = await ec2InstanceById(id);
    assert.equal(ec2.State.Name, 'running', 'stop-instances never reached EC2');
    assert.equal(h.row(id)?.state, 'running', 'the record shows EC2\'s state, not "stopping"');
  });
});
