/**
 * Unsafe consumption of the EC2 layer's output (OWASP API10) and redaction: hostile or broken script output
 * fails its request cleanly (502 problem+json) and the server keeps serving; hostile values are refused
 * by the output schemas; secrets a script echoes never reach logs, records or answers.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import request from 'supertest';
import { REDACTED, redactText, registerSecret } from '../../app/redact.js';
import { ScriptError } from '../../app/domain/errors.js';
import { createScriptRunner } from '../../app/ec2/runner.js';
import { createLogger } from '../../app/logger.js';
import { validateEc2Instance, validateEc2InstanceList } from '../../app/schemas/validators.js';
import { expectProblem, type Harness } from '../support/app-harness.js';
import { OPERATOR_TOKEN, bearer, capturedText, securedHarness, securityFixtures } from './support.js';

const ID = 'i-0123456789abcdef0';
const instance = (overrides: Record<string, unknown> = {}) => ({
  id: ID, name: 'web', state: 'running', public_ip: '203.0.113.5', private_ip: '10.0.0.5', ami: 'ami-1e749f67',
  instance_type: 't3.micro', storage_gb: 8, key_name: 'k', security_group_ids: ['sg-0123456789abcdef0'],
  launch_time: '2024-05-01T10:00:00+00:00', client_token: null, managed: true, ...overrides,
});

describe('script output schemas refuse hostile values', () => {
  it('when the output is well-formed, then it is accepted', () => {
    assert.ok(validateEc2Instance(instance()));
  });

  // EC2 allows any characters in a tag value: a name is data, kept as EC2 has it and only ever shown
  // JSON-encoded (test/lifecycle/odd-names.test.ts follows one through sync, records, answers and logs).
  it('when a script reports a name with control characters or a newline, then it is accepted as EC2 has it', () => {
    assert.ok(validateEc2Instance(instance({ name: 'evil\u001b[31m\u0007' })));
    assert.ok(validateEc2InstanceList({ instances: [instance(), instance({ name: 'line1\nline2' })] }));
  });

  const hostile: Array<[string, Record<string, unknown>]> = [
    ['a name longer than EC2 allows', { name: 'x'.repeat(257) }],
    ['an instance id with a path', { id: 'i-../../etc/passwd' }],
    ['an instance id in upper case', { id: 'i-0123456789ABCDEF0' }],
    ['an instance id that is too long', { id: `i-${'0'.repeat(40)}` }],
    ['an AMI id with a shell substitution', { ami: 'ami-$(id)' }],
    ['an instance type with a space', { instance_type: 't3 micro' }],
    ['a public IP that is not an address', { public_ip: '1.2.3.4; rm -rf /' }],
    ['a security group that is not an id', { security_group_ids: ['default'] }],
    ['a negative volume', { storage_gb: -1 }],
    ['an unknown state', { state: 'exploded' }],
    ['a launch time with control characters', { launch_time: '2024\u0000' }],
  ];
  for (const [why, overrides] of hostile) {
    it(`when a script reports ${why}, then the schema refuses the document`, () => {
      assert.equal(validateEc2Instance(instance(overrides)), false);
      assert.equal(validateEc2InstanceList({ instances: [instance(), instance(overrides)] }), false, 'one bad entry spoils the list');
    });
  }
});

describe('hostile script output through the API', function () {
  let h: Harness;

  function arrange(mode: string, env: Record<string, string> = {}): void {
    h = securedHarness({ scriptsDir: path.join(securityFixtures, 'hostile'), env: { HOSTILE_MODE: mode, ...env } });
    h.store.instances.insertLaunch({
      clientToken: 'ec2c-00000000-0000-4000-8000-0000000000aa', name: 'web', ami: 'ami-1e749f67', instanceType: 't3.micro',
      storageGb: 8, keyName: 'k', securityGroupId: null, loginUser: 'ubuntu',
    });
    h.store.instances.completeLaunch('ec2c-00000000-0000-4000-8000-0000000000aa', {
      instanceId: ID, name: 'web', state: 'running', publicIp: null, privateIp: null, storageGb: 8, keyName: 'k',
      securityGroupId: null, launchTime: null,
    });
  }
  afterEach(() => h.close());

  for (const mode of ['bad-id', 'uppercase-id', 'proto', 'huge', 'deep', 'two-docs']) {
    it(`when describe_instance.sh prints ${mode}, then GET answers 502, the record is untouched and the server still serves`, async () => {
      arrange(mode);
      const before = h.row(ID);

      const response = await request(h.app).get(`/instances/${ID}`).set('Authorization', bearer(OPERATOR_TOKEN));

      const problem = expectProblem(response, 502);
      assert.equal(problem.type, 'urn:ec2-creator:problem:ec2-layer-broken');
      assert.deepEqual(h.row(ID), before);
      assert.equal(({} as Record<string, unknown>).polluted, undefined, 'no prototype pollution');
      assert.equal((await request(h.app).get('/health')).status, 200);
      assert.doesNotMatch(JSON.stringify(response.body), /\u001b|\u0007/, 'no control characters reach the answer');
    });
  }

  it('when a script echoes a secret in its error and on stderr, then logs, records and the answer show it masked', async () => {
    const secret = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
    registerSecret(secret); // as the server does for AWS_SECRET_ACCESS_KEY at start-up
    arrange('secret', { LEAK_SECRET: secret });

    const response = await request(h.app).get(`/instances/${ID}`).set('Authorization', bearer(OPERATOR_TOKEN));

    const problem = expectProblem(response, 502);
    assert.ok(!JSON.stringify(problem).includes(secret));
    assert.match(problem.detail, /\[REDACTED\]/);
    const text = capturedText(h);
    assert.ok(!text.includes(secret), 'no log line or row holds the secret');
    assert.ok(text.includes(REDACTED));
  });

  it('when a script prints more than the runner accepts, then the run fails as a ScriptError, not a crash', async () => {
    const runner = createScriptRunner({
      scriptsDir: path.join(securityFixtures, 'hostile'), timeoutMs: 30_000, logger: createLogger({ silent: true }),
      env: { HOSTILE_MODE: 'huge' }, maxBufferBytes: 64 * 1024,
    });
    await assert.rejects(runner.run('describe_instance.sh', [ID], validateEc2Instance), (e: unknown) => e instanceof ScriptError);
  });
});

describe('redaction', () => {
  it('when log lines carry secrets, Authorization values or credential fields, then they are masked', () => {
    const secret = 'smtp-password-very-secret-123';
    registerSecret(secret);
    const stream = new PassThrough();
    let text = '';
    stream.on('data', (c: Buffer) => (text += c.toString('utf8')));
    const logger = createLogger({ stream });
    logger.info(`connecting with ${secret}`, {
      headers: { authorization: 'Bearer abc.def', Cookie: 'sid=1' },
      password: 'short',
      nested: [{ note: `token=${secret}` }],
      error: new Error(`auth failed for ${secret}`),
      echoed: 'Authorization: Basic dXNlcjpwYXNz',
    });
    const line = JSON.parse(text.trim());
    assert.ok(!text.includes(secret));
    assert.ok(!text.includes('abc.def') && !text.includes('dXNlcjpwYXNz') && !text.includes('sid=1') && !text.includes('short'));
    assert.equal(line.headers.authorization, REDACTED);
    assert.equal(line.password, REDACTED);
    assert.equal(line.message, `connecting with ${REDACTED}`);
    assert.equal(line.echoed, `Authorization: Basic ${REDACTED}`);
    assert.equal(redactText('nothing secret here'), 'nothing secret here');
  });
});
