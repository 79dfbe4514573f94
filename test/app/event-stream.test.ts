/**
 * GET /events end to end, on both stores: the app listening on a loopback port, real scripts against moto,
 * a real SSE client. Every recorded change arrives as an event with an increasing id, as the API shows the
 * instance or operation; a client resumes with no gap and no duplicate, also after a restart.
 */
import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import request from 'supertest';
import { resetMoto } from '../support/global-fixture.js';
import { createKeyPair } from '../support/ec2-reader.js';
import { arrangeRecordedInstance, createHarnessOn, storeKinds, type Harness } from '../support/app-harness.js';
import { until } from '../support/lifecycle.js';
import { openSse, type SseClient, type SseFrame } from '../support/sse.js';

const changes = (frames: SseFrame[]) => frames.filter((f) => !f.event.startsWith('stream.'));

for (const kind of storeKinds()) describe(`the event stream (${kind})`, function () {
  let h: Harness;
  let server: Server;
  let base: string;
  const clients: SseClient[] = [];
  const harnesses: Harness[] = [];

  async function start(options: Parameters<typeof createHarnessOn>[1] = {}): Promise<void> {
    h = await createHarnessOn(kind, options);
    harnesses.push(h);
    server = h.app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }
  async function stop(): Promise<void> {
    h.services.events.close();
    await new Promise((resolve) => server.close(resolve));
  }
  async function open(path = '/events', headers: Record<string, string> = {}): Promise<SseClient> {
    const client = await openSse(`${base}${path}`, headers);
    clients.push(client);
    return client;
  }

  beforeEach(async () => {
    await resetMoto();
    await createKeyPair();
  });
  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    if (server?.listening) await stop();
    for (const harness of harnesses.splice(0)) harness.close();
  });

  it('when an instance is recorded and stopped, then the stream tells each change in order, as the API shows it', async () => {
    await start();
    const stream = await open();
    assert.equal(stream.status, 200);
    assert.match(String(stream.headers['content-type']), /^text\/event-stream/);
    const ready = await stream.next('the stream says where it starts', (f) => f.event === 'stream.ready');

    const id = await arrangeRecordedInstance(h, { name: 'watched' });
    const stopped = await request(h.app).post(`/instances/${id}/stop`);
    assert.equal(stopped.status, 200, JSON.stringify(stopped.body));
    await stream.next('the stop succeeded', (f) => f.event === 'operation.succeeded');
    const seen = changes(stream.frames);
    assert.deepEqual(seen.map((f) => f.event), [
      'instance.created', 'operation.started', 'instance.state_changed', 'instance.state_changed', 'operation.succeeded',
    ]);
    const ids = seen.map((f) => Number(f.id));
    assert.ok(ids.every((n, i) => n > Number(ready.id) && (i === 0 || n > (ids[i - 1] as number))), `ids increase: ${ids}`);
    assert.equal(seen[0]?.data.instance.name, 'watched');
    assert.deepEqual(seen.slice(2, 4).map((f) => [f.data.previous_state, f.data.instance.state]), [['running', 'stopping'], ['stopping', 'stopped']]);
    assert.equal(seen[3]?.data.instance.public_ip, null, 'addresses as EC2 left them');
    const operation = (await request(h.app).get(`/operations/${stopped.headers['operation-id']}`)).body;
    assert.deepEqual(seen[4]?.data.operation, operation, 'the operation as GET /operations/{id} shows it');
    assert.equal(seen[4]?.data.operation.result.state, 'stopped');
    assert.ok(h.logs.some((l) => l.message === 'event stream opened'));
  });

  it('when a client resumes with Last-Event-ID after a restart, then it gets exactly the events after that id, then stream.ready with the id reached, then the new ones', async () => {
    await start();
    const first = await open();
    const id = await arrangeRecordedInstance(h, { name: 'resumed' });
    const stopped = await request(h.app).post(`/instances/${id}/stop`);
    assert.equal(stopped.status, 200);
    await first.next('the stop succeeded', (f) => f.event === 'operation.succeeded');
    const before = changes(first.frames);
    const resumeAfter = before[1]?.id as string;
    first.close();
    await stop();
    h.close({ keepFiles: true });

    await start({ databaseUrl: h.databaseUrl });
    const resumed = await open('/events', { 'Last-Event-ID': resumeAfter });
    await resumed.next('the missed events arrive', (f) => f.id === before.at(-1)?.id);
    const started = await request(h.app).post(`/instances/${id}/start`);
    assert.equal(started.status, 200, JSON.stringify(started.body));
    await resumed.next('the start succeeded', (f) => f.event === 'operation.succeeded' && f.data.operation.kind === 'start');
    const got = changes(resumed.frames);
    assert.deepEqual(got.slice(0, before.length - 2).map((f) => f.id), before.slice(2).map((f) => f.id), 'no gap, no duplicate');
    const ids = got.map((f) => Number(f.id));
    assert.deepEqual(ids, [...new Set(ids)].sort((a, b) => a - b));
    assert.ok(got.slice(before.length - 2).some((f) => f.event === 'instance.state_changed' && f.data.instance.state === 'running'));
    // An EventSource keeps the last id it saw: stream.ready, sent once the missed events are out, must not take it back.
    const everyId = resumed.frames.flatMap((f) => (f.id === undefined ? [] : [Number(f.id)]));
    assert.deepEqual(everyId, [...everyId].sort((a, b) => a - b), `ids on one stream only grow, stream.ready's too: ${everyId.join(' ')}`);
    const ready = resumed.frames.find((f) => f.event === 'stream.ready');
    assert.ok(Number(ready?.id) >= Number(before.at(-1)?.id), 'stream.ready stands where the replay ended');
    assert.equal(ready?.data.last_event_id, Number(ready?.id));

    const byQuery = await open(`/events?last_event_id=${resumeAfter}`);
    await byQuery.next('the same events by query', (f) => f.id === before.at(-1)?.id);
    assert.deepEqual(changes(byQuery.frames).slice(0, before.length - 2).map((f) => f.id), before.slice(2).map((f) => f.id));
  });

  it('when filters are given, then only events of that instance and of those types arrive', async () => {
    await start();
    const [a, b] = [await arrangeRecordedInstance(h, { name: 'a' }), await arrangeRecordedInstance(h, { name: 'b' })];
    const onlyA = await open(`/events?instance_id=${a}&types=operation.succeeded,instance.state_changed`);
    await onlyA.next('ready', (f) => f.event === 'stream.ready');
    assert.equal((await request(h.app).post(`/instances/${b}/stop`)).status, 200);
    assert.equal((await request(h.app).post(`/instances/${a}/stop`)).status, 200);
    await onlyA.next('a\'s stop succeeded', (f) => f.event === 'operation.succeeded');
    const got = changes(onlyA.frames);
    assert.deepEqual(got.map((f) => f.event), ['instance.state_changed', 'instance.state_changed', 'operation.succeeded']);
    assert.ok(got.every((f) => (f.data.instance ?? f.data.operation).id === a || f.data.operation?.instance_id === a));
  });

  it('when the query is wrong, then 400 problem+json naming it, and no stream is opened', async () => {
    await start();
    const refused = await request(h.app).get('/events?types=instance.exploded');
    assert.equal(refused.status, 400);
    assert.match(refused.headers['content-type'] ?? '', /application\/problem\+json/);
    assert.match(JSON.stringify(refused.body), /types/);
    const badHeader = await request(h.app).get('/events').set('Last-Event-ID', 'yesterday');
    assert.equal(badHeader.status, 400);
    assert.equal(h.services.events.clients, 0);
  });

  it('when MAX_EVENT_CLIENTS streams are open, then the next gets 503 with Retry-After, and a heartbeat keeps the open ones alive', async () => {
    await start({ config: { events: { retentionHours: 72, maxClients: 2, heartbeatS: 1, stallS: 30 } } });
    const [one] = [await open(), await open()];
    await until('both streams are open', () => h.services.events.clients === 2);
    const third = await open();
    assert.equal(third.status, 503);
    assert.match(String(third.headers['content-type']), /application\/problem\+json/);
    assert.ok(third.headers['retry-after']);
    await until('a heartbeat comment arrives', () => (one as SseClient).comments.includes('heartbeat'));
  });

  it('when a client asks for events no longer kept, then it is told so and given the current state, then goes on live', async () => {
    await start();
    const id = await arrangeRecordedInstance(h, { name: 'kept' });
    await arrangeRecordedInstance(h, { name: 'other' });
    const purged = await h.services.events.purge(0);
    assert.ok(purged >= 1);
    const stream = await open('/events', { 'Last-Event-ID': '0' });
    const reset = await stream.next('the reset', (f) => f.event === 'stream.reset');
    assert.match(reset.data.reason, /no longer kept/);
    assert.deepEqual(reset.data.instances.map((i: any) => i.name).sort(), ['kept', 'other']);
    assert.equal(stream.frames[0]?.event, 'stream.reset', 'said before anything else');
    assert.equal((await request(h.app).post(`/instances/${id}/stop`)).status, 200);
    const succeeded = await stream.next('live again', (f) => f.event === 'operation.succeeded');
    assert.ok(Number(succeeded.id) > Number(reset.id));
  });

  it('when a client stops reading, then it is dropped after EVENT_CLIENT_STALL_S, while a client that reads gets every event', async () => {
    await start({ config: { events: { retentionHours: 72, maxClients: 100, heartbeatS: 15, stallS: 1 } } });
    const reader = await open();
    await reader.next('ready', (f) => f.event === 'stream.ready');
    const stalled = connect((server.address() as AddressInfo).port, '127.0.0.1');
    stalled.write('GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n');
    stalled.pause(); // reads nothing from here on
    await until('both streams are open', () => h.services.events.clients === 2);

    // Many large events at once (written as the triggers would), far more than socket buffers hold.
    const pad = 'x'.repeat(2_000);
    const insert = kind === 'sqlite'
      ? `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
         INSERT INTO events (type, operation_id, data, created_at)
         SELECT 'operation.succeeded', 'op-flood', json_object('id', 'op-flood', 'kind', 'sync', 'status', 'succeeded', 'note', ?), '2026-11-23T00:00:00.000Z' FROM n`
      : `INSERT INTO events (type, operation_id, data, created_at)
         SELECT 'operation.succeeded', 'op-flood', json_build_object('id', 'op-flood', 'kind', 'sync', 'status', 'succeeded', 'note', ?::text)::text,
                '2026-11-23T00:00:00.000Z' FROM generate_series(1, 20000)`;
    await h.sql(insert, pad);
    await until('the stalled client is dropped', () => h.logs.some((l) => l.message === 'event stream client dropped: it does not read'), 120_000);
    await until('only the reading client is left', () => h.services.events.clients === 1);
    await until('the reading client got the whole flood', () => reader.frames.filter((f) => f.data.operation?.id === 'op-flood').length === 20_000, 120_000);
    stalled.destroy();
  });

  it('when the server shuts down, then open streams end cleanly and new ones are refused with 503', async () => {
    await start();
    const stream = await open();
    await stream.next('ready', (f) => f.event === 'stream.ready');
    h.services.events.close();
    await stream.ended;
    const refused = await request(h.app).get('/events');
    assert.equal(refused.status, 503);
    assert.ok(h.logs.some((l) => l.message === 'event stream closed' && l.why === 'server shutting down'));
  });
});
