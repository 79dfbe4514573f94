/**
 * A corpus of bad input on every endpoint: each answers 4xx application/problem+json, no script runs and
 * EC2 (read in-process) holds no instance afterwards.
 */
import assert from 'node:assert/strict';
import request from 'supertest';
import { resetMoto } from '../support/global-fixture.js';
import { UBUNTU_X86_AMI, allEc2Instances, createKeyPair } from '../support/ec2-reader.js';
import { createHarnessOn, expectProblem, storeKinds, type Harness } from '../support/app-harness.js';

const valid = { name: 'web-1', ami: UBUNTU_X86_AMI, instance_type: 't3.micro', storage_gb: 8 };

interface BadBody {
  why: string;
  body: string;
  status: number;
  field?: string;
  contentType?: string;
}

const json = (value: unknown): string => JSON.stringify(value);

const BAD_CREATE_BODIES: BadBody[] = [
  { why: 'malformed JSON', body: '{"name": "web-1",', status: 400 },
  { why: 'a JSON array', body: json([valid]), status: 400 },
  { why: 'a bare string', body: '"web-1"', status: 400 },
  { why: 'an empty object', body: '{}', status: 400, field: 'name' },
  { why: 'an unknown field', body: json({ ...valid, admin: true }), status: 400, field: 'admin' },
  { why: 'a missing storage_gb', body: json({ name: 'a', ami: valid.ami, instance_type: 't3.micro' }), status: 400, field: 'storage_gb' },
  { why: 'storage_gb as a string', body: json({ ...valid, storage_gb: '8' }), status: 400, field: 'storage_gb' },
  { why: 'storage_gb fractional', body: json({ ...valid, storage_gb: 8.5 }), status: 400, field: 'storage_gb' },
  { why: 'storage_gb zero', body: json({ ...valid, storage_gb: 0 }), status: 400, field: 'storage_gb' },
  { why: 'storage_gb negative', body: json({ ...valid, storage_gb: -5 }), status: 400, field: 'storage_gb' },
  { why: 'storage_gb null', body: json({ ...valid, storage_gb: null }), status: 400, field: 'storage_gb' },
  { why: 'a name that looks like an option', body: json({ ...valid, name: '--help' }), status: 400, field: 'name' },
  { why: 'a name with a shell substitution', body: json({ ...valid, name: '$(touch /tmp/pwned)' }), status: 400, field: 'name' },
  { why: 'a name with a newline', body: json({ ...valid, name: 'a\nb' }), status: 400, field: 'name' },
  { why: 'an empty name', body: json({ ...valid, name: '' }), status: 400, field: 'name' },
  { why: 'a 129-character name', body: json({ ...valid, name: 'a'.repeat(129) }), status: 400, field: 'name' },
  { why: 'a name as a number', body: json({ ...valid, name: 42 }), status: 400, field: 'name' },
  { why: 'a malformed AMI id', body: json({ ...valid, ami: 'ami-XYZ' }), status: 400, field: 'ami' },
  { why: 'an AMI id as a URL', body: json({ ...valid, ami: 'file:///etc/passwd' }), status: 400, field: 'ami' },
  { why: 'a malformed instance type', body: json({ ...valid, instance_type: 'T3 MICRO' }), status: 400, field: 'instance_type' },
  { why: 'create_security_group as a string', body: json({ ...valid, create_security_group: 'yes' }), status: 400, field: 'create_security_group' },
  { why: 'a body over 16 kB', body: json({ ...valid, pad: 'x'.repeat(17 * 1024) }), status: 413 },
  { why: 'a form-encoded body', body: 'name=web-1&ami=ami-1e749f67', status: 415, contentType: 'application/x-www-form-urlencoded' },
  { why: 'a text/plain body', body: json(valid), status: 415, contentType: 'text/plain' },
];

const BAD_IDS = [
  'i-123', 'i-0123456789ABCDEF0', 'i-0123456789abcdef0x', 'ami-1e749f67', '--all', 'i-%24(id)',
  `i-${'0'.repeat(40)}`, '%20i-0123456789abcdef0',
];

for (const kind of storeKinds()) describe(`bad input is refused before any script runs (${kind})`, function () {
  let h: Harness;

  // No request here may run a script, so one service and one emulator serve the whole file: each test
  // checks that nothing ran and nothing was recorded, and EC2 is checked once at the end.
  before(async () => {
    await resetMoto();
    await createKeyPair();
    h = await createHarnessOn(kind);
  });
  after(async () => {
    try {
      assert.equal((await allEc2Instances()).length, 0, 'EC2 holds no instance after the whole corpus');
    } finally {
      h.close();
    }
  });

  async function assertNothingHappened(): Promise<void> {
    assert.deepEqual(h.runs.map((r) => r.script), [], 'no script ran');
    assert.deepEqual(await h.sql('SELECT instance_id FROM instances'), [], 'nothing recorded');
    assert.deepEqual(await h.sql('SELECT id FROM operations'), [], 'no operation recorded');
  }

  for (const bad of BAD_CREATE_BODIES) {
    it(`when POST /instances gets ${bad.why}, then ${bad.status} problem+json and nothing is created`, async () => {
      const response = await request(h.app)
        .post('/instances')
        .set('Content-Type', bad.contentType ?? 'application/json')
        .send(bad.body);

      const problem = expectProblem(response, bad.status);
      if (bad.field) {
        assert.ok(Array.isArray(problem.errors), 'validation problems list the failing fields');
        assert.ok(
          problem.errors.some((e: { field: string }) => e.field === bad.field),
          `errors name ${bad.field}: ${JSON.stringify(problem.errors)}`,
        );
      }
      await assertNothingHappened();
    });
  }

  for (const id of BAD_IDS) {
    for (const [method, suffix] of [['get', ''], ['delete', ''], ['post', '/start'], ['post', '/stop']] as const) {
      it(`when ${method.toUpperCase()} /instances/${id}${suffix} is called, then 400 or 404 problem+json and no script runs`, async () => {
        const response = await request(h.app)[method](`/instances/${id}${suffix}`);

        assert.ok([400, 404].includes(response.status), `status ${response.status}`);
        expectProblem(response, response.status);
        await assertNothingHappened();
      });
    }
  }

  it('when a malformed instance id is used, then the problem names the id field', async () => {
    const response = await request(h.app).get('/instances/i-123');
    const problem = expectProblem(response, 400);
    assert.deepEqual(problem.errors.map((e: { field: string }) => e.field), ['id']);
  });

  const BAD_QUERIES: Array<[string, string]> = [
    ['state=exploded', 'state'],
    ['limit=0', 'limit'],
    ['limit=1001', 'limit'],
    ['limit=ten', 'limit'],
    ['include_terminated=maybe', 'include_terminated'],
    ['cursor=!!!', 'cursor'],
    ['cursor=bm90LWEtY3Vyc29y', 'cursor'],
    ['colour=blue', 'colour'],
    ['state=running&state=stopped', 'state'],
  ];
  for (const [query, field] of BAD_QUERIES) {
    it(`when GET /instances?${query} is called, then 400 problem+json naming ${field}`, async () => {
      const response = await request(h.app).get(`/instances?${query}`);

      const problem = expectProblem(response, 400);
      assert.ok(problem.errors.some((e: { field: string }) => e.field === field), JSON.stringify(problem.errors));
      await assertNothingHappened();
    });
  }

  it('when start gets malformed JSON, then 400 problem+json and no script runs', async () => {
    const response = await request(h.app)
      .post('/instances/i-0123456789abcdef0/start')
      .set('Content-Type', 'application/json')
      .send('{oops');

    expectProblem(response, 400);
    await assertNothingHappened();
  });

  it('when an unknown path or method is used, then 404 / 405 problem+json', async () => {
    expectProblem(await request(h.app).get('/nope'), 404);
    const response = await request(h.app).put('/instances');
    expectProblem(response, 405);
    assert.equal(response.headers.allow, 'GET, POST');
    expectProblem(await request(h.app).put('/instances/i-0123456789abcdef0'), 405);
    expectProblem(await request(h.app).patch('/instances/i-0123456789abcdef0/start'), 405);
    await assertNothingHappened();
  });

  it('when X-Request-Id is hostile, then a fresh id is generated and echoed in the problem', async () => {
    const response = await request(h.app).get('/instances/i-123').set('X-Request-Id', 'bad id with spaces');
    const problem = expectProblem(response, 400);
    assert.notEqual(response.headers['x-request-id'], 'bad id with spaces');
    assert.equal(problem.request_id, response.headers['x-request-id']);
  });
});
