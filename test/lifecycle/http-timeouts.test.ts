/**
 * HTTP_HEADERS_TIMEOUT_MS and HTTP_REQUEST_TIMEOUT_MS on the real server: a slow client gets 408 soon after
 * the configured time, not whenever Node's connection check next runs (every 30 s unless the server sets
 * connectionsCheckingInterval). Raw sockets send partial requests; the test waits for the answer and the
 * close, and asserts they came no earlier than the configured timeout.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startServerProcess, type ServerProcess } from '../support/server-process.js';

const HEADERS_TIMEOUT_MS = 1_000;
const REQUEST_TIMEOUT_MS = 2_000;

/** Sends `partial` and resolves with what the server answered before it closed, and when it closed. */
function sendPartial(url: string, partial: string): Promise<{ answer: string; afterMs: number }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    let sentAt = 0;
    let answer = '';
    const socket = connect(Number(port), hostname, () => {
      sentAt = performance.now();
      socket.write(partial);
    });
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      answer += chunk;
    });
    socket.on('error', reject);
    socket.on('close', () => resolve({ answer, afterMs: performance.now() - sentAt }));
  });
}

describe('HTTP timeouts for slow clients', function () {
  // Far above the configured timeouts, far below Node's default 30 s check: the old behaviour fails here.
  // A server per test, so no test runs past the 30 s mark of its server's first check either.
  this.timeout(15_000);
  let dir: string;
  let server: ServerProcess;

  beforeEach(async function () {
    this.timeout(60_000);
    dir = mkdtempSync(path.join(tmpdir(), 'ec2-creator-http-timeouts-'));
    server = await startServerProcess({
      DATABASE_URL: path.join(dir, 'instances.db'),
      HTTP_HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS),
      HTTP_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
    });
  });
  afterEach(async function () {
    this.timeout(60_000);
    server.child.kill('SIGTERM');
    await server.exited;
    rmSync(dir, { recursive: true, force: true });
  });

  it('when a client sends its headers too slowly, then the server answers 408 and closes the connection once HTTP_HEADERS_TIMEOUT_MS has passed', async () => {
    const { answer, afterMs } = await sendPartial(server.url, 'GET /health HTTP/1.1\r\nHost: x\r\n');

    assert.match(answer, /^HTTP\/1\.1 408 /);
    assert.match(answer, /content-type: application\/problem\+json/i, 'the 408 is a problem document too');
    assert.ok(afterMs >= HEADERS_TIMEOUT_MS, `answered after ${afterMs} ms, before the timeout`);
    assert.equal((await fetch(`${server.url}/health`)).status, 200, 'the server goes on serving others');
  });

  it('when a client sends its body too slowly, then the server answers 408 and closes the connection once HTTP_REQUEST_TIMEOUT_MS has passed', async () => {
    const { answer, afterMs } = await sendPartial(
      server.url,
      'POST /instances HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"name":',
    );

    assert.match(answer, /^HTTP\/1\.1 408 /);
    assert.match(answer, /content-type: application\/problem\+json/i, 'the 408 is a problem document too');
    assert.ok(afterMs >= REQUEST_TIMEOUT_MS, `answered after ${afterMs} ms, before the timeout`);
    assert.equal(server.logs.some((l) => l.message === 'script run'), false, 'the cut request ran nothing');
  });
});
