/**
 * Resource limits: the live-instance quota (409 before any script runs, nothing launched in EC2), the
 * per-token rate limit on changes (429 + Retry-After, then recovery, with an injected clock), 413 for big
 * bodies even when authenticated, helmet's headers, and the HTTP server's slow-client timeouts.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { connect } from 'node:net';
import request from 'supertest';
import { applyServerTimeouts } from '../../app/http/limits.js';
import { resetMoto } from '../support/global-fixture.js';
import { UBUNTU_X86_AMI, allEc2Instances, createKeyPair } from '../support/ec2-reader.js';
import { expectProblem, type Harness } from '../support/app-harness.js';
import { OPERATOR_TOKEN, OTHER_OPERATOR_TOKEN, VIEWER_TOKEN, bearer, securedHarness } from './support.js';

const create = (h: Harness, token = OPERATOR_TOKEN, name = 'quota-1') =>
  request(h.app).post('/instances').set('Authorization', bearer(token)).send({ name, ami: UBUNTU_X86_AMI, instance_type: 't3.micro', storage_gb: 8 });

describe('the live-instance quota', function () {
  let h: Harness;
  beforeEach(async () => {
    await resetMoto();
    await createKeyPair();
  });
  afterEach(() => h.close());

  it('when MAX_INSTANCES live instances exist, then the next create is 409 quota-exceeded, no script runs, EC2 launches nothing', async () => {
    h = securedHarness({ config: { maxInstances: 1 } });
    const first = await create(h);
    assert.equal(first.status, 201, JSON.stringify(first.body));
    const runsBefore = h.runs.length;

    const refused = await create(h, OPERATOR_TOKEN, 'quota-2');

    const problem = expectProblem(refused, 409);
    assert.equal(problem.type, 'urn:ec2-creator:problem:quota-exceeded');
    assert.match(problem.detail, /quota of 1 live instances reached/);
    assert.equal(h.runs.length, runsBefore, 'no script ran for the refused create');
    assert.equal((await allEc2Instances()).length, 1, 'EC2 (aws CLI) holds only the first instance');

    // Terminating frees the slot.
    assert.equal((await request(h.app).delete(`/instances/${first.body.id}`).set('Authorization', bearer(OPERATOR_TOKEN))).status, 204);
    assert.equal((await create(h, OPERATOR_TOKEN, 'quota-3')).status, 201);
  });

  it('when launches are still unresolved, then they count against the quota too', async () => {
    h = securedHarness({ config: { maxInstances: 1 } });
    h.store.instances.insertLaunch({
      clientToken: 'ec2c-00000000-0000-4000-8000-00000000abcd', name: 'in-flight', ami: UBUNTU_X86_AMI, instanceType: 't3.micro',
      storageGb: 8, keyName: 'ec2c-test-key', securityGroupId: null, loginUser: 'ubuntu',
    });
    expectProblem(await create(h), 409);
    assert.deepEqual(h.runs, []);
  });

  it('when several creates race for the last slot, then exactly one launches', async () => {
    h = securedHarness({ config: { maxInstances: 1 } });
    const answers = await Promise.all([1, 2, 3].map((i) => create(h, OPERATOR_TOKEN, `race-${i}`)));
    assert.deepEqual(answers.map((a) => a.status).sort(), [201, 409, 409]);
    assert.equal((await allEc2Instances()).length, 1);
    assert.equal(h.runs.filter((r) => r.script === 'create_instance.sh').length, 1);
  });
});

describe('the per-token rate limit on changes', () => {
  let h: Harness;
  let now = 1_000_000;
  const stop = (token: string) => request(h.app).post('/instances/i-0123456789abcdef0/stop').set('Authorization', bearer(token));

  beforeEach(() => {
    now = 1_000_000;
    h = securedHarness({ config: { rateLimitPerMinute: 2 }, rateLimit: { now: () => now } });
  });
  afterEach(() => h.close());

  it('when a token exceeds RATE_LIMIT_PER_MINUTE changes, then 429 with Retry-After, and it recovers when a slot frees', async () => {
    expectProblem(await stop(OPERATOR_TOKEN), 404); // counted (no such record; no script)
    now += 20_000;
    expectProblem(await stop(OPERATOR_TOKEN), 404);
    now += 10_000;

    const limited = await stop(OPERATOR_TOKEN);
    const problem = expectProblem(limited, 429);
    assert.equal(problem.type, 'urn:ec2-creator:problem:rate-limited');
    assert.equal(limited.headers['retry-after'], '30', 'the first request leaves the window in 30 s');

    // Other tokens and reads are not affected.
    expectProblem(await stop(OTHER_OPERATOR_TOKEN), 404);
    assert.equal((await request(h.app).get('/instances').set('Authorization', bearer(OPERATOR_TOKEN))).status, 200);

    now += 29_000;
    assert.equal((await stop(OPERATOR_TOKEN)).headers['retry-after'], '1');
    now += 1_000;
    expectProblem(await stop(OPERATOR_TOKEN), 404); // recovered
    expectProblem(await stop(OPERATOR_TOKEN), 429);
    assert.deepEqual(h.runs, []);
  });

  it('when a viewer or a stranger is refused, then the refusal does not use the limit', async () => {
    for (let i = 0; i < 5; i += 1) {
      expectProblem(await stop(VIEWER_TOKEN), 403);
      expectProblem(await request(h.app).post('/instances/i-0123456789abcdef0/stop'), 401);
    }
    expectProblem(await stop(OPERATOR_TOKEN), 404);
  });

  it('when the window is real time but short, then recovery happens without a long sleep', async () => {
    const quick = securedHarness({ config: { rateLimitPerMinute: 1 }, rateLimit: { windowMs: 300 } });
    try {
      const call = () => request(quick.app).delete('/instances/i-0123456789abcdef0').set('Authorization', bearer(OPERATOR_TOKEN));
      expectProblem(await call(), 404);
      const limited = expectProblem(await call(), 429);
      assert.match(limited.detail, /At most 1 changing request/);
      await new Promise((r) => setTimeout(r, 350));
      expectProblem(await call(), 404);
    } finally {
      quick.close();
    }
  });
});

describe('request size and headers', () => {
  let h: Harness;
  beforeEach(() => {
    h = securedHarness();
  });
  afterEach(() => h.close());

  it('when an operator sends a body over 16 kB, then 413 problem+json and no script runs', async () => {
    const response = await request(h.app)
      .post('/instances')
      .set('Authorization', bearer(OPERATOR_TOKEN))
      .set('Content-Type', 'application/json')
      .send(JSON.stringify({ name: 'x', pad: 'y'.repeat(17 * 1024) }));
    expectProblem(response, 413);
    assert.deepEqual(h.runs, []);
  });

  it('when a stranger sends a body over 16 kB, then 401 (the body is never parsed)', async () => {
    const response = await request(h.app).post('/instances').set('Content-Type', 'application/json').send(JSON.stringify({ pad: 'y'.repeat(17 * 1024) }));
    expectProblem(response, 401);
  });

  it('when anything answers (even a 401), then helmet security headers are set and X-Powered-By is not', async () => {
    for (const response of [await request(h.app).get('/instances'), await request(h.app).get('/health')]) {
      assert.equal(response.headers['x-content-type-options'], 'nosniff');
      assert.equal(response.headers['x-frame-options'], 'SAMEORIGIN');
      assert.match(String(response.headers['content-security-policy']), /default-src 'self'/);
      assert.doesNotMatch(String(response.headers['content-security-policy']), /upgrade-insecure-requests/);
      assert.equal(response.headers['x-powered-by'], undefined);
    }
  });
});

describe('HTTP server timeouts', () => {
  let server: Server;
  let port: number;
  beforeEach(async () => {
    // Node checks these timeouts every connectionsCheckingInterval (30 s by default); shortened for the test.
    server = createServer({ connectionsCheckingInterval: 100 }, (req, res) => {
      req.resume();
      req.on('end', () => setTimeout(() => res.end('done'), Number(req.headers['x-delay'] ?? 0)));
    });
    applyServerTimeouts(server, { headersTimeoutMs: 300, requestTimeoutMs: 500, keepAliveTimeoutMs: 200 });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as { port: number }).port;
  });
  afterEach(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it('when a client sends its headers too slowly, then the server answers 408 and closes the connection', async () => {
    const answer = await new Promise<string>((resolve) => {
      const socket = connect(port, '127.0.0.1', () => socket.write('GET / HTTP/1.1\r\nHost: x\r\n'));
      let data = '';
      socket.on('data', (c) => (data += c.toString()));
      socket.on('close', () => resolve(data));
    });
    assert.match(answer, /^HTTP\/1\.1 408/);
  });

  it('when a response takes longer than requestTimeout (a synchronous stop), then it is not cut: the limit is on receiving', async () => {
    const response = await fetch(`http://127.0.0.1:${port}/`, { headers: { 'x-delay': '900' } });
    assert.equal(response.status, 200);
    assert.equal(await response.text(), 'done');
    assert.equal(server.timeout, 0, 'no socket inactivity timeout');
  });
});
