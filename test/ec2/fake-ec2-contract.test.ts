/**
 * The fake EC2 port (test/support/fake-ec2.ts) answers as the real one does: the same calls, made on the
 * scripts' adapters over the real runner, the real scripts and moto, and on the fake, give the same
 * documents (ids, addresses and times aside) and the same failures (class, EC2 code, words). The domain and
 * HTTP tests that use the fake lean on this.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createScriptRunner } from '../../app/ec2/runner.js';
import { createEc2, type Ec2 } from '../../app/ec2/scripts.js';
import { ScriptError } from '../../app/ec2/errors.js';
import { createLogger } from '../../app/logger.js';
import type { ScriptProgress } from '../../app/schemas/script-outputs.js';
import { realScriptsDir } from '../support/app-harness.js';
import { freshEc2, launchOutsideTheService, TEST_KEY_NAME, UBUNTU_X86_AMI } from '../support/ec2-reader.js';
import { createFakeEc2, type FakeEc2 } from '../support/fake-ec2.js';

interface Ran {
  created: unknown;
  progress: Array<Omit<ScriptProgress, 'instance_id' | 'client_token' | 'launch_time'>>;
  described: unknown;
  stopped: string;
  started: string;
  tagged: unknown;
  listed: unknown;
  destroyed: string;
  failures: Record<string, { failure: string; code: string | undefined; message: string }>;
}

/** A document with what differs between any two launches (ids, addresses, times, groups) masked. */
function masked(document: any): unknown {
  return {
    ...document, id: 'i-…', public_ip: document.public_ip === null ? null : '…', private_ip: document.private_ip === null ? null : '…',
    launch_time: '…', security_group_ids: ['…'], client_token: document.client_token === null ? null : '…',
    tags: { ...document.tags, 'ec2-creator:client-token': '…' },
  };
}

async function failureOf(call: Promise<unknown>, ids: Record<string, string>): Promise<Ran['failures'][string]> {
  const error = await call.then(() => undefined, (e: unknown) => e);
  assert.ok(error instanceof ScriptError, `expected a ScriptError, got ${String(error)}`);
  let message = error.message;
  for (const [name, id] of Object.entries(ids)) message = message.split(id).join(name);
  return { failure: error.failure, code: error.details.code, message };
}

/** One sequence of calls on an EC2 port; `elsewhere` makes an instance behind the service's back. */
async function exercise(ec2: Ec2, elsewhere: () => Promise<string>): Promise<Ran> {
  const progress: Ran['progress'] = [];
  const token = `ec2c-contract-${Math.random().toString(16).slice(2, 10)}`;
  const created = await ec2.createInstance({
    name: 'contract', ami: UBUNTU_X86_AMI, instanceType: 't3.micro', storageGb: 8, keyName: TEST_KEY_NAME, clientToken: token,
    tags: { team: 'web' }, owner: 'alice', expiresAt: '2030-01-01T00:00:00.000Z', rootDevice: '/dev/sda1',
  }, { onProgress: ({ instance_id: _id, client_token: _token, launch_time: _time, ...rest }) => progress.push(rest) });
  const id = created.id;
  const other = await elsewhere();
  const described = await ec2.describeInstance(id, {}, { storage: true });
  const stopped = (await ec2.stopInstance(id)).state;
  const started = (await ec2.startInstance(id)).state;
  const tagged = { ...(await ec2.tagInstance(id, { set: { cost: 'c-1' }, remove: ['team'] })).tags, 'ec2-creator:client-token': '…' };
  const listing = await ec2.listInstances({ all: true });
  const listed = listing.instances.map((i) => [i.id === id ? 'ours' : i.id === other ? 'elsewhere' : i.id, i.managed]).sort();
  const failures: Ran['failures'] = {
    unknownId: await failureOf(ec2.describeInstance('i-0123456789abcdef0'), {}),
    unmanagedDestroy: await failureOf(ec2.destroyInstance(other), { OTHER: other }),
    missingKey: await failureOf(ec2.createInstance({
      name: 'no-key', ami: UBUNTU_X86_AMI, instanceType: 't3.micro', storageGb: 8, keyName: 'no-such-key', clientToken: `${token}-2`,
    }), {}),
  };
  const destroyed = (await ec2.destroyInstance(id)).state;
  failures.startTerminated = await failureOf(ec2.startInstance(id), { ID: id });
  return { created: masked(created), progress, described: masked(described), stopped, started, tagged, listed, destroyed, failures } as Ran;
}

describe('the fake EC2 port answers as the scripts do', function () {
  this.timeout(180_000);

  it('when the same calls are made on the real scripts and on the fake, then the documents and the failures are the same', async () => {
    await freshEc2();
    const sink = new Writable({ write: (_chunk, _encoding, done) => done() });
    const runner = createScriptRunner({
      scriptsDir: realScriptsDir, timeoutMs: 60_000, logger: createLogger({ level: 'error', stream: sink }), env: { KEY_NAME: TEST_KEY_NAME },
    });
    const real = await exercise(createEc2(runner, { pollIntervalS: 1 }), async () => (await launchOutsideTheService({ keyName: TEST_KEY_NAME }))[0] as string);
    const fake: FakeEc2 = createFakeEc2();
    const faked = await exercise(fake, async () => fake.launchElsewhere().id);

    // The scripts' own messages name the ids; the fake's are masked the same way. Where EC2's words come
    // through (the emulator's), only the class and code must agree.
    for (const name of ['unknownId', 'missingKey'] as const) {
      assert.deepEqual([faked.failures[name]?.failure, faked.failures[name]?.code], [real.failures[name]?.failure, real.failures[name]?.code], name);
    }
    const { failures: realFailures, ...realRest } = real;
    const { failures: fakeFailures, ...fakeRest } = faked;
    assert.deepEqual(fakeRest, realRest);
    for (const name of ['unmanagedDestroy', 'startTerminated'] as const) {
      assert.deepEqual([fakeFailures[name]?.failure, fakeFailures[name]?.code], [realFailures[name]?.failure, realFailures[name]?.code], name);
    }
  });
});
