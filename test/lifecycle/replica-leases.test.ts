/**
 * Which servers count as gone, as a starting server judges it from the replicas table: its lease ran out,
 * or (on this very machine, in this pid namespace) its process is gone. The table is a real SQLite one
 * through the store interface; the judgement is the same on PostgreSQL.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { joinReplicas } from '../../app/domain/replicas.js';
import { createLogger } from '../../app/logger.js';
import { asyncSqliteStore } from '../../app/store/async-sqlite.js';
import { openStore, type Store } from '../../app/store/index.js';
import type { OperationRow } from '../../app/store/operations-repo.js';
import type { AsyncStore } from '../../app/store/ports.js';
import { testRunDir } from '../support/global-fixture.js';

const HERE = 'build-7 (pid namespace 4026531836)';
const LIVE_PIDS = new Set([111, 222]);

describe('replica leases at start-up', () => {
  let dir: string;
  let sqlite: Store;
  let store: AsyncStore;

  beforeEach(() => {
    dir = mkdtempSync(path.join(testRunDir(), 'leases-'));
    sqlite = openStore(path.join(dir, 'instances.db'));
    store = asyncSqliteStore(sqlite);
  });
  afterEach(() => {
    sqlite.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const op = (owner: string | null, createdAt = '2026-01-01T00:00:00.000Z'): OperationRow =>
    ({ id: `op-${owner}`, owner, created_at: createdAt } as OperationRow);

  async function register(id: string, host: string, pid: number, heartbeatAgoMs: number): Promise<void> {
    await store.replicas.register({ id, host, pid, url: null });
    sqlite.db.prepare('UPDATE replicas SET heartbeat_at = ? WHERE id = ?').run(new Date(Date.now() - heartbeatAgoMs).toISOString(), id);
  }

  it('when a server starts beside others, then it takes over only those whose lease ran out or whose process on this machine is gone', async () => {
    await register('fresh-here', HERE, 111, 1_000);
    await register('gone-here', HERE, 999, 1_000);
    await register('fresh-elsewhere', 'build-8 (pid namespace 4026531836)', 999, 1_000);
    await register('stale-elsewhere', 'build-8 (pid namespace 4026531836)', 222, 60_000);
    await register('same-name-other-namespace', 'build-7 (pid namespace 4026532001)', 999, 1_000);

    const replica = await joinReplicas({
      store, shared: true, leaseTimeoutMs: 30_000, host: HERE, pid: 333, isAlive: (pid) => LIVE_PIDS.has(pid),
      logger: createLogger({ silent: true }), newId: () => 'starting',
    });
    const scope = await replica.startUpScope();

    const judged = Object.fromEntries(
      ['fresh-here', 'gone-here', 'fresh-elsewhere', 'stale-elsewhere', 'same-name-other-namespace', 'starting']
        .map((owner) => [owner, scope.abandoned(op(owner))]),
    );
    assert.deepEqual(judged, {
      'fresh-here': false,
      'gone-here': true,
      'fresh-elsewhere': false,
      'stale-elsewhere': true,
      'same-name-other-namespace': false,
      starting: false,
    });
    assert.equal(scope.abandoned(op(null)), true, 'work from before servers were told apart has nobody left');
    assert.equal(scope.abandoned(op('registered-since', '2999-01-01T00:00:00.000Z')), false,
      'an owner that registered after the table was read is alive');
    assert.equal(scope.local(op('gone-here')), true);
    assert.equal(scope.local(op('stale-elsewhere')), false, 'a script on another machine is not looked for here');
    assert.deepEqual((await store.replicas.list()).map((r) => r.id).sort(),
      ['fresh-elsewhere', 'fresh-here', 'same-name-other-namespace', 'starting'], 'the dead are removed by the one taking over');
    await replica.leave();
  });
});
