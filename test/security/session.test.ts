/**
 * The dashboard's sign-in: a token exchanged for an HttpOnly, SameSite=Strict cookie; cookie requests that
 * change anything need the CSRF header and this server's Origin; sign-out and expiry end the session; bearer
 * clients are untouched. On both stores (sessions are shared by replicas through the database).
 */
import assert from 'node:assert/strict';
import request from 'supertest';
import { parseTokenList } from '../../app/auth/tokens.js';
import { ConfigError, loadConfig } from '../../app/config.js';
import { arrangeRecordedInstance, createHarnessOn, expectProblem, storeKinds, type Harness } from '../support/app-harness.js';
import { createKeyPair } from '../support/ec2-reader.js';
import { resetMoto } from '../support/global-fixture.js';
import { bearer, OPERATOR_TOKEN, tokens, VIEWER_TOKEN } from './support.js';

const HOST = '127.0.0.1:8000';

/** The session cookie a sign-in set, as a browser would send it back. */
function cookieOf(response: request.Response): string {
  const set = ([] as string[]).concat(response.headers['set-cookie'] ?? []);
  const line = set.find((c) => c.startsWith('ec2c_session='));
  assert.ok(line, `no session cookie in ${JSON.stringify(set)}`);
  return line.split(';')[0] as string;
}

for (const kind of storeKinds()) describe(`dashboard sessions (${kind})`, () => {
  let h: Harness;
  const harnesses: Harness[] = [];
  const secured = async (databaseUrl?: string, list = tokens) => {
    const made = await createHarnessOn(kind, { auth: { mode: 'tokens', tokens: list }, ...(databaseUrl ? { databaseUrl } : {}) });
    harnesses.push(made);
    return made;
  };
  beforeEach(async () => {
    h = await secured();
  });
  afterEach(() => {
    for (const made of harnesses.splice(0)) made.close({ keepFiles: false });
  });

  const signIn = (token: string) => request(h.app).post('/session').set('Host', HOST).send({ token });

  it('when an operator signs in, then a session cookie is set (HttpOnly, SameSite=Strict, not Secure over plain HTTP) that holds no token', async () => {
    const response = await signIn(OPERATOR_TOKEN);
    assert.equal(response.status, 201, JSON.stringify(response.body));
    assert.deepEqual({ ...response.body, expires_at: typeof response.body.expires_at }, { name: 'alice', role: 'operator', via: 'session', expires_at: 'string' });
    const line = ([] as string[]).concat(response.headers['set-cookie'] ?? []).find((c) => c.startsWith('ec2c_session=')) ?? '';
    assert.match(line, /; HttpOnly/);
    assert.match(line, /; SameSite=Strict/);
    assert.match(line, /; Path=\//);
    assert.doesNotMatch(line, /; Secure/);
    assert.ok(!line.includes(OPERATOR_TOKEN), 'the token never goes into the cookie');
    const [row] = await h.sql<{ id_digest: string }>('SELECT id_digest FROM sessions');
    assert.ok(row && !line.includes(row.id_digest), 'the database keeps a digest, not the id');
    const who = await request(h.app).get('/session').set('Cookie', cookieOf(response));
    assert.equal(who.body.name, 'alice');
    assert.equal(who.body.via, 'session');
    assert.ok(h.logs.some((l) => l.message === 'signed in' && l.actor === 'alice'));
  });

  it('when a wrong token is sent, then 401 problem+json and no cookie; a malformed body is 400', async () => {
    const wrong = await signIn('x'.repeat(40));
    expectProblem(wrong, 401);
    assert.equal(wrong.headers['set-cookie'], undefined);
    expectProblem(await request(h.app).post('/session').send({ token: OPERATOR_TOKEN, extra: 1 }), 400);
    assert.deepEqual(await h.sql('SELECT name FROM sessions'), []);
  });

  it('when a cookie request changes something, then it needs the CSRF header and this server\'s Origin, and nothing changes without them', async () => {
    await resetMoto();
    await createKeyPair();
    const id = await arrangeRecordedInstance(h, { name: 'guarded' });
    const cookie = cookieOf(await signIn(OPERATOR_TOKEN));
    const stop = () => request(h.app).post(`/instances/${id}/stop`).set('Host', HOST).set('Cookie', cookie);

    const noHeader = await stop().set('Origin', `http://${HOST}`);
    expectProblem(noHeader, 403);
    assert.match(noHeader.body.detail, /X-Ec2-Creator-Csrf/);
    const foreign = await stop().set('X-Ec2-Creator-Csrf', '1').set('Origin', 'https://evil.example');
    expectProblem(foreign, 403);
    assert.match(foreign.body.detail, /not this server/);
    expectProblem(await stop().set('X-Ec2-Creator-Csrf', '1'), 403);
    assert.equal((await h.records.instances.findByInstanceId(id))?.state, 'running', 'nothing changed');
    assert.deepEqual(await h.records.operations.list({ instanceId: id, limit: 5 }), []);
    assert.ok(h.logs.some((l) => l.message === 'changing request by session cookie refused as a possible forgery'));

    const allowed = await stop().set('X-Ec2-Creator-Csrf', '1').set('Origin', `http://${HOST}`);
    assert.equal(allowed.status, 200, JSON.stringify(allowed.body));
    const [op] = await h.records.operations.list({ instanceId: id, limit: 5 });
    assert.equal(op?.actor, 'alice', 'the operation names who signed in');
    assert.equal((await request(h.app).get('/instances').set('Cookie', cookie)).status, 200, 'reads need no header');
  });

  it('when a viewer signs in, then it reads but may not change anything, and may sign out', async () => {
    const cookie = cookieOf(await signIn(VIEWER_TOKEN));
    assert.equal((await request(h.app).get('/instances').set('Cookie', cookie)).status, 200);
    const refused = await request(h.app).post('/instances/sync').set('Host', HOST).set('Cookie', cookie)
      .set('X-Ec2-Creator-Csrf', '1').set('Origin', `http://${HOST}`);
    expectProblem(refused, 403);
    assert.match(refused.body.detail, /viewer role/);
    const out = await request(h.app).delete('/session').set('Host', HOST).set('Cookie', cookie)
      .set('X-Ec2-Creator-Csrf', '1').set('Origin', `http://${HOST}`);
    assert.equal(out.status, 204);
  });

  it('when signed out, then the cookie is cleared and the old cookie no longer works', async () => {
    const cookie = cookieOf(await signIn(OPERATOR_TOKEN));
    const out = await request(h.app).delete('/session').set('Host', HOST).set('Cookie', cookie)
      .set('X-Ec2-Creator-Csrf', '1').set('Origin', `http://${HOST}`);
    assert.equal(out.status, 204);
    assert.match(([] as string[]).concat(out.headers['set-cookie'] ?? []).join(), /ec2c_session=;.*Expires=Thu, 01 Jan 1970/);
    const after = await request(h.app).get('/instances').set('Cookie', cookie);
    expectProblem(after, 401);
    assert.match(after.body.detail, /expired or was signed out/);
    assert.deepEqual(await h.sql('SELECT name FROM sessions'), []);
  });

  it('when a session has expired, or its token was removed from the configuration, then it no longer signs anyone in', async () => {
    const expiring = cookieOf(await signIn(OPERATOR_TOKEN));
    await h.sql("UPDATE sessions SET expires_at = '2020-01-01T00:00:00.000Z'");
    expectProblem(await request(h.app).get('/instances').set('Cookie', expiring), 401);

    const kept = cookieOf(await signIn(VIEWER_TOKEN));
    const restarted = await secured(h.databaseUrl, parseTokenList(`alice:operator:${OPERATOR_TOKEN}`));
    expectProblem(await request(restarted.app).get('/instances').set('Cookie', kept), 401);
  });

  it('when a bearer token is sent with a cookie, then the bearer token decides, as for any API client', async () => {
    const viewerCookie = cookieOf(await signIn(VIEWER_TOKEN));
    const who = await request(h.app).get('/session').set('Cookie', viewerCookie).set('Authorization', bearer(OPERATOR_TOKEN));
    assert.deepEqual(who.body, { name: 'alice', role: 'operator', via: 'token', expires_at: null });
  });
});

describe('dashboard sessions behind a TLS-terminating proxy', () => {
  const harnesses: Harness[] = [];
  afterEach(() => {
    for (const made of harnesses.splice(0)) made.close();
  });
  const app = async (trustProxy: false | number | string[]) => {
    const made = await createHarnessOn('sqlite', { auth: { mode: 'tokens', tokens }, config: { trustProxy } });
    harnesses.push(made);
    return made;
  };
  const viaProxy = (made: Harness) => request(made.app).post('/session')
    .set('X-Forwarded-Proto', 'https').set('X-Forwarded-For', '203.0.113.9').send({ token: OPERATOR_TOKEN });

  it('when TRUST_PROXY names the proxy and it received HTTPS, then the cookie is Secure and the client address is the real one', async () => {
    const made = await app(['loopback']);
    const response = await viaProxy(made);
    assert.equal(response.status, 201);
    assert.match(([] as string[]).concat(response.headers['set-cookie'] ?? []).join(), /; Secure/);
    const cookie = cookieOf(response);
    await request(made.app).post('/instances/sync').set('Cookie', cookie).set('Host', HOST)
      .set('X-Ec2-Creator-Csrf', '1').set('Origin', `http://${HOST}`).set('X-Forwarded-For', '203.0.113.9');
    const [op] = await made.records.operations.list({ limit: 1 });
    assert.equal(op?.client_address, '203.0.113.9');
  });

  it('when no proxy is trusted, then a client claiming HTTPS gets no Secure flag and its claimed address is ignored', async () => {
    const made = await app(false);
    const response = await viaProxy(made);
    assert.equal(response.status, 201);
    assert.doesNotMatch(([] as string[]).concat(response.headers['set-cookie'] ?? []).join(), /; Secure/);
    await request(made.app).post('/instances/sync').set('Cookie', cookieOf(response)).set('Host', HOST)
      .set('X-Ec2-Creator-Csrf', '1').set('Origin', `http://${HOST}`).set('X-Forwarded-For', '203.0.113.9');
    const [op] = await made.records.operations.list({ limit: 1 });
    assert.match(op?.client_address ?? '', /127\.0\.0\.1/, 'the address the connection came from');
  });

  it('when TRUST_PROXY is true or not an address, then start-up is refused naming it', () => {
    for (const value of ['true', 'proxy.example', '10.0.0.0/8/1']) {
      assert.throws(() => loadConfig({ TRUST_PROXY: value }), (error: unknown) => error instanceof ConfigError && error.message.includes('TRUST_PROXY'));
    }
    assert.deepEqual(loadConfig({ TRUST_PROXY: '10.0.0.0/8, loopback' }).trustProxy, ['10.0.0.0/8', 'loopback']);
    assert.equal(loadConfig({ TRUST_PROXY: '2' }).trustProxy, 2);
  });
});
