/**
 * The script runner on its own (fixture scripts under test/fixtures/app-scripts/) and its failures as the
 * API shows them (real scripts with a fake aws in front of moto).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import request from 'supertest';
import { ScriptError } from '../../app/domain/errors.js';
import { createScriptRunner } from '../../app/ec2/runner.js';
import { createLogger } from '../../app/logger.js';
import { validateEc2Image, validateEc2Instance, validateEc2InstanceList } from '../../app/schemas/validators.js';
import { resetMoto } from '../support/global-fixture.js';
import { UBUNTU_X86_AMI, allEc2Instances, createKeyPair, ec2InstanceById } from '../support/ec2-reader.js';
import { boundAboveCalls } from '../support/cli-timing.js';
import {
  arrangeRecordedInstance, createHarness, expectProblem, fixturesDir, type Harness, type HarnessOptions,
} from '../support/app-harness.js';
import { launchManaged } from '../support/scripts.js';
import { fakeAwsEnv } from '../support/fake-aws.js';

const silent = createLogger({ silent: true });

/** Live (non-zombie) processes whose process group is `pgid`, read from /proc. */
function liveMembersOfGroup(pgid: number): number[] {
  const members: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // state ppid pgrp …
      if (Number(fields[2]) === pgid && fields[0] !== 'Z') members.push(Number(entry));
    } catch {
      // the process ended while we looked
    }
  }
  return members;
}

async function rejection(promise: Promise<unknown>): Promise<ScriptError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof ScriptError, `expected a ScriptError, got ${String(error)}`);
    return error;
  }
  throw new Error('expected the run to fail');
}

describe('script runner', function () {
  it('when a script outlives its timeout, then its whole process group (grandchild included) is killed', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ec2-creator-group-'));
    const pidFile = path.join(dir, 'pid');
    try {
      const runner = createScriptRunner({
        scriptsDir: path.join(fixturesDir, 'app-scripts', 'group'),
        // The fixture must have started its grandchild before the timeout fires, however busy the machine.
        timeoutMs: await boundAboveCalls(1, 1_500),
        killGraceMs: 300,
        logger: silent,
        env: { GROUP_PID_FILE: pidFile },
      });

      const error = await rejection(runner.run('describe_instance.sh', ['i-0123456789abcdef0'], validateEc2Instance));

      assert.equal(error.failure, 'timeout');
      const leader = Number(readFileSync(pidFile, 'utf8'));
      const grandchild = Number(readFileSync(`${pidFile}.grandchild`, 'utf8'));
      assert.ok(leader > 0 && grandchild > 0);
      // The script ignores SIGTERM (so does its grandchild): only the group SIGKILL ends them. The kill is
      // delivered before run() settles; give the kernel a moment to finish tearing the processes down.
      const deadline = Date.now() + 10_000;
      while (liveMembersOfGroup(leader).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(liveMembersOfGroup(leader), [], 'no process of the script\'s group is left');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  describe('with misbehaving scripts', () => {
    const runner = createScriptRunner({
      scriptsDir: path.join(fixturesDir, 'app-scripts', 'garbage'),
      timeoutMs: 30_000,
      logger: silent,
    });

    it('when a script exits 0 but prints no JSON, then the run fails as bad-output', async () => {
      const error = await rejection(runner.run('describe_instance.sh', [], validateEc2Instance));
      assert.equal(error.failure, 'bad-output');
    });

    it('when a script prints JSON of the wrong shape, then the run fails as bad-output naming the field', async () => {
      const error = await rejection(runner.run('describe_image.sh', [], validateEc2Image));
      assert.equal(error.failure, 'bad-output');
      assert.match(error.message, /id|architecture/);
    });

    it('when a script exits 3 with an error document, then the failure is not-found with its code', async () => {
      const error = await rejection(runner.run('list_instances.sh', [], validateEc2InstanceList));
      assert.equal(error.failure, 'not-found');
      assert.equal(error.details.code, 'InvalidInstanceID.NotFound');
      assert.equal(error.details.exitCode, 3);
    });

    const exits: Array<[number, string]> = [
      [1, 'other'], [2, 'invalid-argument'], [4, 'conflict'], [5, 'throttled'], [6, 'credentials'],
      [7, 'wait-timeout'], [8, 'missing-dependency'], [42, 'other'],
    ];
    for (const [code, failure] of exits) {
      it(`when a script exits ${code}, then the failure class is ${failure}`, async () => {
        const withExit = createScriptRunner({
          scriptsDir: path.join(fixturesDir, 'app-scripts', 'garbage'),
          timeoutMs: 30_000,
          logger: silent,
          env: { EXIT_WITH: String(code) },
        });
        const error = await rejection(withExit.run('start_instance.sh', [], validateEc2Instance));
        assert.equal(error.failure, failure);
        assert.equal(error.details.code, 'Fixture');
      });
    }

    it('when a script is killed by a signal it did not get from us, then the failure is signal', async () => {
      const error = await rejection(runner.run('stop_instance.sh', [], validateEc2Instance));
      assert.equal(error.failure, 'signal');
      assert.equal(error.details.signal, 'SIGKILL');
    });

    it('when the script does not exist, then the failure is spawn', async () => {
      const error = await rejection(runner.run('no_such_script.sh', [], validateEc2Instance));
      assert.equal(error.failure, 'spawn');
    });
  });
});

describe('script failures through the API', function () {
  let h: Harness | undefined;

  beforeEach(async () => {
    await resetMoto();
    await createKeyPair();
  });
  afterEach(() => {
    h?.close();
    h = undefined;
  });

  /**
   * Builds `h` with `options` and arranges an instance it already knows. The instance is launched
   * in-process and recorded as a completed create records it, so no script (faulty or not) runs before
   * the call under test.
   */
  async function arrange(options: HarnessOptions): Promise<string> {
    h = createHarness(options);
    return arrangeRecordedInstance(h, { name: 'victim' });
  }

  it('when a script prints garbage with exit 0, then GET answers 502 problem+json and the row is untouched', async () => {
    const id = await arrange({ scriptsDir: path.join(fixturesDir, 'app-scripts', 'garbage') });
    const before = h!.row(id);

    const response = await request(h!.app).get(`/instances/${id}`);

    const problem = expectProblem(response, 502);
    assert.match(problem.detail, /not one JSON document/);
    assert.deepEqual(h!.row(id), before);
  });

  it('when aws itself prints garbage, then the real script reports it and GET answers 502', async () => {
    const id = await arrange({ env: fakeAwsEnv({ FAKE_AWS_GARBAGE_OP: 'describe-instances' }) });

    const response = await request(h!.app).get(`/instances/${id}`);

    expectProblem(response, 502);
    assert.ok((await ec2InstanceById(id)), 'the instance is still there');
  });

  it('when the runner timeout fires during a stop, then 504 problem+json', async () => {
    const gate = mkdtempSync(path.join(tmpdir(), 'ec2-creator-gate-'));
    try {
      const id = await arrange({
        // Above the describe the stop makes before the gated stop-instances.
        timeoutMs: await boundAboveCalls(2, 2_000),
        killGraceMs: 200,
        env: fakeAwsEnv({ FAKE_AWS_GATE_OP: 'stop-instances', FAKE_AWS_GATE_DIR: gate, FAKE_AWS_GATE_MAX_S: '60' }),
      });

      const response = await request(h!.app).post(`/instances/${id}/stop`);

      expectProblem(response, 504);
      const line = h!.logs.find((l) => l.message === 'script run' && l.script === 'stop_instance.sh');
      assert.equal(line?.timed_out, true);
    } finally {
      rmSync(gate, { recursive: true, force: true });
    }
  });

  it('when AWS throttles, then 503 problem+json with Retry-After', async () => {
    const id = await arrange({ env: fakeAwsEnv({ FAKE_AWS_THROTTLE_OP: 'describe-instances' }) });

    const response = await request(h!.app).get(`/instances/${id}`);

    expectProblem(response, 503);
    assert.match(String(response.headers['retry-after']), /^\d+$/);
  });

  it('when create_instance.sh loses the run-instances answer, then the launched instance is still recorded by its client token', async () => {
    h = createHarness({ env: fakeAwsEnv({ FAKE_AWS_GARBAGE_OP: 'run-instances' }) });

    const response = await request(h.app)
      .post('/instances')
      .send({ name: 'half-way', ami: UBUNTU_X86_AMI, instance_type: 't3.micro', storage_gb: 8 });

    assert.equal(response.status, 201, JSON.stringify(response.body));
    const ec2 = await allEc2Instances();
    assert.equal(ec2.length, 1, 'EC2 did launch it');
    assert.equal(response.body.id, ec2[0].InstanceId);
    const row = h.row(ec2[0].InstanceId);
    assert.equal(row?.launch_status, 'launched');
    const tags = Object.fromEntries((ec2[0].Tags ?? []).map((t: any) => [t.Key, t.Value]));
    assert.equal(tags['ec2-creator:client-token'], row?.client_token);
    assert.ok(h.logs.some((l) => l.message === 'script run' && l.script === 'create_instance.sh' && l.exit_code === 1));
  });

  it('when a launch was left unresolved by a crash, then reconciliation adopts the instance carrying its token', async () => {
    h = createHarness();
    // The crash: the row was written, the script launched the instance, the process died before recording it.
    const token = 'ec2c-00000000-0000-4000-8000-000000000001';
    h.store.instances.insertLaunch({
      clientToken: token, name: 'orphan', ami: UBUNTU_X86_AMI, instanceType: 't3.micro', storageGb: 8,
      keyName: 'ec2c-test-key', securityGroupId: null, loginUser: 'ubuntu',
    });
    // The launch the script made, in-process: the subject is the reconciliation, not the create.
    await launchManaged('orphan', { keyName: 'ec2c-test-key', clientToken: token });
    assert.equal((await request(h.app).get('/instances')).body.instances.length, 0, 'not known before reconciling');

    const synced = await request(h.app).post('/instances/sync');

    const ec2 = await allEc2Instances();
    assert.equal(ec2.length, 1);
    assert.equal(synced.body.imported, 1, JSON.stringify(synced.body));
    assert.ok(h.logs.some((l) => l.message === 'reconciliation recorded an unresolved launch found by its client token'
      && l.instance_id === ec2[0].InstanceId && l.client_token === token));
    const listed = await request(h.app).get('/instances');
    assert.deepEqual(listed.body.instances.map((i: any) => i.id), [ec2[0].InstanceId]);
    assert.equal(h.row(ec2[0].InstanceId)?.name, 'orphan');
  });
});
