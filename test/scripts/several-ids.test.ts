/**
 * start_instance.sh, stop_instance.sh and destroy_instance.sh given several instance ids (lib/batch.sh):
 * every id validated first, one AWS call per step for all of them, one document
 * {"instances": [...], "errors": [...]} in the order the ids were given, exit 0 or 9. Instances are
 * arranged in-process (a script run costs about a second per aws call); EC2 is checked in-process too.
 */
import { StopInstancesCommand, TerminateInstancesCommand } from '@aws-sdk/client-ec2';
import assert from 'node:assert/strict';
import { startThrottlingProxy } from '../support/fault-proxy.js';
import { motoEndpoint, resetMoto } from '../support/global-fixture.js';
import { createKeyPair, ec2Client, ec2InstanceById } from '../support/ec2-reader.js';
import { recordAwsCalls } from '../support/fake-aws.js';
import { SCRIPT_DEFAULT_KEY_NAME, launchManaged, launchUnmanaged, runScript, type ScriptResult } from '../support/scripts.js';

const FAST_POLL = ['--poll-interval=1'];
/** Well formed, and unknown to EC2. */
const UNKNOWN_ID = 'i-0123456789abcdef0';
const EXIT_SOME_FAILED = 9;

async function launchMany(count: number, name = 'batch'): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i += 1) ids.push((await launchManaged(`${name}-${i}`)).id);
  return ids;
}

async function stopInProcess(...ids: string[]): Promise<void> {
  await ec2Client().send(new StopInstancesCommand({ InstanceIds: ids }));
}

async function terminateInProcess(...ids: string[]): Promise<void> {
  await ec2Client().send(new TerminateInstancesCommand({ InstanceIds: ids }));
}

async function ec2State(id: string): Promise<string | undefined> {
  return (await ec2InstanceById(id))?.State?.Name;
}

/** The batch document, checked for its shape: exactly the two lists. */
function batchOf(result: ScriptResult): { instances: any[]; errors: any[] } {
  const printed = result.json();
  assert.deepEqual(Object.keys(printed).sort(), ['errors', 'instances'], `a batch document: ${result.stdout}`);
  assert.ok(Array.isArray(printed.instances) && Array.isArray(printed.errors), result.stdout);
  return printed;
}

/** The single error document a run ends with when the failure is no one id's. */
function singleErrorOf(result: ScriptResult): { code: string; message: string } {
  const printed = result.json();
  assert.deepEqual(Object.keys(printed), ['error'], `a single error document, not a batch one: ${result.stdout}`);
  return printed.error;
}

describe('several instance ids in one run', () => {
  let calls: ReturnType<typeof recordAwsCalls>;

  beforeEach(async () => {
    await resetMoto();
    await createKeyPair(SCRIPT_DEFAULT_KEY_NAME);
    calls = recordAwsCalls();
  });

  const run = (script: string, args: string[]) => runScript(script, args, { env: calls.env });

  describe('stop_instance.sh', () => {
    it('when two running instances and an unknown id are stopped, then the two are stopped, the unknown one is an error with exit_code 3, it exits 9, with one describe, one stop, one poll and one volume read', async () => {
      const [first, second] = (await launchMany(2)) as [string, string];
      const result = await run('stop_instance.sh', [...FAST_POLL, first, UNKNOWN_ID, second]);

      assert.equal(result.exitCode, EXIT_SOME_FAILED, result.stderr);
      const printed = batchOf(result);
      assert.deepEqual(printed.instances.map((i) => i.id), [first, second]);
      for (const instance of printed.instances) {
        assert.equal(instance.state, 'stopped');
        assert.equal(instance.public_ip, null);
        assert.equal(instance.storage_gb, 8);
        assert.equal(instance.managed, true);
      }
      assert.equal(printed.errors.length, 1, result.stdout);
      const [error] = printed.errors;
      assert.equal(error.instance_id, UNKNOWN_ID);
      assert.equal(error.exit_code, 3);
      assert.equal(error.error.code, 'InvalidInstanceID.NotFound');
      assert.match(error.error.message, new RegExp(UNKNOWN_ID));
      assert.deepEqual(Object.keys(error).sort(), ['error', 'exit_code', 'instance_id']);

      assert.equal(await ec2State(first), 'stopped');
      assert.equal(await ec2State(second), 'stopped');
      assert.deepEqual(calls.operations(), ['describe-instances', 'stop-instances', 'describe-instances', 'describe-volumes']);
    });

    it('when the same is asked with --no-precheck --no-storage, then EC2 refuses the whole stop, the ids are read once, the stop is retried without the unknown one and polled once, with the same results', async () => {
      const [first, second] = (await launchMany(2)) as [string, string];
      const result = await run('stop_instance.sh', ['--no-precheck', '--no-storage', ...FAST_POLL, first, UNKNOWN_ID, second]);

      assert.equal(result.exitCode, EXIT_SOME_FAILED, result.stderr);
      const printed = batchOf(result);
      assert.deepEqual(printed.instances.map((i) => i.id), [first, second]);
      for (const instance of printed.instances) {
        assert.equal(instance.state, 'stopped');
        assert.equal(instance.storage_gb, null);
      }
      assert.deepEqual(printed.errors.map((e) => [e.instance_id, e.exit_code, e.error.code]), [
        [UNKNOWN_ID, 3, 'InvalidInstanceID.NotFound'],
      ]);
      assert.match(result.stderr, /EC2 refused stop-instances for all ids/);

      assert.equal(await ec2State(first), 'stopped');
      assert.equal(await ec2State(second), 'stopped');
      assert.deepEqual(calls.operations(), ['stop-instances', 'describe-instances', 'stop-instances', 'describe-instances']);
    });

    it('when a terminated instance is among running ones, then it is an error with exit_code 10 (IncorrectInstanceState) and stays terminated, and the others are stopped', async () => {
      const [first, gone, last] = (await launchMany(3)) as [string, string, string];
      await terminateInProcess(gone);
      const result = await run('stop_instance.sh', [...FAST_POLL, '--no-storage', first, gone, last]);

      assert.equal(result.exitCode, EXIT_SOME_FAILED, result.stderr);
      const printed = batchOf(result);
      assert.deepEqual(printed.instances.map((i) => [i.id, i.state]), [[first, 'stopped'], [last, 'stopped']]);
      assert.equal(printed.errors.length, 1, result.stdout);
      assert.equal(printed.errors[0].instance_id, gone);
      assert.equal(printed.errors[0].exit_code, 10);
      assert.equal(printed.errors[0].error.code, 'IncorrectInstanceState');
      assert.match(printed.errors[0].error.message, /terminated/);

      assert.equal(await ec2State(first), 'stopped');
      assert.equal(await ec2State(last), 'stopped');
      assert.equal(await ec2State(gone), 'terminated');
      assert.deepEqual(calls.operations(), ['describe-instances', 'stop-instances', 'describe-instances']);
    });

    it('when an id is given twice, then it is acted on once and listed once, in the order first given', async () => {
      const [first, second] = (await launchMany(2)) as [string, string];
      const result = await run('stop_instance.sh', [...FAST_POLL, '--no-storage', second, first, second]);

      assert.equal(result.exitCode, 0, result.stderr);
      const printed = batchOf(result);
      assert.deepEqual(printed.instances.map((i) => i.id), [second, first]);
      assert.deepEqual(printed.errors, []);
      assert.match(result.stderr, /given more than once; acting on it once/);
      assert.equal(await ec2State(first), 'stopped');
      assert.equal(await ec2State(second), 'stopped');
      assert.deepEqual(calls.operations(), ['describe-instances', 'stop-instances', 'describe-instances']);
    });
  });

  describe('start_instance.sh', () => {
    it('when several stopped instances are started and all is well, then it exits 0 with no errors and every one running, with one describe, one start, one poll and one volume read', async () => {
      const ids = await launchMany(3);
      await stopInProcess(...ids);
      const result = await run('start_instance.sh', [...FAST_POLL, ...ids]);

      assert.equal(result.exitCode, 0, result.stderr);
      const printed = batchOf(result);
      assert.deepEqual(printed.errors, []);
      assert.deepEqual(printed.instances.map((i) => i.id), ids);
      for (const instance of printed.instances) {
        assert.equal(instance.state, 'running');
        assert.equal(instance.storage_gb, 8);
        const inEc2 = await ec2InstanceById(instance.id);
        assert.equal(inEc2.State.Name, 'running');
        assert.ok(instance.public_ip, 'a running instance has a public IP');
        assert.equal(instance.public_ip, inEc2.PublicIpAddress);
      }
      assert.deepEqual(calls.operations(), ['describe-instances', 'start-instances', 'describe-instances', 'describe-volumes']);
    });
  });

  describe('start_instance.sh and stop_instance.sh with --no-precheck', () => {
    for (const [script, verb, before] of [['start_instance.sh', 'start', 'stopped'], ['stop_instance.sh', 'stop', 'running']] as const) {
    it(`when ${script} skips its check (--no-precheck) and EC2 reports one of the ids was terminated, then that id is an error with exit_code 10, as a single-id run would exit 10`, async () => {
      // Real EC2 refuses to start or stop a terminated instance; the emulator acts on it instead and
      // answers PreviousState terminated. The single-id run reads the state it was in from the answer and
      // exits 10 (test/scripts/aws-calls.test.ts); several ids must treat that id the same way.
      const [fine, gone] = (await launchMany(2)) as [string, string];
      if (before === 'stopped') await stopInProcess(fine);
      await terminateInProcess(gone);
      const result = await run(script, ['--no-precheck', '--no-storage', ...FAST_POLL, fine, gone]);

      assert.equal(result.exitCode, EXIT_SOME_FAILED, `${result.stdout}\n${result.stderr}`);
      const printed = batchOf(result);
      assert.deepEqual(printed.instances.map((i) => i.id), [fine]);
      assert.deepEqual(printed.errors.map((e) => [e.instance_id, e.exit_code, e.error.code]), [[gone, 10, 'IncorrectInstanceState']]);
      assert.match(result.stderr, new RegExp(`cannot ${verb} ${gone}: it is terminated`));
    });
    }
  });

  describe('a malformed id among good ones', () => {
    for (const script of ['start_instance.sh', 'stop_instance.sh', 'destroy_instance.sh']) {
      it(`when ${script} is given one, then it exits 2 with an error document naming it, before any AWS call, and nothing changes`, async () => {
        const [first, second] = (await launchMany(2)) as [string, string];
        const malformed = 'i-NOTHEX99';
        const result = await run(script, [first, malformed, second]);

        assert.equal(result.exitCode, 2, result.stderr);
        const error = singleErrorOf(result);
        assert.equal(error.code, 'InvalidArgument');
        assert.match(error.message, new RegExp(`'${malformed}'`));
        assert.deepEqual(calls.operations(), []);
        assert.equal(await ec2State(first), 'running');
        assert.equal(await ec2State(second), 'running');
      });
    }
  });

  describe('destroy_instance.sh', () => {
    it('when several are destroyed, one unmanaged, one already terminated and one unknown, then the managed ones are terminated, the unmanaged one is NotManaged (exit_code 4) and keeps running, the terminated one is listed unchanged, the unknown one is exit_code 3, and it exits 9', async () => {
      const [doomed, gone, alsoDoomed] = (await launchMany(3, 'destroyed')) as [string, string, string];
      const unmanaged = await launchUnmanaged();
      await terminateInProcess(gone);
      const result = await run('destroy_instance.sh', [doomed, unmanaged, gone, UNKNOWN_ID, alsoDoomed]);

      assert.equal(result.exitCode, EXIT_SOME_FAILED, result.stderr);
      const printed = batchOf(result);
      assert.deepEqual(printed.instances.map((i) => i.id), [doomed, gone, alsoDoomed]);
      const [first, already, last] = printed.instances;
      for (const instance of [first, last]) {
        assert.ok(['shutting-down', 'terminated'].includes(instance.state), instance.state);
        assert.equal(instance.managed, true);
      }
      assert.equal(first.name, 'destroyed-0');
      assert.equal(already.state, 'terminated');
      assert.equal(already.name, 'destroyed-1');
      assert.match(result.stderr, new RegExp(`${gone} is already terminated; nothing to do`));

      assert.deepEqual(printed.errors.map((e) => [e.instance_id, e.exit_code, e.error.code]), [
        [unmanaged, 4, 'NotManaged'],
        [UNKNOWN_ID, 3, 'InvalidInstanceID.NotFound'],
      ]);
      assert.match(printed.errors[0].error.message, /--allow-unmanaged/);

      for (const id of [doomed, alsoDoomed]) {
        assert.ok(['shutting-down', 'terminated'].includes((await ec2State(id)) as string));
      }
      assert.equal(await ec2State(gone), 'terminated');
      assert.equal(await ec2State(unmanaged), 'running');
      assert.deepEqual(calls.operations(), ['describe-instances', 'describe-volumes', 'terminate-instances']);
    });

    it('when several are destroyed with --allow-unmanaged --wait, then the unmanaged one is terminated too, all with one terminate and one poll, and it exits 0', async () => {
      const [managed] = await launchMany(1, 'destroyed');
      const unmanaged = await launchUnmanaged();
      const result = await run('destroy_instance.sh', ['--allow-unmanaged', '--wait', '--no-storage', ...FAST_POLL, unmanaged, managed as string]);

      assert.equal(result.exitCode, 0, result.stderr);
      const printed = batchOf(result);
      assert.deepEqual(printed.errors, []);
      assert.deepEqual(printed.instances.map((i) => [i.id, i.state]), [[unmanaged, 'terminated'], [managed, 'terminated']]);
      assert.equal(await ec2State(unmanaged), 'terminated');
      assert.equal(await ec2State(managed as string), 'terminated');
      assert.deepEqual(calls.operations(), ['describe-instances', 'terminate-instances', 'describe-instances']);
    });
  });

  describe('a failure that is no one id\'s', () => {
    for (const [script, extra] of [
      ['stop_instance.sh', []],
      ['start_instance.sh', ['--no-precheck']],
      ['destroy_instance.sh', []],
    ] as const) {
      it(`when every aws call is throttled, then ${[script, ...extra].join(' ')} given several ids exits 5 with the single error document after one call, not a batch document`, async () => {
        const [first, second] = (await launchMany(2)) as [string, string];
        const result = await runScript(script, [...extra, first, second], { env: { ...calls.env, FAKE_AWS_MODE: 'throttled' } });
        assert.equal(result.exitCode, 5, result.stderr);
        const error = singleErrorOf(result);
        assert.equal(error.code, 'Throttling');
        assert.match(error.message, /Rate exceeded/);
        assert.equal(calls.operations().length, 1, calls.operations().join(' '));
        assert.equal(await ec2State(first), 'running');
        assert.equal(await ec2State(second), 'running');
      });
    }

    it('when the stop call itself is throttled after the read, then it exits 5 with the single error document, nothing is stopped, and nothing more is asked', async () => {
      const [first, second] = (await launchMany(2)) as [string, string];
      const result = await runScript('stop_instance.sh', [first, second], { env: { ...calls.env, FAKE_AWS_THROTTLE_OP: 'stop-instances' } });
      assert.equal(result.exitCode, 5, result.stderr);
      assert.equal(singleErrorOf(result).code, 'Throttling');
      assert.deepEqual(calls.operations(), ['describe-instances', 'stop-instances']);
      assert.equal(await ec2State(first), 'running');
      assert.equal(await ec2State(second), 'running');
    });

    it('when the stop call is throttled once (--no-precheck, one attempt), then the run ends there with exit 5 and the single error document, rather than retrying as if EC2 had refused an id', async () => {
      const [first, second] = (await launchMany(2)) as [string, string];
      const proxy = await startThrottlingProxy(motoEndpoint(), 1);
      try {
        const result = await runScript('stop_instance.sh', ['--no-precheck', '--no-storage', ...FAST_POLL, first, second], {
          env: { ...calls.env, AWS_ENDPOINT_URL: proxy.endpoint, AWS_MAX_ATTEMPTS: '1' },
        });
        assert.equal(result.exitCode, 5, `${result.stdout}\n${result.stderr}`);
        assert.equal(singleErrorOf(result).code, 'RequestLimitExceeded');
        assert.deepEqual(calls.operations(), ['stop-instances']);
        assert.equal(await ec2State(first), 'running');
        assert.equal(await ec2State(second), 'running');
      } finally {
        await proxy.close();
      }
    });

    it('when the poll is throttled after the stop, then it exits 5 with the single error document although EC2 did stop them', async () => {
      const [first, second] = (await launchMany(2)) as [string, string];
      const result = await runScript('stop_instance.sh', ['--no-precheck', '--no-storage', ...FAST_POLL, first, second], {
        env: { ...calls.env, FAKE_AWS_THROTTLE_OP: 'describe-instances' },
      });
      assert.equal(result.exitCode, 5, result.stderr);
      assert.equal(singleErrorOf(result).code, 'Throttling');
      assert.deepEqual(calls.operations(), ['stop-instances', 'describe-instances']);
      assert.equal(await ec2State(first), 'stopped');
      assert.equal(await ec2State(second), 'stopped');
    });
  });

  describe('a single id', () => {
    it('when one id is given, then the output is the plain instance document, not wrapped in a batch one', async () => {
      const [id] = (await launchMany(1, 'alone')) as [string];
      const result = await run('destroy_instance.sh', ['--no-storage', id]);
      assert.equal(result.exitCode, 0, result.stderr);
      const printed = result.json();
      assert.equal(printed.id, id);
      assert.equal(printed.name, 'alone-0');
      assert.ok(!('instances' in printed) && !('errors' in printed), result.stdout);
      assert.deepEqual(calls.operations(), ['describe-instances', 'terminate-instances']);
    });
  });
});
