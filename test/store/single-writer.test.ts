/**
 * One writer per database: a second server on the same DATABASE_URL must refuse to start before it writes
 * anything (it would otherwise "recover" the first server's running operations as interrupted); the lock
 * dies with its holder, even on SIGKILL; and a port clash stops start-up before recovery touches the data.
 * Real server processes; a fake aws holds the first server's launch at a ws.gate (marker files, no sleeps).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import path from 'node:path';
import { openStore } from '../../app/store/index.js';
import { UBUNTU_X86_AMI, allEc2Instances } from '../support/ec2-reader.js';
import { getJson, markers, readRows, until } from '../support/lifecycle.js';
import { type ServerProcess } from '../support/server-process.js';
import { useServerWorkspace } from '../support/server-workspace.js';
import { fakeAwsEnv } from '../support/fake-aws.js';

const LAUNCH = { name: 'writer-1', ami: UBUNTU_X86_AMI, instance_type: 't3.micro', storage_gb: 8 };

/** How a server process that may be refused ends its start-up: it listens, or it exits. */
async function startUp(server: ServerProcess): Promise<'listening' | { code: number | null; signal: NodeJS.Signals | null }> {
  return await Promise.race([
    server.exited,
    server.waitForLog('listening', (l) => l.message === 'listening').then(() => 'listening' as const, () => server.exited),
  ]);
}

describe('one writer per database', function () {
  this.timeout(120_000);
  const ws = useServerWorkspace('writer');
  const start = ws.start;
  const spawn = ws.spawn;

  it('when a second server starts on a ws.database a running server holds, then it exits non-zero naming the ws.database and the holder\'s pid, and the first server\'s launch goes on untouched', async () => {
    const first = await start({
      DATABASE_URL: ws.database,
      ...fakeAwsEnv({ FAKE_AWS_GATE_OP: 'run-instances', FAKE_AWS_GATE_DIR: ws.gate }),
    });
    const pending = getJson(`${first.url}/instances`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(LAUNCH),
    });
    await until('the launch is held in front of EC2', () => markers(ws.gate, 'entered').length === 1);
    const before = readRows<{ id: string; status: string }>(ws.database, 'SELECT id, status FROM operations');
    assert.deepEqual(before.map((o) => o.status), ['running']);

    const second = await spawn({ DATABASE_URL: ws.database });
    const outcome = await startUp(second);

    assert.deepEqual(readRows(ws.database, 'SELECT id, status FROM operations'), before, 'nothing was interrupted, no sync was recorded');
    assert.notEqual(outcome, 'listening', 'the second server must not start');
    assert.equal(typeof outcome === 'object' && outcome.code !== 0 && outcome.code !== null, true, JSON.stringify(outcome));
    assert.match(second.stderr(), /ec2-creator: /);
    assert.ok(second.stderr().includes(ws.database), `names the database: ${second.stderr()}`);
    assert.match(second.stderr(), new RegExp(`\\bpid ${first.pid}\\b`), 'names the process holding it');

    writeFileSync(path.join(ws.gate, 'release'), '');
    const created = await pending;
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal((await allEc2Instances()).length, 1);
    const after = readRows<{ kind: string; status: string }>(ws.database, 'SELECT kind, status FROM operations');
    assert.deepEqual(after, [{ kind: 'create', status: 'succeeded' }]);
  });

  it('when the holder is killed with SIGKILL, then a new server starts on the ws.database and records itself as the holder, and releases it on a graceful shutdown', async () => {
    const first = await start({ DATABASE_URL: ws.database });
    process.kill(first.pid, 'SIGKILL');
    assert.equal((await first.exited).signal, 'SIGKILL');
    const owner = `${ws.database}.owner`;
    assert.equal(JSON.parse(readFileSync(owner, 'utf8')).pid, first.pid, 'a killed holder leaves its owner file behind');

    const second = await start({ DATABASE_URL: ws.database });
    assert.equal((await getJson(`${second.url}/health/ready`)).status, 200);
    const recorded = JSON.parse(readFileSync(owner, 'utf8'));
    assert.equal(recorded.pid, second.pid);
    assert.equal(recorded.url, second.url);
    const locked = await second.waitForLog('the lock line', (l) => l.message === 'database locked for this server');
    assert.equal(locked.database, ws.database);
    assert.equal(locked.lock_file, `${ws.database}.lock`);

    second.child.kill('SIGTERM');
    assert.deepEqual(await second.exited, { code: 0, signal: null });
    assert.equal(existsSync(owner), false, 'a graceful shutdown removes the owner file');
    const third = await start({ DATABASE_URL: ws.database });
    assert.equal((await getJson(`${third.url}/health/ready`)).status, 200);
  });

  it('when the port is taken, then the server exits non-zero naming the port before any recovery, and the ws.database is unchanged', async () => {
    // What a crash leaves: an operation still "running" (start-up recovery would interrupt it and sync).
    const store = openStore(ws.database);
    store.operations.insert({
      id: 'op-00000000-0000-4000-8000-000000000001', kind: 'stop', instanceId: 'i-0123456789abcdef0', clientToken: null,
      idempotencyKey: null, requestId: 'before-crash', actor: null, clientAddress: '127.0.0.1',
    });
    store.operations.markRunning('op-00000000-0000-4000-8000-000000000001', null);
    store.close();
    const before = readRows(ws.database, 'SELECT * FROM operations');

    const blocker: Server = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as { port: number }).port;
    try {
      const server = await spawn({ DATABASE_URL: ws.database, PORT: String(port) });
      const outcome = await startUp(server);

      assert.notEqual(outcome, 'listening');
      assert.equal(typeof outcome === 'object' && outcome.code !== 0 && outcome.code !== null, true, JSON.stringify(outcome));
      assert.deepEqual(readRows(ws.database, 'SELECT * FROM operations'), before, 'no operation interrupted, no sync recorded');
      assert.match(server.stderr(), new RegExp(`PORT: 127\\.0\\.0\\.1:${port} is already in use`));
      assert.equal(server.logs.some((l) => l.message === 'operations left unfinished by the previous process are interrupted'), false);
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });
});
