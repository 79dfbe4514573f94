/**
 * Graceful shutdown, on the real server as a child process: SIGTERM while a stop is held inside
 * `aws ec2 stop-instances` by the fake aws. Ordering comes from marker files and the server's answers.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { resetMoto } from '../support/global-fixture.js';
import { UBUNTU_X86_AMI, createKeyPair, ec2InstanceById } from '../support/ec2-reader.js';
import { getJson, killGroup, liveMembersOfGroup, markers, until } from '../support/lifecycle.js';
import { startServerProcess, type ServerProcess } from '../support/server-process.js';
import { fakeAwsEnv } from '../support/fake-aws.js';
import { openSse } from '../support/sse.js';

function post(url: string, body?: unknown) {
  return getJson(url, {
    method: 'POST',
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

function readOne<T>(file: string, sql: string, ...params: unknown[]): T | undefined {
  const db = new Database(file, { readonly: true });
  try {
    return db.prepare(sql).get(...params) as T | undefined;
  } finally {
    db.close();
  }
}

describe('graceful shutdown', function () {
  this.timeout(180_000);
  let dir: string;
  let gate: string;
  let database: string;
  let server: ServerProcess | undefined;

  beforeEach(async () => {
    await resetMoto();
    await createKeyPair();
    dir = mkdtempSync(path.join(tmpdir(), 'ec2-creator-shutdown-'));
    gate = path.join(dir, 'gate');
    mkdirSync(gate);
    database = path.join(dir, 'instances.db');
  });
  afterEach(() => {
    writeFileSync(path.join(gate, 'release'), '');
    server?.child.kill('SIGKILL');
    for (const marker of markers(gate, 'entered')) killGroup(Number(marker.text));
    server = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  async function launchThenHoldStop(env: Record<string, string> = {}): Promise<{ id: string; stop: Promise<Awaited<ReturnType<typeof post>>> }> {
    server = await startServerProcess({
      DATABASE_URL: database,
      ...fakeAwsEnv({ FAKE_AWS_GATE_OP: 'stop-instances', FAKE_AWS_GATE_DIR: gate, FAKE_AWS_GATE_MAX_S: '300' }),
      ...env,
    });
    const created = await post(`${server.url}/instances`, { name: 'drain-1', ami: UBUNTU_X86_AMI, instance_type: 't3.micro', storage_gb: 8 });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const id = created.body.id as string;
    const stop = post(`${server.url}/instances/${id}/stop`);
    await until('the stop is inside aws stop-instances', () => markers(gate, 'entered').length === 1);
    return { id, stop };
  }

  it('when SIGTERM arrives during a slow stop, then readiness flips to 503 at once, new changes get 503, the stop completes and the exit code is 0', async () => {
    const { id, stop } = await launchThenHoldStop();
    const s = server as ServerProcess;

    s.child.kill('SIGTERM');
    await s.waitForLog('shutting down', (l) => l.message === 'shutting down');

    const ready = await getJson(`${s.url}/health/ready`);
    assert.equal(ready.status, 503);
    assert.deepEqual(ready.body, { status: 'draining' });
    assert.equal(markers(gate, 'left').length, 0, 'the stop was still held when readiness said 503');
    assert.equal((await getJson(`${s.url}/health/live`)).status, 200);
    assert.equal((await getJson(`${s.url}/health`)).status, 200);
    const refused = await post(`${s.url}/instances`, { name: 'late', ami: UBUNTU_X86_AMI, instance_type: 't3.micro', storage_gb: 8 });
    assert.equal(refused.status, 503, JSON.stringify(refused.body));
    assert.match(refused.headers.get('retry-after') ?? '', /^\d+$/);
    assert.equal(refused.headers.get('content-type')?.split(';')[0], 'application/problem+json');

    writeFileSync(path.join(gate, 'release'), '');
    const stopped = await stop;
    const exit = await s.exited;

    assert.equal(stopped.status, 200, JSON.stringify(stopped.body));
    assert.equal(stopped.body.state, 'stopped');
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.equal((await ec2InstanceById(id)).State.Name, 'stopped');
    assert.equal(readOne<{ state: string }>(database, 'SELECT state FROM instances WHERE instance_id = ?', id)?.state, 'stopped');
    const op = readOne<{ status: string; kind: string }>(database, "SELECT * FROM operations WHERE kind = 'stop'");
    assert.equal(op?.status, 'succeeded');
    assert.equal(readOne<{ n: number }>(database, "SELECT count(*) AS n FROM operations WHERE kind = 'create' AND status = 'succeeded'")?.n, 1);
    assert.equal(readOne<{ n: number }>(database, 'SELECT count(*) AS n FROM operations')?.n, 2, 'the refused create recorded nothing');
    assert.ok(s.logs.some((l) => l.message === 'shut down'));
  });

  it('when SIGTERM arrives while event streams are open, then they end cleanly first and do not hold the drain: the server exits 0', async () => {
    // A drain held by the streams would wait the whole SHUTDOWN_TIMEOUT_MS, far beyond this test's own limit.
    const s = await startServerProcess({ DATABASE_URL: database, SHUTDOWN_TIMEOUT_MS: '3600000' });
    server = s;
    const streams = await Promise.all([openSse(`${s.url}/events`), openSse(`${s.url}/events?types=instance.created`)]);
    for (const stream of streams) await stream.next('the stream is open', (f) => f.event === 'stream.ready');

    s.child.kill('SIGTERM');
    for (const stream of streams) await stream.ended;
    assert.deepEqual(await s.exited, { code: 0, signal: null });
    assert.equal(s.logs.filter((l) => l.message === 'event stream closed' && l.why === 'server shutting down').length, 2);
    assert.ok(s.logs.some((l) => l.message === 'shut down'));
  });

  it('when a stop outlives SHUTDOWN_TIMEOUT_MS, then it is killed (no process of its group left), its operation is interrupted and the exit code is 0', async () => {
    const { id, stop } = await launchThenHoldStop({ SHUTDOWN_TIMEOUT_MS: '1000' });
    const s = server as ServerProcess;
    const group = Number(markers(gate, 'entered')[0]?.text);
    assert.ok(liveMembersOfGroup(group).length > 0);

    s.child.kill('SIGTERM');
    const answered = await stop;
    const exit = await s.exited;

    assert.equal(answered.status, 503, JSON.stringify(answered.body));
    assert.equal(answered.body.type, 'urn:ec2-creator:problem:interrupted');
    assert.deepEqual(exit, { code: 0, signal: null });
    await until('the script\'s process group is gone', () => liveMembersOfGroup(group).length === 0);
    const op = readOne<{ status: string; note: string }>(database, "SELECT * FROM operations WHERE kind = 'stop'");
    assert.equal(op?.status, 'interrupted');
    assert.match(op?.note ?? '', /1000 ms after the shutdown began/);
    assert.equal(markers(gate, 'left').length, 0, 'aws stop-instances never ran');
    assert.ok(s.logs.some((l) => l.message === 'shutdown timeout: killing what still runs'));

    // The next start reconciles the record the interrupted stop left "stopping".
    server = await startServerProcess({ DATABASE_URL: database });
    await until('the record is reconciled with EC2', () =>
      readOne<{ state: string }>(database, 'SELECT state FROM instances WHERE instance_id = ?', id)?.state === 'running');
    assert.equal((await ec2InstanceById(id)).State.Name, 'running');
  });
});
