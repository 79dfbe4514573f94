/**
 * Authentication and roles through the real app (tokens from the OpenAPI document's routes): 401 for a
 * missing, wrong or odd-length token (never 500), 403 for a viewer on every mutating route with no script
 * run, operators allowed, public /health and docs, the actor in the audit trail, and no token in any log
 * line or database row afterwards.
 */
import assert from 'node:assert/strict';
import request from 'supertest';
import { timingSafeEqual } from 'node:crypto';
import { createTokenVerifier } from '../../app/auth/verify.js';
import { resetMoto } from '../support/global-fixture.js';
import { UBUNTU_X86_AMI, allEc2Instances, createKeyPair } from '../support/ec2-reader.js';
import { createHarness, expectProblem, type Harness } from '../support/app-harness.js';
import {
  ALL_TOKENS, OPERATOR_TOKEN, OTHER_OPERATOR_TOKEN, VALID_CREATE, VIEWER_TOKEN, bearer, capturedText, concretePath,
  operationsOf, securedHarness, tokens,
} from './support.js';

const WWW = 'Bearer realm="ec2-creator"';
const WWW_INVALID = 'Bearer realm="ec2-creator", error="invalid_token"';

/** What the document declares public (no token needed): health, and signing in. */
const isPublic = (operation: Record<string, any>): boolean => Array.isArray(operation.security) && operation.security.length === 0;

describe('authentication', function () {
  let h: Harness;
  let document: Record<string, any>;
  const everything: string[] = [];

  before(async () => {
    const probe = securedHarness();
    try {
      document = (await request(probe.app).get('/openapi.json').set('Authorization', bearer(VIEWER_TOKEN))).body;
    } finally {
      probe.close();
    }
  });
  beforeEach(() => {
    h = securedHarness();
  });
  afterEach(() => {
    everything.push(capturedText(h));
    h.close();
  });
  after(() => {
    const text = everything.join('\n');
    assert.ok(text.length > 0);
    for (const token of ALL_TOKENS) assert.ok(!text.includes(token), 'a token appeared in captured logs or records');
  });

  const offered: Array<[string, string | undefined, string]> = [
    ['no Authorization header', undefined, WWW],
    ['a wrong token', bearer('x'.repeat(43)), WWW_INVALID],
    ['a 1-character token', bearer('a'), WWW_INVALID],
    ['a 10 kB token', bearer('A'.repeat(10 * 1024)), WWW_INVALID],
    ['the operator token with one character changed', bearer(`${OPERATOR_TOKEN.slice(0, -1)}${OPERATOR_TOKEN.endsWith('A') ? 'B' : 'A'}`), WWW_INVALID],
    ['the operator token as a prefix of a longer one', bearer(`${OPERATOR_TOKEN}x`), WWW_INVALID],
    ['an empty Bearer', 'Bearer ', WWW_INVALID],
    ['a token with characters a bearer token cannot have', 'Bearer a,b;c', WWW_INVALID],
    ['Basic credentials', `Basic ${Buffer.from(`alice:${OPERATOR_TOKEN}`).toString('base64')}`, WWW],
    ['the token without the scheme', OPERATOR_TOKEN, WWW],
  ];
  for (const [why, header, challenge] of offered) {
    it(`when a request carries ${why}, then 401 problem+json with WWW-Authenticate, never 500, and no script runs`, async () => {
      for (const { template, method, operation } of operationsOf(document)) {
        if (isPublic(operation)) continue;
        let call = (request(h.app) as any)[method](concretePath(template));
        if (header !== undefined) call = call.set('Authorization', header);
        if (method === 'post' || method === 'put' || method === 'patch') call = call.send(VALID_CREATE);
        const response = await call;
        expectProblem(response, 401);
        assert.equal(response.headers['www-authenticate'], challenge, `${method} ${template}`);
        assert.doesNotMatch(JSON.stringify(response.body), /op_|vw_/, 'the problem never echoes a token');
      }
      assert.deepEqual(h.runs, []);
    });
  }

  it('when a viewer calls EVERY mutating route of the OpenAPI document, then 403 and no script runs', async () => {
    // An empty emulator, whatever the file run before this one in the worker left in it.
    await resetMoto();
    // Signing in needs no token and signing out is every role's: the rest is the operators'.
    const mutating = operationsOf(document).filter((o) => !['get', 'head', 'options'].includes(o.method) && o.template !== '/session');
    assert.ok(mutating.length >= 4, 'create, destroy, start and stop at least');
    for (const { template, method } of mutating) {
      const response = await (request(h.app) as any)[method](concretePath(template))
        .set('Authorization', bearer(VIEWER_TOKEN))
        .send(VALID_CREATE);
      const problem = expectProblem(response, 403);
      assert.match(problem.detail, /victor.*viewer/, `${method} ${template}`);
    }
    // Methods the document does not list are mutating too.
    for (const method of ['put', 'patch']) {
      expectProblem(await (request(h.app) as any)[method]('/instances').set('Authorization', bearer(VIEWER_TOKEN)).send({}), 403);
    }
    assert.deepEqual(h.runs, [], 'no script ran');
    assert.equal((await allEc2Instances()).length, 0);
  });

  it('when a viewer reads, then it is allowed', async () => {
    const response = await request(h.app).get('/instances').set('Authorization', bearer(VIEWER_TOKEN));
    assert.equal(response.status, 200);
    assert.deepEqual(response.body.instances, []);
  });

  it('when /openapi.json or /docs is called without a token, then 401 like every endpoint but /health', async () => {
    assert.equal((await request(h.app).get('/health')).status, 200);
    assert.equal((await request(h.app).get('/health/live')).status, 200);
    expectProblem(await request(h.app).get('/openapi.json'), 401);
    expectProblem(await request(h.app).get('/docs/'), 401);
    assert.equal((await request(h.app).get('/openapi.json').set('Authorization', bearer(VIEWER_TOKEN))).status, 200);
  });

  it('when PUBLIC_DOCS opens the docs, then they answer without a token, for reading only', async () => {
    const open = createHarness({ auth: { mode: 'tokens', tokens }, config: { publicDocs: true } });
    try {
      assert.equal((await request(open.app).get('/openapi.json')).status, 200);
      assert.ok([200, 301].includes((await request(open.app).get('/docs')).status));
      expectProblem(await request(open.app).post('/openapi.json').send({}), 401);
      expectProblem(await request(open.app).get('/instances'), 401);
    } finally {
      open.close();
    }
  });

  it('when the OpenAPI document is read, then it declares bearer auth and 401/403/429 where they can happen', () => {
    assert.deepEqual(document.components.securitySchemes.bearerAuth, {
      type: 'http', scheme: 'bearer', description: document.components.securitySchemes.bearerAuth.description,
    });
    assert.deepEqual(document.security, [{ bearerAuth: [] }]);
    for (const { template, method, operation } of operationsOf(document)) {
      if (template.startsWith('/health') || (template === '/session' && method === 'post')) {
        assert.deepEqual(operation.security, [], `${method} ${template} is public`);
        continue;
      }
      assert.ok(operation.responses['401'], `${method} ${template} documents 401`);
      if (method !== 'get') {
        assert.ok(operation.responses['403'], `${method} ${template} documents 403`);
        assert.ok(operation.responses['429'], `${method} ${template} documents 429`);
      }
    }
    assert.match(document.paths['/instances'].post.responses['409'].description, /quota/);
  });

  describe('with EC2 (moto)', () => {
    beforeEach(async () => {
      await resetMoto();
      await createKeyPair();
    });

    it('when an operator creates, stops and destroys, then it is allowed and the actor is its token NAME', async () => {
      const created = await request(h.app)
        .post('/instances')
        .set('Authorization', bearer(OPERATOR_TOKEN))
        .set('X-Request-Id', 'sec-create-1')
        .send({ ...VALID_CREATE, ami: UBUNTU_X86_AMI });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const id = created.body.id as string;
      assert.equal((await request(h.app).post(`/instances/${id}/stop`).set('Authorization', bearer(OTHER_OPERATOR_TOKEN))).status, 200);
      assert.equal((await request(h.app).delete(`/instances/${id}`).set('Authorization', bearer(OPERATOR_TOKEN))).status, 204);

      const access = h.logs.filter((l) => l.message === 'request' && l.request_id === 'sec-create-1');
      assert.equal(access[0]?.actor, 'alice', 'the access log names the caller');
      const hasOperations = h.store.db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'operations'").get();
      if (hasOperations) {
        // The audit trail: operation rows carry the token name, never the token.
        const actors = (h.store.db.prepare('SELECT actor FROM operations').all() as Array<{ actor: string | null }>).map((r) => r.actor);
        assert.ok(actors.includes('alice') && actors.includes('bob'), `actors recorded: ${JSON.stringify(actors)}`);
      }
    });

    it('when a client sends its token as X-Request-Id, then no log line or record contains it', async () => {
      const response = await request(h.app)
        .get('/instances')
        .set('Authorization', bearer(OPERATOR_TOKEN))
        .set('X-Request-Id', OPERATOR_TOKEN);
      assert.equal(response.status, 200);
      assert.ok(h.logs.some((l) => l.message === 'request'));
      assert.ok(!capturedText(h).includes(OPERATOR_TOKEN));
    });
  });
});

describe('token check', () => {
  const verify = createTokenVerifier(tokens);

  it('when any of the configured tokens is presented, then its name and role come back (never the token)', () => {
    assert.deepEqual(verify(OPERATOR_TOKEN), { name: 'alice', role: 'operator' });
    assert.deepEqual(verify(VIEWER_TOKEN), { name: 'victor', role: 'viewer' });
    assert.deepEqual(verify(OTHER_OPERATOR_TOKEN), { name: 'bob', role: 'operator' });
  });

  it('when tokens of any length (0 to 64 kB, any bytes) are presented, then the check answers without throwing', () => {
    for (const candidate of ['', 'a', OPERATOR_TOKEN.slice(1), `${OPERATOR_TOKEN}\0`, 'é'.repeat(1000), 'A'.repeat(65536)]) {
      assert.equal(verify(candidate), undefined);
    }
  });

  it('when the check runs, then it compares 32-byte digests against EVERY configured token (no early exit)', () => {
    const seen: Array<[number, number]> = [];
    const counting = createTokenVerifier(tokens, (a, b) => {
      seen.push([a.length, b.length]);
      return timingSafeEqual(a, b);
    });
    for (const candidate of [OPERATOR_TOKEN, 'a', 'A'.repeat(10 * 1024)]) {
      seen.length = 0;
      counting(candidate);
      assert.equal(seen.length, tokens.length, 'one comparison per configured token, match or not');
      assert.ok(seen.every(([a, b]) => a === 32 && b === 32), 'equal-length digests, whatever the token length');
    }
  });
});
