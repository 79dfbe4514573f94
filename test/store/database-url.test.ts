/**
 * DATABASE_URL at the edge: a `file:` URL with a query is refused (never a file literally named
 * `x.db?mode=ro`), and a database that cannot be opened stops start-up with a message naming the variable
 * and the path. The real server process, since the message and the exit code are what an operator sees.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfig } from '../../app/config.js';
import { spawnServerProcess, type ServerProcess } from '../support/server-process.js';

describe('DATABASE_URL', function () {
  this.timeout(60_000);
  let dir: string;
  let server: ServerProcess | undefined;

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'ec2-creator-dburl-'));
  });
  afterEach(() => {
    server?.child.kill('SIGKILL');
    server = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  /** The message loadConfig refuses `url` with; it must be a ConfigError naming DATABASE_URL. */
  function refusalOf(url: string): string {
    try {
      loadConfig({ DATABASE_URL: url }, dir);
    } catch (error) {
      assert.ok(error instanceof ConfigError, String(error));
      assert.equal(error.variable, 'DATABASE_URL');
      assert.match(error.message, /^DATABASE_URL: /);
      return error.message;
    }
    assert.fail(`${url} was accepted`);
  }

  it('when a file: or sqlite: URL carries a query or a fragment, then it is refused naming DATABASE_URL and the query', () => {
    for (const url of ['file:x.db?mode=ro', 'file:///srv/x.db?cache=shared', 'sqlite:///srv/x.db?mode=rwc', 'file:x.db#main']) {
      const message = refusalOf(url);
      assert.match(message, /query|fragment/);
      assert.ok(message.includes(url), message);
    }
  });

  it('when DATABASE_URL names a store this service does not have (mysql://, an upper-case SQLITE:), then it is refused naming DATABASE_URL, never taken as a relative path', () => {
    for (const url of ['mysql://localhost/ec2', 'SQLITE:x.db', 'redis://localhost/0']) {
      const message = refusalOf(url);
      assert.ok(message.includes(JSON.stringify(url)), message);
      assert.match(message, /postgres:\/\/… for PostgreSQL/);
    }
    assert.deepEqual(readdirSync(dir), []);
  });

  it('when DATABASE_URL is a postgres:// or postgresql:// URL, then PostgreSQL is the store and no SQLite path is made of it; one without a host or database is refused', () => {
    for (const url of ['postgres://app:s3cret@db.internal:5432/ec2', 'postgresql://localhost/ec2']) {
      const config = loadConfig({ DATABASE_URL: url }, dir);
      assert.equal(config.postgresUrl, url);
      assert.equal(config.databasePath, null);
    }
    assert.match(refusalOf('postgres://db.internal:5432/'), /needs a database name/);
    assert.match(refusalOf('postgres:///ec2'), /needs a host/);
    assert.deepEqual(readdirSync(dir), []);
  });

  it('when a file name really starts with a word and a colon, then ./ or file: reaches it', () => {
    assert.equal(loadConfig({ DATABASE_URL: './pg:copy.db' }, dir).databasePath, path.join(dir, 'pg:copy.db'));
    assert.equal(loadConfig({ DATABASE_URL: 'file:pg:copy.db' }, dir).databasePath, path.join(dir, 'pg:copy.db'));
    assert.equal(loadConfig({ DATABASE_URL: 'sqlite:///srv/x.db' }, dir).databasePath, '/srv/x.db');
  });

  it('when the server is started with a file: URL with a query, then it exits non-zero naming DATABASE_URL and creates no file', async () => {
    const url = `file:${dir}/x.db?mode=ro`;
    server = await spawnServerProcess({ DATABASE_URL: url });
    const s = server;
    const exit = await Promise.race([
      s.exited,
      s.waitForLog('listening', (l) => l.message === 'listening').then(() => ({ code: 'listening' }), () => s.exited),
    ]);

    assert.equal(exit.code, 1);
    assert.match(server.stderr(), /^ec2-creator: invalid configuration: DATABASE_URL: /m);
    assert.ok(server.stderr().includes(url), server.stderr());
    assert.deepEqual(readdirSync(dir), [], 'no file named x.db?mode=ro (nor x.db)');
  });

  for (const [what, prepare] of [
    ['a file that is not a SQLite database', (file: string) => writeFileSync(file, 'this is not a database, it is a text file that is long enough\n'.repeat(20))],
    ['a directory', (file: string) => mkdirSync(file)],
    ['under a regular file', (file: string) => writeFileSync(path.dirname(file), 'a file where a folder should be')],
  ] as const) {
    it(`when DATABASE_URL names ${what}, then start-up stops with a message naming DATABASE_URL and the path`, async () => {
      const file = what === 'under a regular file' ? path.join(dir, 'blocker', 'instances.db') : path.join(dir, 'instances.db');
      prepare(file);
      server = await spawnServerProcess({ DATABASE_URL: file });

      const exit = await server.exited;

      assert.equal(exit.code, 1);
      assert.match(server.stderr(), /^ec2-creator: invalid configuration: DATABASE_URL: /m);
      assert.ok(server.stderr().includes(file), `names ${file}: ${server.stderr()}`);
      assert.equal(server.logs.some((l) => l.message === 'listening'), false);
    });
  }
});
