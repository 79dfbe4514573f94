import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freeLoopbackPort } from '../../scripts/lib/ports.js';
import {
  builtRepo, ensureBuilt, exitOf, health, killProcessesWithEnvironment, processesWithEnvironment, watchOutput, type WatchedOutput,
} from '../support/ops-manager.js';

/**
 * `npm start` as Docker (CMD ["npm","start"]), a supervisor or a Jenkins abort runs it: the signal goes to
 * the npm process only, and must still reach the server and end in its graceful shutdown.
 */
describe('npm start', function () {
  this.timeout(120_000);
  let dir: string;
  let marker: string;
  let npm: ChildProcess | undefined;

  before(async function () {
    this.timeout(300_000);
    await ensureBuilt();
  });

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'ec2-creator-npm-start-'));
    // Every process npm starts inherits this, so the test finds (and cleans up) orphans too.
    marker = `EC2_CREATOR_TEST_RUN=npm-start-${randomBytes(8).toString('hex')}`;
  });

  afterEach(() => {
    if (npm && npm.exitCode === null && npm.signalCode === null) npm.kill('SIGKILL');
    npm = undefined;
    killProcessesWithEnvironment(marker);
    rmSync(dir, { recursive: true, force: true });
  });

  async function startWithNpm(options: { ownGroup?: boolean } = {}): Promise<{ child: ChildProcess; output: WatchedOutput; baseUrl: string }> {
    const port = await freeLoopbackPort();
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PORT: String(port),
      HOST: '127.0.0.1',
      DATABASE_URL: path.join(dir, 'instances.db'),
      LOG_LEVEL: 'info',
      [marker.split('=')[0]!]: marker.slice(marker.indexOf('=') + 1),
    };
    // No tokens configured: the server generates one next to the temp database.
    for (const name of ['API_TOKENS', 'API_TOKENS_FILE', 'AUTH_DISABLED']) delete env[name];
    const child = spawn('npm', ['start'], { cwd: builtRepo, env, stdio: ['ignore', 'pipe', 'pipe'], detached: options.ownGroup ?? false });
    npm = child;
    const output = watchOutput(child);
    await output.waitFor(/"message":"listening"/);
    const baseUrl = `http://127.0.0.1:${port}`;
    assert.equal((await health(baseUrl))?.status, 200, output.text());
    const page = await fetch(`${baseUrl}/`);
    assert.equal(page.status, 200, 'the built server serves the dashboard');
    assert.match(await page.text(), /<title>ec2-creator<\/title>/);
    return { child, output, baseUrl };
  }

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`when the npm process gets ${signal}, then the server shuts down gracefully, npm exits 0 and no server is left`, async () => {
      const { child, output, baseUrl } = await startWithNpm();
      assert.ok(child.pid !== undefined);
      assert.ok(processesWithEnvironment(marker).length >= 2, 'npm and the server both run');

      process.kill(child.pid, signal);
      const exit = await exitOf(child);

      assert.deepEqual(exit, { code: 0, signal: null }, output.text());
      assert.deepEqual(processesWithEnvironment(marker), [], 'no process npm started is left');
      assert.equal(await health(baseUrl), undefined, 'nothing answers on the port any more');
      await output.closed;
      assert.match(output.text(), /"message":"shutting down"/);
      assert.match(output.text(), /"message":"shut down"/);
    });
  }

  it('when Ctrl-C reaches the whole group (npm and the server both get SIGINT), then the server still shuts down gracefully and npm exits 0', async () => {
    const { child, output } = await startWithNpm({ ownGroup: true });
    assert.ok(child.pid !== undefined);

    // What a terminal does on Ctrl-C: SIGINT to every process of the foreground group. npm forwards
    // its own to the server as well, so the server sees SIGINT twice.
    process.kill(-child.pid, 'SIGINT');
    const exit = await exitOf(child);

    assert.deepEqual(exit, { code: 0, signal: null }, output.text());
    assert.deepEqual(processesWithEnvironment(marker), [], 'no process npm started is left');
    await output.closed;
    assert.match(output.text(), /"message":"shut down"/);
  });
});
