/**
 * The realistic EC2 emulator (scripts/lib/realistic-ec2.ts) against the rules the AWS documentation gives:
 * eventual consistency after RunInstances, the transitional states and the calls they refuse, ClientToken
 * idempotency, throttling. Its clock is moved by the test, so nothing here waits on time. An in-process EC2
 * client talks to it; moto itself is read apart, to see what really happened there.
 */
import assert from 'node:assert/strict';
import {
  DescribeInstancesCommand, RunInstancesCommand, StartInstancesCommand, StopInstancesCommand, TerminateInstancesCommand,
  type EC2Client, type RunInstancesCommandInput,
} from '@aws-sdk/client-ec2';
import { startRealisticEc2, type RealisticEc2, type RealisticEc2Options } from '../../scripts/lib/realistic-ec2.js';
import { motoEndpoint } from '../support/global-fixture.js';
import { allEc2Instances, ec2ClientFor, ec2InstanceById, freshEc2, UBUNTU_X86_AMI } from '../support/ec2-reader.js';

const LAUNCH: RunInstancesCommandInput = { ImageId: UBUNTU_X86_AMI, InstanceType: 't3.micro', MinCount: 1, MaxCount: 1 };

describe('the realistic EC2 emulator behaves as AWS documents EC2', function () {
  this.timeout(60_000);
  let emulator: RealisticEc2;
  let client: EC2Client;
  let clock = 0;

  async function start(options: Partial<RealisticEc2Options> = {}): Promise<void> {
    clock = 1_000_000;
    emulator = await startRealisticEc2({
      upstream: motoEndpoint(), pendingMs: 8_000, stoppingMs: 10_000, shuttingDownMs: 6_000, notFoundMs: [2_000, 2_000],
      now: () => clock, ...options,
    });
    client = ec2ClientFor(emulator.endpoint);
  }
  const launch = async (input: Partial<RunInstancesCommandInput> = {}): Promise<string> =>
    (await client.send(new RunInstancesCommand({ ...LAUNCH, ...input }))).Instances?.[0]?.InstanceId as string;
  const stateOf = async (id: string): Promise<string | undefined> =>
    (await client.send(new DescribeInstancesCommand({ InstanceIds: [id] }))).Reservations?.[0]?.Instances?.[0]?.State?.Name;
  const listed = async (filters: Array<{ Name: string; Values: string[] }> = []): Promise<string[]> =>
    ((await client.send(new DescribeInstancesCommand(filters.length ? { Filters: filters } : {}))).Reservations ?? [])
      .flatMap((r) => r.Instances ?? []).map((i) => `${i.InstanceId} ${i.State?.Name}`);
  async function refusal(call: Promise<unknown>): Promise<{ code: string; message: string }> {
    const error = await call.then(() => undefined, (e: { name?: string; message?: string }) => e);
    assert.ok(error, 'the call was refused');
    return { code: error.name as string, message: error.message as string };
  }

  beforeEach(freshEc2);
  afterEach(async () => {
    client?.destroy();
    await emulator?.close();
  });

  it('when an instance was just launched, then requests naming it answer InvalidInstanceID.NotFound and listings leave it out until the window has passed', async () => {
    await start();
    const id = await launch();

    assert.deepEqual(await refusal(stateOf(id)), { code: 'InvalidInstanceID.NotFound', message: `The instance ID '${id}' does not exist` });
    assert.deepEqual(await listed(), []);
    assert.equal((await refusal(client.send(new StopInstancesCommand({ InstanceIds: [id] })))).code, 'InvalidInstanceID.NotFound');
    assert.equal((await ec2InstanceById(id))?.State?.Name, 'running', 'moto itself has it running all along');

    clock += 2_000;
    assert.equal(await stateOf(id), 'pending');
    assert.deepEqual(await listed(), [`${id} pending`]);
    assert.equal(emulator.stats.notFound, 2);
  });

  it('when an instance is launched, then it is pending for pendingMs and running after, in reads, listings and state filters alike', async () => {
    await start({ notFoundMs: [0, 0] });
    const id = await launch();
    clock += 7_999;
    assert.equal(await stateOf(id), 'pending');
    assert.deepEqual(await listed([{ Name: 'instance-state-name', Values: ['running'] }]), []);
    assert.deepEqual(await listed([{ Name: 'instance-state-name', Values: ['pending'] }]), [`${id} pending`]);

    clock += 1;
    assert.equal(await stateOf(id), 'running');
    assert.deepEqual(await listed([{ Name: 'instance-state-name', Values: ['running'] }]), [`${id} running`]);
    assert.deepEqual(await listed([{ Name: 'instance-state-code', Values: ['0'] }]), []);
  });

  it('when a pending instance is stopped, then EC2 answers IncorrectInstanceState and nothing changes', async () => {
    await start({ notFoundMs: [0, 0] });
    const id = await launch();

    const refused = await refusal(client.send(new StopInstancesCommand({ InstanceIds: [id] })));

    assert.deepEqual(refused, { code: 'IncorrectInstanceState', message: `This instance '${id}' is not in a state from which it can be stopped.` });
    assert.equal((await ec2InstanceById(id))?.State?.Name, 'running', 'moto was not asked to stop it');
    assert.equal(await stateOf(id), 'pending');
    assert.equal(emulator.stats.incorrectState, 1);
  });

  it('when a running instance is stopped, then it is stopping for stoppingMs, a start meanwhile is refused, and then it is stopped', async () => {
    await start({ notFoundMs: [0, 0] });
    const id = await launch();
    clock += 8_000;

    const stopped = await client.send(new StopInstancesCommand({ InstanceIds: [id] }));

    assert.deepEqual(stopped.StoppingInstances?.map((i) => [i.PreviousState?.Name, i.CurrentState?.Name, i.CurrentState?.Code]), [['running', 'stopping', 64]]);
    assert.equal(await stateOf(id), 'stopping');
    const again = await client.send(new StopInstancesCommand({ InstanceIds: [id] }));
    assert.deepEqual(again.StoppingInstances?.map((i) => [i.PreviousState?.Name, i.CurrentState?.Name]), [['stopping', 'stopping']], 'a second stop is no error');
    assert.deepEqual(await refusal(client.send(new StartInstancesCommand({ InstanceIds: [id] }))),
      { code: 'IncorrectInstanceState', message: `The instance '${id}' is not in a state from which it can be started.` });
    clock += 10_000;
    assert.equal(await stateOf(id), 'stopped');

    const started = await client.send(new StartInstancesCommand({ InstanceIds: [id] }));

    assert.deepEqual(started.StartingInstances?.map((i) => [i.PreviousState?.Name, i.CurrentState?.Name]), [['stopped', 'pending']]);
    clock += 8_000;
    assert.equal(await stateOf(id), 'running');
  });

  it('when an instance is terminated, even while pending, then it is shutting-down for shuttingDownMs and terminated after', async () => {
    await start({ notFoundMs: [0, 0] });
    const id = await launch();

    const terminated = await client.send(new TerminateInstancesCommand({ InstanceIds: [id] }));

    assert.deepEqual(terminated.TerminatingInstances?.map((i) => [i.PreviousState?.Name, i.CurrentState?.Name]), [['pending', 'shutting-down']]);
    assert.equal(await stateOf(id), 'shutting-down');
    assert.equal((await refusal(client.send(new StopInstancesCommand({ InstanceIds: [id] })))).code, 'IncorrectInstanceState');
    clock += 6_000;
    assert.equal(await stateOf(id), 'terminated');
  });

  it('when RunInstances is repeated with the same ClientToken and parameters, then it answers the first reservation and launches nothing', async () => {
    await start();
    const first = await client.send(new RunInstancesCommand({ ...LAUNCH, ClientToken: 'token-1' }));

    const second = await client.send(new RunInstancesCommand({ ...LAUNCH, ClientToken: 'token-1' }));

    assert.equal(second.ReservationId, first.ReservationId);
    assert.deepEqual(second.Instances?.map((i) => i.InstanceId), first.Instances?.map((i) => i.InstanceId));
    assert.equal((await allEc2Instances()).length, 1, 'moto holds one instance');
    assert.deepEqual({ launched: emulator.stats.launched, replayed: emulator.stats.replayed }, { launched: 1, replayed: 1 });
  });

  it('when RunInstances reuses a ClientToken with other parameters, then it answers IdempotentParameterMismatch and launches nothing', async () => {
    await start();
    await launch({ ClientToken: 'token-2' });

    const refused = await refusal(client.send(new RunInstancesCommand({ ...LAUNCH, InstanceType: 't3.small', ClientToken: 'token-2' })));

    assert.equal(refused.code, 'IdempotentParameterMismatch');
    assert.equal((await allEc2Instances()).length, 1);
  });

  it('when two launches with one ClientToken arrive while the first is still with EC2, then both answer the one instance', async () => {
    await start();
    const held = emulator.hold('RunInstances', 'after');
    const first = client.send(new RunInstancesCommand({ ...LAUNCH, ClientToken: 'token-3' }));
    await held.entered;
    const second = client.send(new RunInstancesCommand({ ...LAUNCH, ClientToken: 'token-3' }));

    held.release();

    const [a, b] = await Promise.all([first, second]);
    assert.equal(a.Instances?.[0]?.InstanceId, b.Instances?.[0]?.InstanceId);
    assert.equal((await allEc2Instances()).length, 1);
  });

  it('when throttling is seeded, then about that share of requests gets RequestLimitExceeded, the same seed repeats the same answers, and no request is refused more than twice in a row', async () => {
    async function answers(seed: number): Promise<string[]> {
      await start({ throttleRate: 0.3, seed });
      const seen: string[] = [];
      for (let i = 0; i < 60; i += 1) {
        seen.push(await client.send(new DescribeInstancesCommand({})).then(() => 'ok', (e: { name: string }) => e.name));
      }
      client.destroy();
      await emulator.close();
      return seen;
    }

    const first = await answers(7);
    const again = await answers(7);
    const other = await answers(8);

    const throttled = first.filter((a) => a === 'RequestLimitExceeded').length;
    assert.ok(throttled >= 9 && throttled <= 27, `${throttled} of 60 throttled at a rate of 0.3`);
    assert.deepEqual(first.filter((a) => a !== 'ok' && a !== 'RequestLimitExceeded'), []);
    assert.deepEqual(again, first, 'the same seed gives the same answers');
    assert.notDeepEqual(other, first, 'another seed gives others');
    assert.ok(!first.join(' ').includes('RequestLimitExceeded RequestLimitExceeded RequestLimitExceeded'), 'never three in a row');
    emulator = await startRealisticEc2({ upstream: motoEndpoint() }); // closed by afterEach
    client = ec2ClientFor(emulator.endpoint);
  });
});
