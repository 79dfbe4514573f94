/** Configuration from the environment, the SQLite store's start-up, and the OpenAPI document. */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import request from 'supertest';
import { ConfigError, loadConfig } from '../../app/config.js';
import { SCHEMA_VERSION } from '../../app/store/db.js';
import { openStore } from '../../app/store/index.js';
import { createHarness, realScriptsDir, type Harness } from '../support/app-harness.js';

describe('configuration', () => {
  it('when nothing is set, then the documented defaults apply', () => {
    const config = loadConfig({}, '/srv/app');
    assert.equal(config.port, 8000);
    assert.equal(config.host, '127.0.0.1');
    assert.equal(config.databasePath, '/srv/app/data/instances.db');
    assert.equal(config.scriptsDir, realScriptsDir);
    assert.equal(config.keyName, 'my_ec2_keypair');
    assert.equal(config.keyFile, null);
    assert.deepEqual(config.allowedInstanceTypes, ['t3.micro', 't4g.micro']);
    assert.equal(config.maxStorageGb, 30);
    assert.equal(config.logLevel, 'info');
  });

  it('when values are set, then they are parsed (DATABASE_URL may carry a sqlite: or file: prefix)', () => {
    const config = loadConfig({
      PORT: '9000', HOST: '0.0.0.0', DATABASE_URL: 'sqlite:///var/lib/ec2/db.sqlite', KEY_NAME: 'ops',
      ALLOWED_INSTANCE_TYPES: ' t3.small , m6g.large ', MAX_STORAGE_GB: '100', SCRIPT_TIMEOUT_MS: '5000', LOG_LEVEL: 'DEBUG',
      SCRIPTS_DIR: realScriptsDir,
    }, '/srv/app');
    assert.equal(config.port, 9000);
    assert.equal(config.databasePath, '/var/lib/ec2/db.sqlite');
    assert.deepEqual(config.allowedInstanceTypes, ['t3.small', 'm6g.large']);
    assert.equal(config.maxStorageGb, 100);
    assert.equal(config.scriptTimeoutMs, 5000);
    assert.equal(config.logLevel, 'debug');
    assert.equal(loadConfig({ KEY_FILE: '~/keys/ops.pem' }, '/srv').keyFile, '~/keys/ops.pem');
    assert.equal(loadConfig({ DATABASE_URL: 'file:rel/x.db' }, '/srv').databasePath, '/srv/rel/x.db');
  });

  const bad: Array<[string, string]> = [
    ['PORT', 'eighty'], ['PORT', '70000'], ['MAX_STORAGE_GB', '0'], ['MAX_STORAGE_GB', '-1'],
    ['SCRIPT_TIMEOUT_MS', '1.5'], ['LOG_LEVEL', 'loud'], ['ALLOWED_INSTANCE_TYPES', 't3.micro,$(rm)'],
    ['ALLOWED_INSTANCE_TYPES', ' , '], ['KEY_NAME', '--evil'], ['SCRIPTS_DIR', '/no/such/dir'], ['HOST', 'a b'],
    ['DATABASE_URL', 'sqlite://'], ['KEY_FILE', 'keys/ops.pem'], ['KEY_FILE', '/keys/a\nb.pem'],
  ];
  for (const [variable, value] of bad) {
    it(`when ${variable}=${JSON.stringify(value)}, then start-up fails naming ${variable}`, () => {
      assert.throws(
        () => loadConfig({ [variable]: value }),
        (error: unknown) => error instanceof ConfigError && error.variable === variable && error.message.startsWith(variable),
      );
    });
  }
});

describe('SQLite store', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'ec2-creator-store-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('when the folder does not exist, then it is created, WAL is on and migrations set user_version', () => {
    const file = path.join(dir, 'a', 'b', 'instances.db');
    const store = openStore(file);
    store.close();

    assert.ok(existsSync(file));
    const db = new Database(file, { readonly: true });
    try {
      assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
      assert.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION);
    } finally {
      db.close();
    }
  });

  it('when opened twice, then migrations are not re-applied and rows survive', () => {
    const file = path.join(dir, 'instances.db');
    const first = openStore(file);
    first.instances.insertLaunch({
      clientToken: 'ec2c-t1', name: 'n', ami: 'ami-1e749f67', instanceType: 't3.micro', storageGb: 8,
      keyName: 'k', securityGroupId: null, loginUser: 'ubuntu',
    });
    first.close();

    const second = openStore(file);
    try {
      assert.equal(second.instances.findByClientToken('ec2c-t1')?.name, 'n');
    } finally {
      second.close();
    }
  });

  it('when a database from before the one-operation-per-instance rule holds two unfinished operations on an instance, then opening it keeps the newest and interrupts the other', () => {
    const file = path.join(dir, 'older.db');
    openStore(file).close();
    const db = new Database(file);
    // As a build of schema version 4 left it: no unique index, a server that died between two operations.
    db.exec(`DROP TRIGGER events_instance_imported;
             DROP TRIGGER events_instance_changed;
             DROP TRIGGER history_instance_imported;
             DROP TRIGGER history_instance_changed;
             DROP TRIGGER events_instance_guardrails;
             DROP TABLE instance_history;
             DROP INDEX instances_expiring;
             ${['owner', 'tags', 'expires_at', 'on_expiry', 'expiry_warned_at', 'expiry_done_at', 'schedule', 'schedule_done_at']
               .map((column) => `ALTER TABLE instances DROP COLUMN ${column};`).join('\n')}
             DROP TRIGGER events_operation_recorded;
             DROP TRIGGER events_operation_changed;
             DROP TABLE events;
             DROP TABLE sessions;
             DROP INDEX operations_one_in_flight_per_instance;
             DROP INDEX operations_unfinished_by_owner;
             ALTER TABLE operations DROP COLUMN owner;
             ALTER TABLE operations DROP COLUMN request;
             ALTER TABLE operations DROP COLUMN error_details;
             DROP TABLE replicas;`);
    db.pragma('user_version = 4');
    const insert = db.prepare(`INSERT INTO operations (id, kind, instance_id, status, created_at)
                               VALUES (?, ?, 'i-0abc', ?, '2026-11-01T00:00:00.000Z')`);
    insert.run('op-older', 'stop', 'running');
    insert.run('op-newer', 'start', 'queued');
    insert.run('op-done', 'stop', 'succeeded');
    db.close();

    const store = openStore(file);
    try {
      assert.equal(store.operations.get('op-older')?.status, 'interrupted');
      assert.match(store.operations.get('op-older')?.note ?? '', /one unfinished operation per instance/);
      assert.equal(store.operations.get('op-newer')?.status, 'queued');
      assert.equal(store.operations.get('op-done')?.status, 'succeeded');
      assert.throws(() => store.operations.insert({
        id: 'op-third', kind: 'stop', instanceId: 'i-0abc', clientToken: null, idempotencyKey: null, requestId: null,
        actor: null, clientAddress: null,
      }), /another operation on instance i-0abc is still in flight/);
    } finally {
      store.close();
    }
  });

  it('when the database was written by a newer build, then opening it refuses to run', () => {
    const file = path.join(dir, 'future.db');
    const db = new Database(file);
    db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    assert.throws(() => openStore(file), /newer than this build/);
  });
});

describe('OpenAPI document and docs', () => {
  let h: Harness;
  beforeEach(() => {
    h = createHarness();
  });
  afterEach(() => h.close());

  it('when /openapi.json is fetched, then it is OpenAPI 3.1 describing every operation', async () => {
    const response = await request(h.app).get('/openapi.json');

    assert.equal(response.status, 200);
    const doc = response.body;
    assert.equal(doc.openapi, '3.1.0');
    const operations = Object.entries(doc.paths as Record<string, Record<string, { operationId: string }>>)
      .flatMap(([p, methods]) => Object.entries(methods).map(([m, op]) => `${m.toUpperCase()} ${p} ${op.operationId}`))
      .sort();
    assert.deepEqual(operations, [
      'DELETE /instances/{id} destroyInstance',
      'DELETE /session signOut',
      'GET /events streamEvents',
      'GET /health health',
      'GET /health/live liveness',
      'GET /health/ready readiness',
      'GET /instances listInstances',
      'GET /instances/{id} getInstance',
      'GET /launch-policy getLaunchPolicy',
      'GET /metrics metrics',
      'GET /operations listOperations',
      'GET /operations/{id} getOperation',
      'GET /session getSession',
      'GET /usage getUsage',
      'PATCH /instances/{id} updateInstance',
      'POST /instances createInstance',
      'POST /instances/sync syncInstances',
      'POST /instances/{id}/start startInstance',
      'POST /instances/{id}/stop stopInstance',
      'POST /session signIn',
    ]);
    assert.deepEqual(doc.components.schemas.CreateInstanceRequest.required, ['name', 'ami', 'instance_type', 'storage_gb']);
    assert.equal(doc.components.schemas.CreateInstanceRequest.additionalProperties, false);
    assert.equal(h.runs.length, 0);
  });

  it('when /docs is fetched, then Swagger UI is served', async () => {
    const response = await request(h.app).get('/docs/');
    assert.equal(response.status, 200);
    assert.match(response.text, /swagger-ui/i);
  });
});
