/**
 * Storage faults are loud, never silent: a database that is full (SQLITE_FULL, made real with
 * PRAGMA max_page_count on the service's own connection) answers 503 with Retry-After, never leaves an
 * operation "running" or its Idempotency-Key stuck; a database file deleted or replaced under a running
 * server turns readiness and every change into 503, with an error log naming the file.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type Database from 'better-sqlite3';
import request from 'supertest';
import { openStore } from '../../app/store/index.js';
import { resetMoto } from '../support/global-fixture.js';
import { UBUNTU_X86_AMI, allEc2Instances, createKeyPair } from '../support/ec2-reader.js';
import { createHarness, expectProblem, type Harness } from '../support/app-harness.js';
import { getJson, markers, until } from '../support/lifecycle.js';
import { startServerProcess, type ServerProcess } from '../support/server-process.js';
import { fakeAwsEnv } from '../support/fake-aws.js';

const LAUNCH = { name: 'full-1', ami: UBUNTU_X86_AMI, instance_type: 't3.micro', storage_gb: 8 };
const NOW = new Date().toISOString();

/**
 * Makes the database full: no page may be added (max_page_count = the pages it has), and rows are added to
 * every table, smaller and smaller, until none fits any more. Filler rows stay out of every list the
 * service shows but the operations history (kind sync, status failed).
 */
function fill(db: Database.Database): void {
  db.pragma(`max_page_count = ${db.pragma('page_count', { simple: true }) as number}`);
  const fillers = [
    db.prepare(`INSERT INTO operations (id, kind, status, note, created_at) VALUES (?, 'sync', 'failed', ?, '${NOW}')`),
    db.prepare(`INSERT INTO instances (client_token, launch_status, name, state, ami, instance_type, login_user, created_at, updated_at)
                VALUES (?, 'failed', ?, 'failed', 'ami-00000000', 't3.micro', 'ubuntu', '${NOW}', '${NOW}')`),
    db.prepare(`INSERT INTO idempotency_keys (scope, key, fingerprint, operation_id, created_at) VALUES ('filler', ?, ?, 'op-filler', '${NOW}')`),
  ];
  const ids = [() => `op-${randomUUID()}`, () => `ec2c-${randomUUID()}`, () => randomUUID()];
  for (const size of [2000, 400, 80, 16, 0]) {
    fillers.forEach((filler, i) => {
      for (;;) {
        try {
          filler.run((ids[i] as () => string)(), 'x'.repeat(size));
        } catch (error) {
          if ((error as { code?: string }).code === 'SQLITE_FULL') break;
          throw error;
        }
      }
    });
  }
}

function makeRoom(db: Database.Database): void {
  db.pragma('max_page_count = 1073741823');
}

describe('storage faults: a full database', function () {
  this.timeout(120_000);
  let dir: string;
  let gate: string;
  let h: Harness;

  beforeEach(async () => {
    await resetMoto();
    await createKeyPair();
    dir = mkdtempSync(path.join(tmpdir(), 'ec2-creator-full-'));
    gate = dir;
  });
  afterEach(() => {
    writeFileSync(path.join(gate, 'release'), '');
    h?.close({ keepFiles: true });
    rmSync(dir, { recursive: true, force: true });
  });

  it('when the disk fills up while a launch is in flight, then 503 with Retry-After, readiness 503, an error log naming the file, and once there is room the same Idempotency-Key answers the instance EC2 launched', async () => {
    h = createHarness({
      databasePath: path.join(dir, 'instances.db'),
      env: fakeAwsEnv({ FAKE_AWS_GATE_OP: 'run-instances', FAKE_AWS_GATE_DIR: gate }),
    });
    const pending = request(h.app).post('/instances').set('Idempotency-Key', 'full-launch-1').send(LAUNCH).then((r) => r);
    await until('the launch is held in front of EC2', () => markers(gate, 'entered').length === 1);
    fill(h.store.db);
    writeFileSync(path.join(gate, 'release'), '');

    const answered = await pending;

    const problem = expectProblem(answered, 503);
    assert.equal(problem.type, 'urn:ec2-creator:problem:storage-unavailable');
    assert.match(problem.detail, /full/);
    assert.match(String(answered.headers['retry-after']), /^\d+$/);
    const operationId = String(answered.headers['operation-id']);
    const ready = await request(h.app).get('/health/ready');
    assert.equal(ready.status, 503);
    assert.deepEqual(ready.body, { status: 'storage-unavailable' });
    const logged = h.logs.find((l) => l.level === 'error' && l.message === 'storage fault');
    assert.ok(logged, 'an error log line');
    assert.equal(logged.database, h.databasePath);
    assert.equal(logged.code, 'SQLITE_FULL');

    makeRoom(h.store.db);
    const retried = await request(h.app).post('/instances').set('Idempotency-Key', 'full-launch-1').send(LAUNCH);

    assert.equal(retried.status, 201, JSON.stringify(retried.body));
    const ec2 = await allEc2Instances();
    assert.equal(ec2.length, 1, 'launched once: the retry found the first launch by its client token');
    assert.equal(retried.body.id, ec2[0].InstanceId);
    assert.equal(h.row(retried.body.id)?.launch_status, 'launched');
    const first = h.store.operations.get(operationId);
    assert.equal(first?.status, 'failed');
    assert.equal(first?.error_code, 'storage-unavailable');
    assert.match(first?.error_message ?? '', /SQLITE_FULL/);
    assert.equal((await request(h.app).get('/health/ready')).status, 200, 'ready again once a write succeeded');
  });

  it('when the disk is full before an operation can be recorded, then 503 with Retry-After, nothing runs, and its script slot is given back', async () => {
    h = createHarness({ databasePath: path.join(dir, 'instances.db'), config: { maxConcurrentScripts: 1 } });
    fill(h.store.db);
    const operationsBefore = h.store.db.prepare('SELECT count(*) AS n FROM operations').get();

    const refused = await request(h.app).post('/instances').send(LAUNCH);

    const problem = expectProblem(refused, 503);
    assert.equal(problem.type, 'urn:ec2-creator:problem:storage-unavailable');
    assert.match(String(refused.headers['retry-after']), /^\d+$/);
    assert.deepEqual(h.runs, [], 'no script ran');
    assert.deepEqual(h.store.db.prepare('SELECT count(*) AS n FROM operations').get(), operationsBefore);
    assert.deepEqual(h.services.operations.stats(), { running: 0, queued: 0, active: 0 });

    makeRoom(h.store.db);
    const created = await request(h.app).post('/instances').send(LAUNCH);
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal((await allEc2Instances()).length, 1);
  });
});

describe('storage faults: the database file deleted or replaced under a running server', function () {
  this.timeout(120_000);
  let dir: string;
  let database: string;
  let server: ServerProcess | undefined;

  beforeEach(async () => {
    await resetMoto();
    await createKeyPair();
    dir = mkdtempSync(path.join(tmpdir(), 'ec2-creator-gone-'));
    database = path.join(dir, 'instances.db');
  });
  afterEach(() => {
    server?.child.kill('SIGKILL');
    server = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  const post = (url: string, body?: unknown) =>
    getJson(url, {
      method: 'POST',
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });

  it('when the database file is deleted, then the next change answers 503 problem+json, readiness 503, an error log names the file, and nothing is launched or recreated', async () => {
    server = await startServerProcess({ DATABASE_URL: database });
    const created = await post(`${server.url}/instances`, LAUNCH);
    assert.equal(created.status, 201, JSON.stringify(created.body));

    rmSync(database);
    const refused = await post(`${server.url}/instances`, { ...LAUNCH, name: 'full-2' });

    assert.equal(refused.status, 503, JSON.stringify(refused.body));
    assert.equal(refused.headers.get('content-type')?.split(';')[0], 'application/problem+json');
    assert.equal(refused.body.type, 'urn:ec2-creator:problem:storage-unavailable');
    assert.match(refused.headers.get('retry-after') ?? '', /^\d+$/);
    const ready = await getJson(`${server.url}/health/ready`);
    assert.equal(ready.status, 503);
    assert.deepEqual(ready.body, { status: 'storage-unavailable' });
    const logged = await server.waitForLog('the storage fault', (l) => l.level === 'error' && l.message === 'storage fault');
    assert.equal(logged.database, database);
    assert.match(logged.error, /deleted/);
    assert.equal((await allEc2Instances()).length, 1, 'the refused create launched nothing');
    assert.equal(existsSync(database), false, 'no empty database was made in its place');
  });

  it('when the database file is replaced, then without any request an error log names the file, and readiness and changes answer 503', async () => {
    server = await startServerProcess({ DATABASE_URL: database });
    const other = path.join(dir, 'restored.db');
    openStore(other).close();
    renameSync(other, database);

    const logged = await server.waitForLog('the storage fault', (l) => l.level === 'error' && l.message === 'storage fault');

    assert.equal(logged.database, database);
    assert.match(logged.error, /replaced/);
    const ready = await getJson(`${server.url}/health/ready`);
    assert.equal(ready.status, 503);
    assert.deepEqual(ready.body, { status: 'storage-unavailable' });
    const sync = await post(`${server.url}/instances/sync`);
    assert.equal(sync.status, 503, JSON.stringify(sync.body));
    assert.equal(sync.body.type, 'urn:ec2-creator:problem:storage-unavailable');
    assert.equal(server.logs.some((l) => l.message === 'script run'), false, 'the refused sync read nothing from EC2');
  });
});
