import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startThrottlingProxy } from '../support/fault-proxy.js';
import { motoEndpoint, resetMoto } from '../support/global-fixture.js';
import { UBUNTU_X86_AMI, createKeyPair, ec2InstanceById } from '../support/ec2-reader.js';
import { SCRIPT_DEFAULT_KEY_NAME, launchManaged, runScript } from '../support/scripts.js';
import { boundAboveCalls } from '../support/cli-timing.js';
import { fakeAwsEnv } from '../support/fake-aws.js';

describe('scripts when AWS misbehaves', () => {
  let dir: string;
  beforeEach(async () => {
    await resetMoto();
    dir = mkdtempSync(path.join(tmpdir(), 'faults-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('when EC2 throttles a few times, then the CLI retries on its own and the script succeeds', async () => {
    const proxy = await startThrottlingProxy(motoEndpoint(), 2);
    try {
      const result = await runScript('describe_image.sh', [UBUNTU_X86_AMI], { env: { AWS_ENDPOINT_URL: proxy.endpoint } });
      assert.equal(result.exitCode, 0, result.stderr);
      assert.equal(result.json().id, UBUNTU_X86_AMI);
      assert.equal(proxy.throttled, 2);
      assert.equal(proxy.requests, 3);
    } finally {
      await proxy.close();
    }
  });

  it('when EC2 keeps throttling, then the CLI stops after the default bound of 5 attempts and the script exits 5', async () => {
    const proxy = await startThrottlingProxy(motoEndpoint(), Number.POSITIVE_INFINITY);
    try {
      const result = await runScript('describe_image.sh', [UBUNTU_X86_AMI], { env: { AWS_ENDPOINT_URL: proxy.endpoint } });
      assert.equal(result.exitCode, 5, result.stderr);
      assert.equal(result.json().error.code, 'RequestLimitExceeded');
      assert.equal(proxy.requests, 5);
    } finally {
      await proxy.close();
    }
  });

  it("when the caller sets AWS_MAX_ATTEMPTS, then the caller's bound is kept", async () => {
    const proxy = await startThrottlingProxy(motoEndpoint(), Number.POSITIVE_INFINITY);
    try {
      const result = await runScript('describe_image.sh', [UBUNTU_X86_AMI], {
        env: { AWS_ENDPOINT_URL: proxy.endpoint, AWS_MAX_ATTEMPTS: '2' },
      });
      assert.equal(result.exitCode, 5);
      assert.equal(proxy.requests, 2);
    } finally {
      await proxy.close();
    }
  });

  it('when the CLI reports throttling after its retries, then the script exits 5 with the AWS code and EC2\'s own words', async () => {
    const result = await runScript('describe_instance.sh', ['i-12345678'], { env: fakeAwsEnv({ FAKE_AWS_MODE: 'throttled' }) });
    assert.equal(result.exitCode, 5);
    assert.equal(result.json().error.code, 'Throttling');
    assert.equal(result.json().error.message, 'Rate exceeded');
  });

  it('when the endpoint cannot be reached, then the script exits 5', async () => {
    const result = await runScript('list_instances.sh', [], { env: { AWS_ENDPOINT_URL: 'http://127.0.0.1:9', AWS_MAX_ATTEMPTS: '1' } });
    assert.equal(result.exitCode, 5);
    assert.equal(result.json().error.code, 'ServiceUnavailable');
  });

  it('when there are no credentials at all, then the script exits 6', async () => {
    const result = await runScript('list_instances.sh', [], {
      env: { AWS_ACCESS_KEY_ID: undefined, AWS_SECRET_ACCESS_KEY: undefined },
    });
    assert.equal(result.exitCode, 6, result.stderr);
    assert.equal(result.json().error.code, 'NoCredentials');
  });

  it('when AWS rejects the credentials, then the script exits 6 with the AWS code', async () => {
    const result = await runScript('list_instances.sh', [], { env: fakeAwsEnv({ FAKE_AWS_MODE: 'auth-failure' }) });
    assert.equal(result.exitCode, 6);
    assert.equal(result.json().error.code, 'AuthFailure');
  });

  it('when the CLI prints something that is not JSON, then the script exits 1 and prints no garbage', async () => {
    const result = await runScript('list_instances.sh', [], { env: fakeAwsEnv({ FAKE_AWS_MODE: 'garbage' }) });
    assert.equal(result.exitCode, 1);
    assert.equal(result.json().error.code, 'InvalidAwsOutput');
    assert.ok(!result.stdout.includes('<html>'));
  });

  it('when an aws call hangs, then AWS_CALL_TIMEOUT_S ends it, the script exits 7 and the hung process is gone', async () => {
    const log = path.join(dir, 'calls.log');
    const result = await runScript('describe_instance.sh', ['i-12345678'], {
      env: fakeAwsEnv({ FAKE_AWS_MODE: 'hang', AWS_CALL_TIMEOUT_S: '2', FAKE_AWS_LOG: log }),
    });
    assert.equal(result.exitCode, 7);
    assert.equal(result.json().error.code, 'Timeout');
    const pid = readFileSync(log, 'utf8').trim().split(' ')[1];
    assert.equal(existsSync(`/proc/${pid}`), false, 'the hung aws process was killed');
  });

  it('when a call hangs while waiting for a state, then the wait bound fires and the script exits 7', async () => {
    await createKeyPair(SCRIPT_DEFAULT_KEY_NAME);
    const created = await launchManaged('slow'); // the subject is the wait, not the create
    const log = path.join(dir, 'calls.log');
    const result = await runScript('stop_instance.sh', ['--wait-timeout=3', created.id], {
      // The state check before the request passes; the first describe of the wait hangs.
      env: fakeAwsEnv({ FAKE_AWS_MODE: 'hang-after=1:describe-instances', FAKE_AWS_LOG: log }),
    });
    assert.equal(result.exitCode, 7, result.stderr);
    assert.equal(result.json().error.code, 'Timeout');
    assert.match(readFileSync(log, 'utf8'), /^stop-instances /m, 'the stop request itself went out');
  });

  it('when the instance never reaches the target state, then the wait bound fires with the state it is stuck in', async () => {
    await createKeyPair(SCRIPT_DEFAULT_KEY_NAME);
    const created = await launchManaged('stuck'); // the subject is the wait, not the create
    // At least one whole poll (describe-instances and describe-volumes) must fit in the bound.
    const waitS = Math.ceil((await boundAboveCalls(2, 2_000)) / 1000);
    const result = await runScript('stop_instance.sh', [`--wait-timeout=${waitS}`, '--poll-interval=1', created.id], {
      env: fakeAwsEnv({ FAKE_AWS_MODE: 'stuck-state=stopping' }),
    });
    assert.equal(result.exitCode, 7, result.stderr);
    assert.match(result.json().error.message, new RegExp(`still stopping after ${waitS}s`));
    assert.equal((await ec2InstanceById(created.id)).State.Name, 'stopped', 'the request itself reached EC2');
  });

  it('when someone else terminates the instance during a wait, then the script exits 10 (IncorrectInstanceState) instead of waiting on', async () => {
    await createKeyPair(SCRIPT_DEFAULT_KEY_NAME);
    const created = await launchManaged('raced'); // the subject is the wait, not the create
    const log = path.join(dir, 'calls.log');
    const result = await runScript('stop_instance.sh', ['--wait-timeout=60', created.id], {
      // The state check before the request sees the truth; from then on EC2 reports "terminated".
      env: fakeAwsEnv({ FAKE_AWS_MODE: 'stuck-state=terminated', FAKE_AWS_LOG: log, FAKE_AWS_STUCK_AFTER: '1' }),
    });
    assert.equal(result.exitCode, 10, result.stderr);
    assert.equal(result.json().error.code, 'IncorrectInstanceState');
    assert.match(result.json().error.message, /became terminated while waiting for stopped/);
    assert.match(readFileSync(log, 'utf8'), /^stop-instances /m);
  });
});
