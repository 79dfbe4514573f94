/**
 * GET /launch-policy through the real app: the configured launch limits, for any token (the Jenkins create
 * job reads its instance-type choices here), and the same 401 as every other endpoint without one.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Ajv } from 'ajv';
import request from 'supertest';
import { parseTokenList } from '../../app/auth/tokens.js';
import { launchPolicySchema } from '../../app/schemas/launch-policy.js';
import { UBUNTU_X86_AMI } from '../support/ec2-reader.js';
import { createHarness, expectProblem, type Harness } from '../support/app-harness.js';

const OPERATOR_TOKEN = `op_${randomBytes(24).toString('base64url')}`;
const VIEWER_TOKEN = `vw_${randomBytes(24).toString('base64url')}`;
const tokens = parseTokenList(`jenkins:operator:${OPERATOR_TOKEN},grafana:viewer:${VIEWER_TOKEN}`);
const bearer = (token: string): string => `Bearer ${token}`;

describe('GET /launch-policy', function () {
  let h: Harness;

  beforeEach(() => {
    h = createHarness({
      auth: { mode: 'tokens', tokens },
      config: { allowedInstanceTypes: ['t3.small', 'm7g.large'], maxStorageGb: 12, maxInstances: 3 },
    });
  });
  afterEach(() => h.close());

  it('when a viewer asks, then it answers the configured types, storage cap and quota as the document describes them', async () => {
    const response = await request(h.app).get('/launch-policy').set('Authorization', bearer(VIEWER_TOKEN));

    assert.equal(response.status, 200, JSON.stringify(response.body));
    assert.match(response.headers['content-type'] ?? '', /^application\/json/);
    assert.deepEqual(response.body, { allowed_instance_types: ['t3.small', 'm7g.large'], max_storage_gb: 12, max_instances: 3 });
    const validate = new Ajv({ strict: true }).compile(launchPolicySchema);
    assert.ok(validate(response.body), JSON.stringify(validate.errors));
    const document = (await request(h.app).get('/openapi.json').set('Authorization', bearer(VIEWER_TOKEN))).body;
    const documented = document.paths['/launch-policy'].get.responses;
    assert.deepEqual(documented['200'].content['application/json'].schema, { $ref: '#/components/schemas/LaunchPolicy' });
    assert.ok(documented['401'], 'the 401 is documented too');
    assert.deepEqual(h.runs, [], 'reading the policy runs no script');
  });

  it('when a type is missing from the policy it answers, then a create of that type is refused with 422 and nothing runs', async () => {
    const policy = (await request(h.app).get('/launch-policy').set('Authorization', bearer(OPERATOR_TOKEN))).body;
    assert.ok(!policy.allowed_instance_types.includes('t3.micro'));

    const create = await request(h.app)
      .post('/instances')
      .set('Authorization', bearer(OPERATOR_TOKEN))
      .send({ name: 'web-1', ami: UBUNTU_X86_AMI, instance_type: 't3.micro', storage_gb: 8 });

    const problem = expectProblem(create, 422);
    assert.ok(problem.errors.some((e: { field: string }) => e.field === 'instance_type'), JSON.stringify(problem));
    assert.deepEqual(h.runs, []);
  });

  it('when no token is sent, then 401 problem+json with a Bearer challenge and no policy in the answer', async () => {
    const response = await request(h.app).get('/launch-policy');

    const problem = expectProblem(response, 401);
    assert.equal(response.headers['www-authenticate'], 'Bearer realm="ec2-creator"');
    assert.match(problem.detail, /Authorization: Bearer/);
    assert.doesNotMatch(JSON.stringify(problem), /t3\.small|allowed_instance_types/);
  });

  it('when a wrong token is sent, then 401 invalid_token', async () => {
    const response = await request(h.app).get('/launch-policy').set('Authorization', bearer('x'.repeat(43)));

    expectProblem(response, 401);
    assert.equal(response.headers['www-authenticate'], 'Bearer realm="ec2-creator", error="invalid_token"');
  });

  it('when the policy is sent anything but GET, then 405 naming GET', async () => {
    const response = await request(h.app).post('/launch-policy').set('Authorization', bearer(OPERATOR_TOKEN)).send({});

    expectProblem(response, 405);
    assert.equal(response.headers.allow, 'GET');
  });
});
