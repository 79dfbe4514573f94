/**
 * The scripts on EC2 as AWS documents it (the realistic emulator in front of moto, the real aws CLI): a new
 * instance that EC2 does not show for a while, transitional states that last, and IncorrectInstanceState.
 * The emulator's clock is the test's, so "pending" lasts until the test moves time on: what the script does
 * meanwhile is watched, never timed.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import { startRealisticEc2, type RealisticEc2 } from '../../scripts/lib/realistic-ec2.js';
import { motoEndpoint } from '../support/global-fixture.js';
import { allEc2Instances, createKeyPair, ec2InstanceById, launchOutsideTheService, UBUNTU_X86_AMI } from '../support/ec2-reader.js';
import { runScript, scriptsDir, SCRIPT_DEFAULT_KEY_NAME } from '../support/scripts.js';
import { resetMoto } from '../support/global-fixture.js';
import { until } from '../support/lifecycle.js';

interface Running {
  stdout: string;
  stderr: string;
  progress: string;
  exited: Promise<number | null>;
  exitCode(): number | null;
}

/** A script run with a pipe on file descriptor 4, read as it is written. */
function spawnWithProgressPipe(script: string, args: readonly string[], env: Record<string, string>): Running {
  const child = spawn(path.join(scriptsDir, script), [...args], {
    env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe', 'ignore', 'pipe'],
  });
  const run: Running = {
    stdout: '', stderr: '', progress: '',
    exited: once(child, 'exit').then(([code]) => code as number | null),
    exitCode: () => child.exitCode,
  };
  child.stdout?.on('data', (chunk: Buffer) => (run.stdout += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (run.stderr += chunk.toString()));
  (child.stdio[4] as Readable).on('data', (chunk: Buffer) => (run.progress += chunk.toString()));
  return run;
}

describe('the scripts on EC2 whose reads lag behind its changes', function () {
  this.timeout(180_000);
  let emulator: RealisticEc2;
  let clock = 0;
  let env: Record<string, string>;

  beforeEach(async () => {
    await resetMoto();
    await createKeyPair(SCRIPT_DEFAULT_KEY_NAME);
    clock = 5_000_000;
    emulator = await startRealisticEc2({
      upstream: motoEndpoint(), pendingMs: 8_000, stoppingMs: 10_000, notFoundMs: [4_000, 4_000], now: () => clock,
    });
    env = { AWS_ENDPOINT_URL: emulator.endpoint };
  });
  afterEach(async () => {
    await emulator.close();
  });

  it('when EC2 does not show a new instance yet, then create_instance.sh --wait reports its id at once on the progress descriptor, asks again with growing pauses, and prints it once it runs', async () => {
    const run = spawnWithProgressPipe('create_instance.sh',
      ['--wait', '--poll-interval=1', '--progress-fd=4', '--', 'lagging', UBUNTU_X86_AMI, 't3.micro', '8'], env);

    await until('the script reported the launch', () => run.progress.includes('\n'));
    const progress = JSON.parse(run.progress);
    assert.deepEqual(Object.keys(progress).sort(), ['client_token', 'event', 'instance_id', 'launch_time', 'state']);
    assert.equal(progress.event, 'launched');
    assert.equal(progress.state, 'pending');
    assert.match(progress.instance_id, /^i-[0-9a-f]{17}$/);
    await until('the script was told twice that EC2 does not show it', () => (run.stderr.match(/does not show/g) ?? []).length >= 2);
    assert.equal(run.exitCode(), null, 'the script still waits');
    assert.match(run.stderr, new RegExp(`EC2 does not show ${progress.instance_id} yet \\(its reads lag behind a launch\\); asking again in 1s`));

    clock += 8_000; // EC2 shows it now, and it runs

    assert.equal(await run.exited, 0, run.stderr);
    const printed = JSON.parse(run.stdout);
    assert.equal(printed.id, progress.instance_id);
    assert.equal(printed.state, 'running');
    assert.equal(printed.client_token, progress.client_token);
    assert.equal(run.progress.trim().split('\n').length, 1, 'one progress line');
    assert.equal((await allEc2Instances()).length, 1);
  });

  it('when EC2 still does not show the new instance at the end of the wait, then it exits 7 with an error naming the instance it launched', async () => {
    const result = await runScript('create_instance.sh', ['--wait', '--wait-timeout=2', '--poll-interval=1', '--', 'never-seen', UBUNTU_X86_AMI, 't3.micro', '8'], { env });

    assert.equal(result.exitCode, 7, result.stderr);
    const [only] = await allEc2Instances();
    assert.deepEqual(result.json(), {
      error: { code: 'Timeout', message: `${only.InstanceId} was launched, but EC2 did not show it within 2s`, instance_id: only.InstanceId },
    });
  });

  it('when a pending instance is stopped, then stop_instance.sh exits 10 with EC2\'s IncorrectInstanceState in its words and the instance is not stopped', async () => {
    const [id] = (await launchOutsideTheService()) as [string];
    // Not launched through the emulator: it knows nothing of it, so start it as EC2 would, pending.
    await runScript('stop_instance.sh', ['--no-wait', id], { env });
    clock += 10_000;
    const started = await runScript('start_instance.sh', ['--no-wait', id], { env });
    assert.equal(started.json().state, 'pending');

    const result = await runScript('stop_instance.sh', ['--no-precheck', id], { env });

    assert.equal(result.exitCode, 10, result.stderr);
    assert.deepEqual(result.json().error, {
      code: 'IncorrectInstanceState', message: `This instance '${id}' is not in a state from which it can be stopped.`,
    });
    assert.equal((await ec2InstanceById(id))?.State?.Name, 'running', 'EC2 did not stop it');
  });

  it('when a stopping instance is started, then start_instance.sh exits 10 with EC2\'s words, and a batch start names only that id', async () => {
    const [stopping, stopped] = (await launchOutsideTheService({ count: 2 })) as [string, string];
    await runScript('stop_instance.sh', ['--no-wait', stopped], { env });
    clock += 10_000;
    await runScript('stop_instance.sh', ['--no-wait', stopping], { env });

    const one = await runScript('start_instance.sh', ['--no-precheck', stopping], { env });
    const batch = await runScript('start_instance.sh', ['--no-wait', stopping, stopped], { env });

    assert.equal(one.exitCode, 10, one.stderr);
    assert.equal(one.json().error.message, `The instance '${stopping}' is not in a state from which it can be started.`);
    assert.equal(batch.exitCode, 9, batch.stderr);
    const printed = batch.json();
    assert.deepEqual(printed.errors.map((e: any) => [e.instance_id, e.exit_code, e.error.code]), [[stopping, 10, 'IncorrectInstanceState']]);
    assert.deepEqual(printed.instances.map((i: any) => [i.id, i.state]), [[stopped, 'pending']]);
  });

  it('when --progress-fd names the result\'s descriptor, ours, or one that is not open, then create_instance.sh exits 2 and launches nothing', async () => {
    for (const [fd, words] of [['1', 'must be 2 or 4 to 9'], ['3', 'must be 2 or 4 to 9'], ['7', 'file descriptor 7 is not open']] as const) {
      const result = await runScript('create_instance.sh', [`--progress-fd=${fd}`, '--', 'x', UBUNTU_X86_AMI, 't3.micro', '8'], { env });
      assert.equal(result.exitCode, 2, `${fd}: ${result.stderr}`);
      assert.match(result.json().error.message, new RegExp(words));
    }
    assert.equal((await allEc2Instances()).length, 0);
    assert.equal(emulator.stats.requests, 0, 'no AWS call was made');
  });
});
