/**
 * Webhooks against a real HTTP receiver on loopback that checks each delivery's signature the way the
 * README tells receivers to. The app runs in-process with the real scripts against moto.
 */
import assert from 'node:assert/strict';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { ConfigError } from '../../app/env.js';
import { createNotifier, loadWebhookConfig } from '../../app/notify/index.js';
import { arrangeRecordedInstance, createHarness, type Harness } from '../support/app-harness.js';
import { createKeyPair, UBUNTU_X86_AMI } from '../support/ec2-reader.js';
import { resetMoto } from '../support/global-fixture.js';
import { until } from '../support/lifecycle.js';

const SECRET = 'a-webhook-secret-of-some-length';

interface Received {
  headers: IncomingMessage['headers'];
  body: string;
  signed: boolean;
}

/** A receiver: records what arrives, checks the signature independently, answers as `answer` says. */
async function receiver(answer: (n: number, res: ServerResponse) => void = (_n, res) => res.end('ok')) {
  const received: Received[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      const timestamp = String(req.headers['x-ec2-creator-timestamp']);
      const expected = `sha256=${createHmac('sha256', SECRET).update(`${timestamp}.${body}`).digest('hex')}`;
      const given = String(req.headers['x-ec2-creator-signature-256'] ?? '');
      const signed = given.length === expected.length && timingSafeEqual(Buffer.from(given), Buffer.from(expected))
        && Math.abs(Date.now() / 1000 - Number(timestamp)) < 300;
      received.push({ headers: req.headers, body, signed });
      answer(received.length, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/ec2`;
  return { url, received, close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }) };
}

describe('webhooks', () => {
  let h: Harness | undefined;
  const closers: Array<() => Promise<void>> = [];
  beforeEach(async () => {
    await resetMoto();
    await createKeyPair();
  });
  afterEach(async () => {
    h?.close();
    h = undefined;
    for (const close of closers.splice(0)) await close();
  });

  function appWith(env: Record<string, string>): Harness {
    const config = loadWebhookConfig({ WEBHOOK_SECRET: SECRET, WEBHOOK_RETRY_BASE_MS: '10', ...env });
    h = createHarness({ notifierFor: (logger) => createNotifier(null, logger, config) });
    return h;
  }

  it('when an instance is created and stopped, then the receiver gets two signed JSON deliveries, each logged', async () => {
    const hook = await receiver();
    closers.push(hook.close);
    const app = appWith({ WEBHOOK_URLS: hook.url });
    const created = await request(app.app).post('/instances').send({ name: 'hooked', ami: UBUNTU_X86_AMI, instance_type: 't3.micro', storage_gb: 8 });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal((await request(app.app).post(`/instances/${created.body.id}/stop`)).status, 200);
    await until('both deliveries arrived', () => hook.received.length === 2);
    for (const delivery of hook.received) {
      assert.ok(delivery.signed, 'the signature checks out');
      assert.equal(delivery.headers['content-type'], 'application/json');
    }
    const [first, second] = hook.received.map((d) => JSON.parse(d.body));
    assert.equal(first.type, 'instance.created');
    assert.equal(first.instance.id, created.body.id);
    assert.equal(first.request_id, created.headers['x-request-id']);
    assert.equal(second.type, 'instance.stopped');
    assert.equal(second.instance.state, 'stopped');
    assert.equal(hook.received[1]?.headers['x-ec2-creator-event'], 'instance.stopped');
    await until('both are logged', () => app.logs.filter((l) => l.message === 'webhook delivered').length === 2);
    assert.ok(app.logs.every((l) => !JSON.stringify(l).includes('/hooks/ec2')), 'only the origin is logged');
  });

  it('when the receiver fails with 503, then the delivery is retried with the same id until it is taken; a 400 is not retried', async () => {
    const hook = await receiver((n, res) => {
      res.statusCode = n === 1 ? 503 : 200;
      res.end();
    });
    const refusing = await receiver((_n, res) => {
      res.statusCode = 400;
      res.end();
    });
    closers.push(hook.close, refusing.close);
    const app = appWith({ WEBHOOK_URLS: `${hook.url},${refusing.url}` });
    const id = await arrangeRecordedInstance(app, { name: 'retried' });
    assert.equal((await request(app.app).post(`/instances/${id}/stop`)).status, 200);
    await until('the retry was taken', () => app.logs.some((l) => l.message === 'webhook delivered'));
    await until('the refusal was given up', () => app.logs.some((l) => l.message === 'webhook given up'));
    assert.equal(hook.received.length, 2);
    assert.equal(hook.received[0]?.headers['x-ec2-creator-delivery'], hook.received[1]?.headers['x-ec2-creator-delivery']);
    assert.ok(hook.received.every((d) => d.signed));
    assert.equal(refusing.received.length, 1, 'a 400 is final');
    const failed = app.logs.find((l) => l.message === 'webhook attempt failed');
    assert.equal(failed?.error, 'answered 503');
    assert.equal(app.logs.find((l) => l.message === 'webhook given up')?.error, 'answered 400');
  });

  it('when the receiver does not answer, then the request is not delayed: it is answered while the delivery still waits', async () => {
    const held: ServerResponse[] = [];
    const hook = await receiver((_n, res) => held.push(res));
    closers.push(hook.close);
    const app = appWith({ WEBHOOK_URLS: hook.url, WEBHOOK_ATTEMPTS: '1' });
    const id = await arrangeRecordedInstance(app, { name: 'slow-hook' });
    const stopped = await request(app.app).post(`/instances/${id}/stop`);
    assert.equal(stopped.status, 200);
    await until('the receiver holds the delivery', () => held.length === 1);
    assert.ok(!app.logs.some((l) => String(l.message).startsWith('webhook delivered')), 'answered before the delivery ended');
    for (const res of held) res.end();
    await until('then delivered', () => app.logs.some((l) => l.message === 'webhook delivered'));
  });

  it('when WEBHOOK_FORMAT=slack, then the receiver gets one line of text', async () => {
    const hook = await receiver();
    closers.push(hook.close);
    const app = appWith({ WEBHOOK_URLS: hook.url, WEBHOOK_FORMAT: 'slack' });
    const id = await arrangeRecordedInstance(app, { name: 'chatty' });
    assert.equal((await request(app.app).post(`/instances/${id}/stop`)).status, 200);
    await until('the message arrived', () => hook.received.length === 1);
    const body = JSON.parse(hook.received[0]?.body ?? '{}');
    assert.deepEqual(Object.keys(body), ['text']);
    assert.match(body.text, new RegExp(`^ec2-creator: chatty \\(${id}, t3\\.micro\\) stopped; now stopped$`));
  });

  it('when the webhook settings are wrong, then start-up is refused naming the variable', () => {
    const refused = (env: Record<string, string>, variable: string) =>
      assert.throws(() => loadWebhookConfig(env), (error: unknown) => error instanceof ConfigError && error.message.includes(variable));
    refused({ WEBHOOK_URLS: 'ftp://example.com/x', WEBHOOK_SECRET: SECRET }, 'WEBHOOK_URLS');
    refused({ WEBHOOK_URLS: 'not a url', WEBHOOK_SECRET: SECRET }, 'WEBHOOK_URLS');
    refused({ WEBHOOK_URLS: 'https://example.com/x' }, 'WEBHOOK_SECRET');
    refused({ WEBHOOK_URLS: 'https://example.com/x', WEBHOOK_SECRET: 'short' }, 'WEBHOOK_SECRET');
    refused({ WEBHOOK_URLS: 'https://example.com/x', WEBHOOK_SECRET: SECRET, WEBHOOK_FORMAT: 'xml' }, 'WEBHOOK_FORMAT');
    assert.equal(loadWebhookConfig({}), null, 'off unless WEBHOOK_URLS is set');
    assert.equal(loadWebhookConfig({ WEBHOOK_URLS: 'https://hooks.slack.com/services/T/B/x', WEBHOOK_FORMAT: 'slack' })?.secret, undefined);
  });
});
