/**
 * The operations engine on its own: the cap, the FIFO queue, the refusal beyond it, one operation per
 * instance, Idempotency-Key replays and the drain, with a real SQLite store and work that finishes when
 * the test says so. No script runs: the end-to-end tests keep one case of each behaviour.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  IdempotencyMismatchError, OperationInFlightError, UnavailableError,
} from '../../app/domain/errors.js';
import { createOperationsEngine, type OperationsEngine, type SubmitSpec, type Submission } from '../../app/domain/operations.js';
import { createLogger } from '../../app/logger.js';
import { until } from '../support/lifecycle.js';
import { openStore, type Store } from '../../app/store/index.js';
import { asyncSqliteStore } from '../../app/store/async-sqlite.js';
import type { AsyncStore } from '../../app/store/ports.js';
import { openPostgresStore } from '../../app/store/postgres/index.js';
import { freshPostgresDatabase } from '../support/postgres.js';

/** Work that runs until the test finishes it. */
interface HeldWork {
  readonly started: boolean;
  finish(value?: unknown): void;
  fail(error: Error): void;
}

function held(): HeldWork & { run(): Promise<unknown> } {
  let resolve: (value: unknown) => void = () => undefined;
  let reject: (error: Error) => void = () => undefined;
  const promise = new Promise<unknown>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  const work = {
    started: false,
    finish: (value: unknown = { state: 'stopped' }) => resolve(value),
    fail: (error: Error) => reject(error),
    run() {
      work.started = true;
      return promise;
    },
  };
  return work;
}

/** Lets the engine's promise chains move on. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('operations engine', () => {
  let dir: string;
  let store: Store;

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'ec2-creator-engine-'));
    store = openStore(path.join(dir, 'instances.db'));
  });
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function engine(limits: { maxConcurrent?: number; maxQueued?: number } = {}): OperationsEngine {
    return createOperationsEngine({
      store: asyncSqliteStore(store),
      logger: createLogger({ silent: true }),
      maxConcurrent: limits.maxConcurrent ?? 8,
      maxQueued: limits.maxQueued ?? 32,
      idempotencyTtlHours: 24,
      retryAfterSeconds: 7,
    });
  }

  let current: OperationsEngine;
  function stop(instanceId: string, work: { run(): Promise<unknown> }, extra: Partial<SubmitSpec<unknown>> = {}): Promise<Submission<unknown>> {
    return current.submit({ kind: 'stop', instanceId, run: () => work.run(), result: (value) => value, ...extra });
  }

  const started = (submission: Submission<unknown>) => {
    assert.equal(submission.type, 'started');
    return submission as Extract<Submission<unknown>, { type: 'started' }>;
  };
  const statusOf = (submission: Submission<unknown>) => store.operations.get(started(submission).operation.id)?.status;

  it('when more operations arrive than the cap, then the cap run, the next waits in FIFO order, and beyond the queue they are refused with a retry hint and nothing recorded', async () => {
    current = engine({ maxConcurrent: 2, maxQueued: 2 });
    const works = [held(), held(), held(), held()];
    const submissions = await Promise.all(works.map((work, i) => stop(`i-0000000000000000${i}`, work)));
    await settle();

    assert.deepEqual(works.map((w) => w.started), [true, true, false, false]);
    assert.deepEqual(submissions.map(statusOf), ['running', 'running', 'queued', 'queued']);
    assert.deepEqual(current.stats(), { running: 2, queued: 2, active: 4 });
    const refused = await stop('i-00000000000000009', held()).then(() => undefined, (error: unknown) => error);
    assert.ok(refused instanceof UnavailableError, String(refused));
    assert.match(refused.message, /2 script slots/);
    assert.equal(refused.retryAfterSeconds, 7);
    assert.equal(store.operations.list({ instanceId: 'i-00000000000000009', limit: 5 }).length, 0);

    works[1]?.finish();
    await started(submissions[1] as Submission<unknown>).done;
    await settle();
    assert.deepEqual(works.map((w) => w.started), [true, true, true, false], 'the first in line takes the free slot');
    works[0]?.finish();
    await settle();
    assert.deepEqual(works.map((w) => w.started), [true, true, true, true]);
    for (const work of works) work.finish();
    await current.idle();
    assert.deepEqual(submissions.map(statusOf), ['succeeded', 'succeeded', 'succeeded', 'succeeded']);
  });

  it('when the only running operation finishes while the next one is being recorded, then the next one still runs and the engine ends idle', async () => {
    // The next one's record is held in its transaction (as a slow database would hold it) until the first has
    // ended: on PostgreSQL, where the first one's own record is written meanwhile, as another server's would be.
    const base = await openPostgresStore(await freshPostgresDatabase());
    try {
      let hold: { reached: () => void; open: Promise<void> } | undefined;
      const slowStore: AsyncStore = {
        ...base,
        transaction: (work) => base.transaction((tx) => work({
          ...tx,
          operations: {
            ...tx.operations,
            async insert(op) {
              const held = hold;
              hold = undefined;
              if (held) {
                held.reached();
                await held.open;
              }
              return tx.operations.insert(op);
            },
          },
        })),
      };
      current = createOperationsEngine({
        store: slowStore, logger: createLogger({ silent: true }), maxConcurrent: 1, maxQueued: 4, idempotencyTtlHours: 24,
      });
      const first = held();
      const running = started(await stop('i-0000000000000000a', first));
      await until('the first operation runs', () => first.started);

      let reached!: () => void;
      const atStore = new Promise<void>((resolve) => (reached = resolve));
      let open!: () => void;
      hold = { reached, open: new Promise<void>((resolve) => (open = resolve)) };
      const second = held();
      const submitting = stop('i-0000000000000000b', second);
      await atStore;
      first.finish();
      await running.done;
      open();
      const next = started(await submitting);
      await until('the second operation starts', () => second.started);
      second.finish();
      await next.done;
      await current.idle();
      assert.deepEqual(current.stats(), { running: 0, queued: 0, active: 0 });
      assert.equal((await base.operations.get(next.operation.id))?.status, 'succeeded');
    } finally {
      await base.close();
    }
  });

  it('when two servers on one PostgreSQL take an operation on the same instance, then the second is refused naming the first', async () => {
    const url = await freshPostgresDatabase();
    const [a, b] = [await openPostgresStore(url), await openPostgresStore(url)];
    try {
      const on = (shared: AsyncStore, owner: string) => createOperationsEngine({
        store: shared, logger: createLogger({ silent: true }), maxConcurrent: 8, maxQueued: 32, idempotencyTtlHours: 24, owner,
      });
      const [first, second] = [on(a, 'replica-a'), on(b, 'replica-b')];
      const work = held();
      const running = started(await first.submit({ kind: 'stop', instanceId: 'i-0000000000000000c', run: () => work.run() }));
      // Only the database knows of the first: the second server has nothing in memory about the instance.
      await assert.rejects(
        second.submit({ kind: 'stop', instanceId: 'i-0000000000000000c', run: () => held().run() }),
        (error: unknown) => error instanceof OperationInFlightError && error.operationId === running.operation.id,
      );
      assert.equal((await a.operations.list({ instanceId: 'i-0000000000000000c', limit: 5 })).length, 1);
      assert.deepEqual(second.stats(), { running: 0, queued: 0, active: 0 }, 'the refused one holds no slot');
      work.finish();
      await running.done;
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('when an operation targets an instance that has one in flight, then it is refused naming the first, and it may run once the first finished', async () => {
    current = engine();
    const first = held();
    const submission = started(await stop('i-0123456789abcdef0', first));

    await assert.rejects(stop('i-0123456789abcdef0', held()), (error: unknown) =>
      error instanceof OperationInFlightError && error.operationId === submission.operation.id);
    assert.equal(store.operations.list({ instanceId: 'i-0123456789abcdef0', limit: 5 }).length, 1);
    const other = started(await stop('i-0123456789abcdef1', held()));
    assert.equal(other.type, 'started', 'other instances are not held up');

    first.finish();
    await submission.done;
    const again = held();
    started(await stop('i-0123456789abcdef0', again));
    await settle();
    assert.equal(again.started, true);
  });

  it('when an Idempotency-Key comes again, then it answers in-flight while the first runs, the first answer once it finished, and a mismatch for a different request', async () => {
    current = engine();
    const key = { key: 'key-1', fingerprint: 'stop i-0123456789abcdef0' };
    const remember = { success: () => ({ status: 200, body: { state: 'stopped' } }), failure: () => undefined };
    const first = held();
    const submission = started(await stop('i-0123456789abcdef0', first, { idempotency: key, remember }));

    const during = await stop('i-0123456789abcdef0', held(), { idempotency: key, remember });
    assert.equal(during.type, 'in-flight');
    assert.equal(during.type === 'in-flight' && during.operation.id, submission.operation.id);

    first.finish();
    await submission.done;
    const after = await stop('i-0123456789abcdef0', held(), { idempotency: key, remember });
    assert.deepEqual(after, { type: 'replay', operationId: submission.operation.id, response: { status: 200, body: { state: 'stopped' }, location: null } });
    await assert.rejects(
      stop('i-0123456789abcdef1', held(), { idempotency: { key: 'key-1', fingerprint: 'stop i-0123456789abcdef1' }, remember }),
      IdempotencyMismatchError,
    );
    assert.equal(store.operations.list({ limit: 10 }).length, 1, 'neither the replay nor the mismatch recorded an operation');
  });

  it('when a failure is not remembered, then the same key runs again', async () => {
    current = engine();
    const key = { key: 'key-2', fingerprint: 'stop i-0123456789abcdef0' };
    const remember = { success: () => ({ status: 200, body: {} }), failure: () => undefined };
    const first = held();
    const submission = started(await stop('i-0123456789abcdef0', first, { idempotency: key, remember }));
    first.fail(new Error('EC2 was unreachable'));
    await assert.rejects(submission.done, /unreachable/);
    assert.equal(statusOf(submission), 'failed');

    const retry = await stop('i-0123456789abcdef0', held(), { idempotency: key, remember });
    assert.equal(retry.type, 'started');
  });

  it('when shutdown begins, then new operations are refused, running ones finish, and idle() resolves after them', async () => {
    current = engine();
    const work = held();
    const submission = started(await stop('i-0123456789abcdef0', work));
    current.beginShutdown();

    assert.equal(current.draining, true);
    await assert.rejects(stop('i-0123456789abcdef1', held()), UnavailableError);
    let idle = false;
    const idlePromise = current.idle().then(() => { idle = true; });
    await settle();
    assert.equal(idle, false, 'still busy with the running stop');
    work.finish();
    await idlePromise;
    assert.equal(statusOf(submission), 'succeeded');
  });

  it('when the shutdown bound passes, then what still runs is marked interrupted and its waiters are answered', async () => {
    current = engine();
    const submission = started(await stop('i-0123456789abcdef0', held()));
    await settle();

    const interrupted = await current.interruptActive('interrupted: still in flight at shutdown');

    assert.deepEqual(interrupted, [submission.operation.id]);
    await assert.rejects(submission.done, /interrupted/);
    const row = store.operations.get(submission.operation.id);
    assert.equal(row?.status, 'interrupted');
    assert.match(row?.note ?? '', /still in flight at shutdown/);
  });
});
