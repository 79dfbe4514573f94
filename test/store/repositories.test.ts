/**
 * One behaviour, two stores: every assertion here runs against SQLite (a real file, through the asynchronous
 * interface) and against a real PostgreSQL started from the machine's binaries. What the domain relies on —
 * rows, filters, order, outcomes that stick, the one-unfinished-operation-per-instance rule, transactions
 * that commit whole or not at all — must not depend on which database is behind it.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { asyncSqliteStore } from '../../app/store/async-sqlite.js';
import { InstanceBusyError, StorageUnavailableError } from '../../app/store/errors.js';
import { openStore } from '../../app/store/index.js';
import type { Ec2Snapshot, NewLaunch } from '../../app/store/instances-repo.js';
import type { NewOperation } from '../../app/store/operations-repo.js';
import type { AsyncStore, Transaction } from '../../app/store/ports.js';
import { openPostgresStore } from '../../app/store/postgres/index.js';
import { PG_MIGRATIONS } from '../../app/store/postgres/migrations.js';
import { startPostgres, type PostgresServer } from '../../scripts/lib/postgres.js';
import { testRunDir } from '../support/global-fixture.js';
import { until } from '../support/lifecycle.js';

function launch(name: string): NewLaunch {
  return {
    clientToken: `ec2c-${randomUUID()}`, name, ami: 'ami-0123456789abcdef0', instanceType: 't3.micro', storageGb: 8,
    keyName: 'k', securityGroupId: null, loginUser: 'ubuntu',
  };
}

function snapshot(instanceId: string, state: Ec2Snapshot['state'] = 'running', name: string | null = null): Ec2Snapshot {
  return {
    instanceId, name, state, publicIp: '198.51.100.7', privateIp: '10.0.0.7', storageGb: 8, keyName: 'k',
    securityGroupId: 'sg-1', launchTime: '2026-11-23T10:00:00.000Z',
  };
}

function operation(kind: NewOperation['kind'], instanceId: string | null, more: Partial<NewOperation> = {}): NewOperation {
  return {
    id: `op-${randomUUID()}`, kind, instanceId, clientToken: null, idempotencyKey: null, requestId: 'req-1',
    actor: 'alice', clientAddress: '127.0.0.1', ...more,
  };
}

const instanceId = (): string => `i-${randomUUID().replace(/-/g, '').slice(0, 17)}`;

interface Backend {
  name: string;
  open(): Promise<AsyncStore>;
  /** A second store on the same database, as a second replica would have. */
  openAnother?(): Promise<AsyncStore>;
  teardown(): Promise<void>;
}

function sqliteBackend(): Backend {
  let dir: string | undefined;
  return {
    name: 'SQLite',
    async open() {
      dir = mkdtempSync(path.join(testRunDir(), 'store-contract-'));
      return asyncSqliteStore(openStore(path.join(dir, 'instances.db')));
    },
    async teardown() {
      if (dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

function postgresBackend(): Backend {
  let server: PostgresServer | undefined;
  let url = '';
  let databases = 0;
  return {
    name: 'PostgreSQL',
    async open() {
      server ??= await startPostgres({ holdsProcessOpen: false });
      url = await server.createDatabase(`contract_${(databases += 1)}`);
      return openPostgresStore(url);
    },
    openAnother: () => openPostgresStore(url),
    async teardown() {
      await server?.stop();
    },
  };
}

for (const backend of [sqliteBackend(), postgresBackend()]) {
  describe(`the store's repositories on ${backend.name}`, function () {
    this.timeout(60_000);
    let store: AsyncStore;
    const opened: AsyncStore[] = [];

    beforeEach(async () => {
      store = await backend.open();
      opened.push(store);
    });
    afterEach(async () => {
      for (const each of opened.splice(0)) await each.close();
    });
    after(() => backend.teardown());

    it('when a launch is recorded, completed and terminated, then it is found by id and token and leaves the live list but not the history', async () => {
      const wanted = launch('web-1');
      const recorded = await store.instances.insertLaunch(wanted);
      assert.equal(recorded.launch_status, 'launching');
      assert.equal(recorded.state, 'pending');
      assert.equal(recorded.instance_id, null);
      assert.deepEqual((await store.instances.unresolvedLaunches()).map((r) => r.client_token), [wanted.clientToken]);

      const id = instanceId();
      const completed = await store.instances.completeLaunch(wanted.clientToken, snapshot(id));
      assert.equal(completed.instance_id, id);
      assert.equal(completed.launch_status, 'launched');
      assert.equal(completed.name, 'web-1', 'EC2 reported no name: the recorded one stays');
      assert.equal(completed.public_ip, '198.51.100.7');
      assert.equal(typeof completed.row_id, 'number');
      assert.deepEqual(await store.instances.unresolvedLaunches(), []);
      assert.equal((await store.instances.findByClientToken(wanted.clientToken))?.instance_id, id);

      const terminated = await store.instances.markTerminated(id, 'gone');
      assert.equal(terminated.state, 'terminated');
      assert.equal(terminated.public_ip, null);
      assert.equal(terminated.last_error, 'gone');
      assert.deepEqual(await store.instances.live(), []);
      assert.deepEqual(await store.instances.list({ includeTerminated: false, limit: 10 }), []);
      assert.deepEqual((await store.instances.list({ includeTerminated: true, limit: 10 })).map((r) => r.instance_id), [id]);
      assert.equal((await store.instances.refresh(snapshot(id, 'running'))).state, 'terminated', 'terminated is final');
    });

    it('when instances are listed, then newest come first, the filters match exactly and a cursor pages without repeats', async () => {
      const ids: string[] = [];
      for (const [index, name] of ['a', 'b', 'web', 'web-2', 'c'].entries()) {
        const wanted = launch(name);
        await store.instances.insertLaunch(wanted);
        const id = instanceId();
        await store.instances.completeLaunch(wanted.clientToken, snapshot(id, index === 1 ? 'stopped' : 'running'));
        ids.push(id);
      }
      const all = await store.instances.list({ includeTerminated: false, limit: 10 });
      assert.deepEqual(all.map((r) => r.instance_id), [...ids].reverse());
      assert.deepEqual((await store.instances.list({ name: 'web', includeTerminated: false, limit: 10 })).map((r) => r.name), ['web']);
      assert.deepEqual((await store.instances.list({ state: 'stopped', includeTerminated: false, limit: 10 })).map((r) => r.name), ['b']);
      const page1 = await store.instances.list({ includeTerminated: false, limit: 2 });
      const page2 = await store.instances.list({ includeTerminated: false, limit: 2, beforeRowId: page1.at(-1)?.row_id });
      const page3 = await store.instances.list({ includeTerminated: false, limit: 2, beforeRowId: page2.at(-1)?.row_id });
      assert.deepEqual([...page1, ...page2, ...page3].map((r) => r.instance_id), [...ids].reverse());
    });

    it('when a launch fails or its outcome is unknown, then only the unknown one stays unresolved until it is relaunched or abandoned', async () => {
      const failed = launch('failed');
      const unknown = launch('unknown');
      await store.instances.insertLaunch(failed);
      await store.instances.insertLaunch(unknown);
      assert.equal((await store.instances.failLaunch(failed.clientToken, 'failed', 'InvalidAMIID')).state, 'failed');
      const open = await store.instances.failLaunch(unknown.clientToken, 'unknown', 'timed out');
      assert.equal(open.launch_status, 'unknown');
      assert.equal(open.last_error, 'timed out');
      assert.deepEqual((await store.instances.unresolvedLaunches()).map((r) => r.name), ['unknown']);
      assert.deepEqual(await store.instances.abandonedLaunches(), [], 'no operation of it was interrupted');

      const op = operation('create', null, { clientToken: unknown.clientToken });
      await store.operations.insert(op);
      await store.operations.finish(op.id, { status: 'interrupted', note: 'crash' });
      assert.deepEqual((await store.instances.abandonedLaunches()).map((r) => r.name), ['unknown']);

      const again = await store.instances.relaunch(unknown.clientToken);
      assert.equal(again.launch_status, 'launching');
      assert.equal(again.state, 'pending');
    });

    it('when an operation runs and finishes, then its outcome, result and duration are kept and a later outcome does not replace it', async () => {
      const id = instanceId();
      const op = operation('stop', id);
      const queued = await store.operations.insert(op);
      assert.equal(queued.status, 'queued');
      assert.deepEqual((await store.operations.unfinished()).map((r) => r.id), [op.id]);
      assert.equal((await store.operations.markRunning(op.id, null)).status, 'running');
      await store.operations.setScriptGroup(op.id, 4242);
      assert.equal(await store.operations.scriptRunningOn(id), op.id);
      assert.deepEqual((await store.operations.withScriptGroup()).map((r) => r.script_pgid), [4242]);
      await store.operations.setScriptGroup(op.id, null);
      assert.equal(await store.operations.scriptRunningOn(id), undefined);
      await store.operations.setNote(op.id, 'coalesced with 2 others');

      const done = await store.operations.finish(op.id, { status: 'succeeded', exitCode: 0, result: { state: 'stopped' } });
      assert.equal(done.status, 'succeeded');
      assert.deepEqual(JSON.parse(done.result ?? 'null'), { state: 'stopped' });
      assert.equal(done.note, 'coalesced with 2 others');
      assert.equal(typeof done.duration_ms, 'number');
      assert.ok((done.duration_ms ?? -1) >= 0);
      assert.ok(done.finished_at && done.finished_at >= done.created_at);

      const late = await store.operations.finish(op.id, { status: 'interrupted', note: 'shutdown' });
      assert.equal(late.status, 'succeeded', 'the first outcome stays');
      assert.deepEqual(await store.operations.unfinished(), []);
    });

    it('when servers take queued operations, then each gets another one, oldest first, never its own, a sync or a started one', async () => {
      const other = backend.openAnother ? await backend.openAnother() : store;
      if (other !== store) opened.push(other);
      const onA = (kind: NewOperation['kind'], more: Partial<NewOperation> = {}) => operation(kind, instanceId(), { owner: 'server-a', ...more });
      const syncOp = operation('sync', null, { owner: 'server-a' });
      const started = onA('stop', { running: true });
      const oldest = onA('create', { instanceId: null, request: { name: 'web-1' } });
      const next = onA('start');
      const ownOfB = onA('stop', { owner: 'server-b' });
      const last = onA('terminate');
      for (const op of [syncOp, started, oldest, next, ownOfB, last]) await store.operations.insert(op);
      assert.equal((await store.operations.get(started.id))?.status, 'running');
      assert.deepEqual(JSON.parse((await store.operations.get(oldest.id))?.request ?? 'null'), { name: 'web-1' });

      const taken = await Promise.all([store.operations.takeQueued('server-b'), other.operations.takeQueued('server-c')]);
      assert.deepEqual(taken.map((row) => row?.id).sort(), [oldest.id, next.id].sort(), 'the two oldest, one each');
      for (const row of taken) assert.equal(row?.status, 'running');
      assert.deepEqual(taken.map((row) => row?.owner).sort(), ['server-b', 'server-c']);
      assert.equal((await store.operations.takeQueued('server-b'))?.id, last.id, 'the one server-b queued itself is passed over');
      assert.equal(await store.operations.takeQueued('server-b'), undefined);

      const late = await store.operations.markRunning(last.id, 'server-a');
      assert.equal(late.owner, 'server-b', 'who started it first keeps it');
      const untouched = await store.operations.finish(last.id, { status: 'interrupted', note: 'server-a is gone' }, 'server-a');
      assert.equal(untouched.status, 'running', 'an outcome for its former owner does not apply');
      const failed = await store.operations.finish(last.id, {
        status: 'failed', errorCode: 'launch-policy', errorMessage: 'no', errorDetails: { errors: [{ field: 'ami', message: 'gone' }] },
      }, 'server-b');
      assert.equal(failed.status, 'failed');
      assert.deepEqual(JSON.parse(failed.error_details ?? 'null'), { errors: [{ field: 'ami', message: 'gone' }] });
    });

    it('when operations are listed, then newest come first and each filter narrows them', async () => {
      const id = instanceId();
      const first = operation('create', null, { actor: 'alice' });
      const second = operation('stop', id, { actor: 'bob', clientAddress: '10.1.1.1' });
      const third = operation('sync', null, { actor: 'alice' });
      for (const op of [first, second, third]) await store.operations.insert(op);
      await store.operations.finish(third.id, { status: 'failed', errorCode: 'throttled' });

      assert.deepEqual((await store.operations.list({ limit: 10 })).map((r) => r.id), [third.id, second.id, first.id]);
      assert.deepEqual((await store.operations.list({ actor: 'alice', limit: 10 })).map((r) => r.id), [third.id, first.id]);
      assert.deepEqual((await store.operations.list({ status: 'failed', limit: 10 })).map((r) => r.id), [third.id]);
      assert.deepEqual((await store.operations.list({ instanceId: id, limit: 10 })).map((r) => r.id), [second.id]);
      assert.deepEqual((await store.operations.list({ clientAddress: '10.1.1.1', kind: 'stop', limit: 10 })).map((r) => r.id), [second.id]);
      const older = await store.operations.list({ limit: 10, beforeRowId: (await store.operations.get(second.id))?.row_id });
      assert.deepEqual(older.map((r) => r.id), [first.id]);
    });

    it('when a second operation on an instance is recorded while one is unfinished, then the database refuses it and records nothing', async () => {
      const id = instanceId();
      const stop = operation('stop', id);
      await store.operations.insert(stop);
      const start = operation('start', id);
      await assert.rejects(store.operations.insert(start), (error: unknown) =>
        error instanceof InstanceBusyError && error.instanceId === id);
      assert.equal(await store.operations.get(start.id), undefined);

      // A launch learning its instance id is held to the same rule.
      const create = operation('create', null);
      await store.operations.insert(create);
      await assert.rejects(store.operations.setInstance(create.id, id), InstanceBusyError);
      assert.equal((await store.operations.get(create.id))?.instance_id, null);

      await store.operations.finish(stop.id, { status: 'succeeded' });
      assert.equal((await store.operations.insert(start)).status, 'queued', 'once it has finished, the next may go');
    });

    it('when two transactions race to record an operation on one instance, then exactly one of them commits', async () => {
      const id = instanceId();
      const other = backend.openAnother ? await backend.openAnother() : store;
      if (other !== store) opened.push(other);
      const attempt = (on: AsyncStore) => on.transaction(async (tx) => {
        await tx.operations.unfinished();
        const op = operation('stop', id);
        await tx.operations.insert(op);
        return op;
      });
      const outcomes = await Promise.allSettled([attempt(store), attempt(other)]);
      const won = outcomes.filter((o) => o.status === 'fulfilled');
      const lost = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
      assert.equal(won.length, 1, JSON.stringify(outcomes.map((o) => o.status)));
      assert.ok(lost[0]?.reason instanceof InstanceBusyError, String(lost[0]?.reason));
      assert.equal((await store.operations.list({ instanceId: id, limit: 10 })).length, 1);
    });

    it('when a transaction fails after writing, then none of its writes remain and nobody saw them meanwhile', async () => {
      const wanted = launch('rolled-back');
      let seenDuring: unknown = 'not read';
      let readDuring: Promise<void> | undefined;
      await assert.rejects(store.transaction(async (tx) => {
        await tx.instances.insertLaunch(wanted);
        await tx.idempotency.claim({ scope: 'alice', key: 'k-1', fingerprint: 'f', operationId: 'op-x' }, null);
        readDuring = store.instances.findByClientToken(wanted.clientToken).then((row) => {
          seenDuring = row;
        });
        // Give a read that does not wait for the transaction every chance to finish first.
        await new Promise((resolve) => setImmediate(resolve));
        throw new Error('quota exceeded');
      }), /quota exceeded/);
      await readDuring;
      assert.equal(seenDuring, undefined);
      assert.equal(await store.instances.findByClientToken(wanted.clientToken), undefined);
      assert.equal(await store.idempotency.find('alice', 'k-1'), undefined);

      const committed = await store.transaction(async (tx) => (await tx.instances.insertLaunch(launch('kept'))).client_token);
      assert.equal((await store.instances.findByClientToken(committed))?.name, 'kept');
    });

    it('when an idempotency key is claimed, answered, claimed again and aged, then each step shows and old keys are purged', async () => {
      assert.equal(await store.idempotency.claim({ scope: 'alice', key: 'k', fingerprint: 'fp', operationId: 'op-1' }, null), true);
      assert.equal(await store.idempotency.claim({ scope: 'bob', key: 'k', fingerprint: 'other', operationId: 'op-2' }, null), true);
      assert.equal(await store.idempotency.claim({ scope: 'alice', key: 'k', fingerprint: 'fp', operationId: 'op-late' }, null), false,
        'a key claimed since it was read is not taken again');
      await store.idempotency.remember('alice', 'k', { status: 201, body: '{"id":"i-1"}', location: '/instances/i-1' });
      const answered = await store.idempotency.find('alice', 'k');
      assert.equal(answered?.response_status, 201);
      assert.equal(answered?.response_location, '/instances/i-1');
      assert.equal((await store.idempotency.find('bob', 'k'))?.fingerprint, 'other', 'scopes never collide');

      assert.equal(await store.idempotency.claim({ scope: 'alice', key: 'k', fingerprint: 'fp', operationId: 'op-3' }, 'op-0'), false,
        'a retry claims the key only from the operation it read');
      assert.equal(await store.idempotency.claim({ scope: 'alice', key: 'k', fingerprint: 'fp', operationId: 'op-3' }, 'op-1'), true);
      const retried = await store.idempotency.find('alice', 'k');
      assert.equal(retried?.operation_id, 'op-3');
      assert.equal(retried?.response_status, null, 'a retry forgets the old answer');

      assert.equal(await store.idempotency.purgeOlderThan('2000-01-01T00:00:00.000Z'), 0);
      assert.equal(await store.idempotency.purgeOlderThan(new Date(Date.now() + 60_000).toISOString()), 2);
      assert.equal(await store.idempotency.find('alice', 'k'), undefined);
    });

    it('when a duty such as the periodic sync is taken, then nobody else gets it until it is released', async () => {
      const other = backend.openAnother ? await backend.openAnother() : store;
      if (other !== store) opened.push(other);
      const sync = await store.tryDuty('sync');
      assert.ok(sync, 'a free duty is taken');
      assert.equal(await other.tryDuty('sync'), undefined, 'held elsewhere');
      const purge = await other.tryDuty('purge-idempotency-keys');
      assert.ok(purge, 'duties are independent of each other');
      await sync.release();
      const again = await other.tryDuty('sync');
      assert.ok(again, 'released, it can be taken again');
      await again.release();
      await purge.release();
    });

    it('when two requests with the same new Idempotency-Key are recorded at once, then exactly one claims it', async () => {
      const other = backend.openAnother ? await backend.openAnother() : store;
      if (other !== store) opened.push(other);
      const attempt = (on: AsyncStore, operationId: string) => on.transaction(async (tx) => {
        const seen = await tx.idempotency.find('alice', 'same-key');
        if (seen) return false;
        return tx.idempotency.claim({ scope: 'alice', key: 'same-key', fingerprint: 'fp', operationId }, null);
      });
      const claims = await Promise.all([attempt(store, 'op-a'), attempt(other, 'op-b')]);
      assert.deepEqual(claims.filter(Boolean), [true], JSON.stringify(claims));
      const holder = (await store.idempotency.find('alice', 'same-key'))?.operation_id;
      assert.equal(holder, claims[0] ? 'op-a' : 'op-b');
    });

    it('when a store is asked whether it can take writes, then a healthy one says yes', async () => {
      assert.deepEqual(await store.health(), { ok: true });
    });
  });
}

describe('the PostgreSQL store\'s schema and faults', function () {
  this.timeout(60_000);
  let server: PostgresServer;
  before(async () => {
    server = await startPostgres({ holdsProcessOpen: false });
  });
  after(() => server?.stop());

  it('when three replicas start on one new database at once, then each opens it and the schema is migrated once', async () => {
    const url = await server.createDatabase('replicas_at_once');
    const stores = await Promise.all([openPostgresStore(url), openPostgresStore(url), openPostgresStore(url)]);
    try {
      const client = new pg.Client(url);
      await client.connect();
      try {
        assert.deepEqual((await client.query('SELECT version FROM schema_version')).rows, [{ version: PG_MIGRATIONS.length }]);
      } finally {
        await client.end();
      }
      const wanted = launch('shared');
      await stores[0]?.instances.insertLaunch(wanted);
      assert.equal((await stores[2]?.instances.findByClientToken(wanted.clientToken))?.name, 'shared', 'one database, seen by all');
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });

  it('when the database was migrated by a newer build, then opening it is refused naming the versions', async () => {
    const url = await server.createDatabase('from_the_future');
    const client = new pg.Client(url);
    await client.connect();
    try {
      await client.query('CREATE TABLE schema_version (version INTEGER NOT NULL)');
      await client.query('INSERT INTO schema_version VALUES ($1)', [PG_MIGRATIONS.length + 1]);
    } finally {
      await client.end();
    }
    await assert.rejects(openPostgresStore(url), (error: Error) =>
      /cannot open the PostgreSQL database postgres:\/\/.*from_the_future/.test(error.message)
      && error.message.includes(`schema version ${PG_MIGRATIONS.length + 1} is newer than this build knows (${PG_MIGRATIONS.length})`));
  });

  it('when two servers count and write under one topic at once, then the second counts only after the first has committed', async () => {
    const url = await server.createDatabase('serialised');
    const [a, b] = await Promise.all([openPostgresStore(url), openPostgresStore(url)]);
    const observer = new pg.Client(url);
    await observer.connect();
    try {
      let inserted!: () => void;
      const firstInserted = new Promise<void>((resolve) => (inserted = resolve));
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const countAndLaunch = async (tx: Transaction, name: string, hold?: Promise<void>) => {
        await tx.serialize('launch-quota');
        const counted = (await tx.instances.unresolvedLaunches()).length;
        if (counted === 0) await tx.instances.insertLaunch(launch(name));
        if (hold) {
          inserted();
          await hold;
        }
        return counted;
      };
      const first = a.transaction((tx) => countAndLaunch(tx, 'first', gate));
      await firstInserted;
      let secondDone = false;
      const second = b.transaction((tx) => countAndLaunch(tx, 'second')).finally(() => {
        secondDone = true;
      });
      // Released once the second transaction has either finished or is waiting for the topic's lock.
      await until('the second transaction finished or waits for the topic', async () => secondDone
        || (await observer.query("SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")).rowCount === 1);
      release();
      assert.equal(await first, 0);
      assert.equal(await second, 1, 'the second counted the first launch');
      assert.deepEqual((await a.instances.unresolvedLaunches()).map((r) => r.name), ['first']);
    } finally {
      await observer.end();
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('when the server drops the store\'s connections, then the next calls reconnect and nothing is lost', async () => {
    const url = await server.createDatabase('dropped');
    const store = await openPostgresStore(url);
    try {
      const wanted = launch('kept');
      await store.instances.insertLaunch(wanted);
      const reads = () => Promise.all(Array.from({ length: 6 }, () => store.instances.findByClientToken(wanted.clientToken)));
      await reads(); // several pooled connections, idle
      const admin = new pg.Client(url);
      await admin.connect();
      // The next reads go out at once, before the pool can have heard that its connections were ended.
      let again: ReturnType<typeof reads>;
      try {
        const ended = await admin.query(
          "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'dropped' AND pid <> pg_backend_pid()",
        );
        again = reads();
        assert.ok(ended.rowCount && ended.rowCount > 0, 'the store held a connection to drop');
      } finally {
        await admin.end();
      }
      assert.deepEqual((await again).map((row) => row?.name), Array(6).fill('kept'));
      assert.equal((await store.instances.findByClientToken(wanted.clientToken))?.name, 'kept');
      assert.deepEqual(await store.health(), { ok: true });
    } finally {
      await store.close();
    }
  });

  it('when the replica holding a duty dies, then it loses the duty and another replica takes it over', async () => {
    const url = await server.createDatabase('duty_failover');
    const [a, b] = await Promise.all([openPostgresStore(url), openPostgresStore(url)]);
    try {
      const held = await a.tryDuty('sync');
      assert.ok(held);
      assert.equal(await b.tryDuty('sync'), undefined);
      // What a kill -9 of replica A looks like from the database: its sessions end.
      const admin = new pg.Client(url);
      await admin.connect();
      try {
        await admin.query(
          "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted",
        );
      } finally {
        await admin.end();
      }
      await held.lost;
      const taken = await b.tryDuty('sync');
      assert.ok(taken, 'B holds the duty now');
      await taken.release();
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('when the connection drops in the middle of a transaction, then the transaction fails as unavailable, nothing of it stays and the store goes on', async () => {
    const url = await server.createDatabase('dropped_in_transaction');
    const store = await openPostgresStore(url);
    const admin = new pg.Client(url);
    await admin.connect();
    try {
      const wanted = launch('half-written');
      await assert.rejects(store.transaction(async (tx) => {
        await tx.instances.insertLaunch(wanted);
        await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'dropped_in_transaction' AND pid <> pg_backend_pid()");
        await tx.instances.live();
      }), StorageUnavailableError);
      assert.equal(await store.instances.findByClientToken(wanted.clientToken), undefined);
      assert.deepEqual(await store.health(), { ok: true });
    } finally {
      await admin.end();
      await store.close();
    }
  });

  it('when the database server is down, then calls fail as unavailable (503) and readiness says why', async () => {
    const own = await startPostgres({ holdsProcessOpen: false });
    const store = await openPostgresStore(own.url);
    try {
      await store.instances.live();
      await own.stop();
      await assert.rejects(store.instances.live(), (error: unknown) =>
        error instanceof StorageUnavailableError && /cannot be reached now/.test(error.message));
      await assert.rejects(store.transaction(async (tx) => tx.instances.live()), StorageUnavailableError);
      const health = await store.health();
      assert.equal(health.ok, false);
      assert.match(health.ok ? '' : health.reason, /cannot be reached/);
    } finally {
      await store.close();
      await own.stop();
    }
  });
});
