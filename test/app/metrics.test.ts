/**
 * GET /metrics: the Prometheus text format a scrape reads, with values that move when the fleet does. Real
 * scripts against moto; on both stores (the instance and operation gauges come from the database).
 */
import assert from 'node:assert/strict';
import request from 'supertest';
import { resetMoto } from '../support/global-fixture.js';
import { createKeyPair, UBUNTU_X86_AMI } from '../support/ec2-reader.js';
import { createHarnessOn, storeKinds, type Harness } from '../support/app-harness.js';
import { bearer, securedHarness, VIEWER_TOKEN } from '../security/support.js';

/** The value of one sample line (`name{labels} value`), or undefined when the scrape has none. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

for (const kind of storeKinds()) describe(`Prometheus metrics (${kind})`, () => {
  let h: Harness;
  beforeEach(async () => {
    await resetMoto();
    await createKeyPair();
    h = await createHarnessOn(kind);
  });
  afterEach(() => h.close());

  const scrape = async (): Promise<string> => {
    const response = await request(h.app).get('/metrics');
    assert.equal(response.status, 200);
    assert.match(response.headers['content-type'] ?? '', /^text\/plain; version=0\.0\.4/);
    return response.text;
  };

  it('when an instance is created and read, then requests, script runs, operations and instances move, labelled by route template', async () => {
    const before = await scrape();
    assert.ok(sample(before, 'process_cpu_user_seconds_total') !== undefined, 'the process defaults');
    assert.ok(before.includes('nodejs_eventloop_lag_seconds'), 'the Node defaults');
    assert.equal(sample(before, 'ec2creator_instances{state="running"}'), undefined);
    assert.equal(sample(before, 'ec2creator_operations_running'), 0);

    const created = await request(h.app).post('/instances').send({ name: 'metered', ami: UBUNTU_X86_AMI, instance_type: 't3.micro', storage_gb: 8 });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal((await request(h.app).get(`/instances/${created.body.id}`)).status, 200);
    assert.equal((await request(h.app).get('/instances/i-0123456789abcdef0')).status, 404);

    const after = await scrape();
    assert.equal(sample(after, 'ec2creator_instances{state="running"}'), 1);
    assert.equal(sample(after, 'ec2creator_operations{kind="create",status="succeeded"}'), 1);
    assert.equal(sample(after, 'ec2creator_http_request_duration_seconds_count{method="POST",route="/instances",status_code="201"}'), 1);
    assert.equal(sample(after, 'ec2creator_http_request_duration_seconds_count{method="GET",route="/instances/:id",status_code="200"}'), 1);
    assert.equal(sample(after, 'ec2creator_http_request_duration_seconds_count{method="GET",route="/instances/:id",status_code="404"}'), 1);
    assert.ok(!after.includes(created.body.id) && !after.includes('i-0123456789abcdef0'), 'never a raw path or an id in a label');
    assert.equal(sample(after, 'ec2creator_script_runs_total{script="create_instance.sh",outcome="ok"}'), 1);
    assert.ok((sample(after, 'ec2creator_script_duration_seconds_sum{script="create_instance.sh",outcome="ok"}') ?? 0) > 0);
    const runs = h.runs.length;
    assert.equal(
      after.split('\n').filter((l) => l.startsWith('ec2creator_script_runs_total{')).reduce((sum, l) => sum + Number(l.split(' ')[1]), 0),
      runs, 'every script run is counted once',
    );
  });

  it('when an event stream is open, then the gauge says so, and a path no route knows is labelled unmatched', async () => {
    const server = h.app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const { port } = server.address() as { port: number };
    const controller = new AbortController();
    const streaming = await fetch(`http://127.0.0.1:${port}/events`, { signal: controller.signal });
    assert.equal(streaming.status, 200);
    try {
      assert.equal(sample(await scrape(), 'ec2creator_event_stream_clients'), 1);
      assert.equal((await request(h.app).get('/no/such/thing/here')).status, 404);
      const text = await scrape();
      assert.equal(sample(text, 'ec2creator_http_request_duration_seconds_count{method="GET",route="unmatched",status_code="404"}'), 1);
      assert.ok(!text.includes('/no/such/thing'));
    } finally {
      controller.abort();
      h.services.events.close();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('who may read the metrics', () => {
  it('when no token is sent, then 401; a viewer token reads them; with METRICS_PUBLIC=true no token is needed', async () => {
    const guarded = securedHarness();
    const open = securedHarness({ config: { metricsPublic: true } });
    try {
      assert.equal((await request(guarded.app).get('/metrics')).status, 401);
      assert.equal((await request(guarded.app).get('/metrics').set('Authorization', bearer(VIEWER_TOKEN))).status, 200);
      assert.equal((await request(open.app).get('/metrics')).status, 200);
      assert.equal((await request(open.app).get('/instances')).status, 401, 'only the metrics are opened');
      assert.equal((await request(open.app).post('/metrics')).status, 401, 'reading only');
    } finally {
      guarded.close();
      open.close();
    }
  });
});
