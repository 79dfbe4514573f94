/**
 * Requests Node's HTTP parser refuses before Express sees them (a raw non-ASCII byte in the request
 * line, a header with a forbidden character) still get a problem+json body from the real server, not
 * Node's bare status line.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startServerProcess, type ServerProcess } from '../support/server-process.js';

/** Sends raw bytes and returns everything the server wrote before it closed the connection. */
function sendRaw(url: string, bytes: Buffer): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
    socket.write(bytes);
  });
}

function problemOf(answer: string): { status: number; contentType: string; body: any } {
  const [head = '', body = ''] = answer.split('\r\n\r\n');
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]);
  const contentType = /^content-type: *(.*)$/im.exec(head)?.[1] ?? '';
  return { status, contentType, body: JSON.parse(body) };
}

describe('requests the HTTP parser refuses', function () {
  let dir: string;
  let server: ServerProcess;

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'ec2-creator-parser-'));
    server = await startServerProcess({ DATABASE_URL: path.join(dir, 'instances.db') });
  });
  after(async () => {
    server.child.kill('SIGTERM');
    await server.exited;
    rmSync(dir, { recursive: true, force: true });
  });

  it('when the query holds a raw non-ASCII character, then 400 problem+json, not a bare 400', async () => {
    const answer = await sendRaw(server.url, Buffer.concat([
      Buffer.from('GET /instances?instance_id=i-0abc'), Buffer.from('…', 'utf8'), Buffer.from(' HTTP/1.1\r\nHost: x\r\n\r\n'),
    ]));

    const problem = problemOf(answer);
    assert.equal(problem.status, 400, answer);
    assert.match(problem.contentType, /^application\/problem\+json/);
    assert.equal(problem.body.type, 'urn:ec2-creator:problem:malformed-request');
    assert.equal(problem.body.status, 400);
    assert.ok(server.logs.some((line) => line.message === 'request refused by the HTTP parser'));
  });

  it('when a header value holds a forbidden control character, then 400 problem+json', async () => {
    const answer = await sendRaw(server.url, Buffer.from('GET /health HTTP/1.1\r\nHost: x\r\nX-Odd: a\x01b\r\n\r\n'));

    const problem = problemOf(answer);
    assert.equal(problem.status, 400, answer);
    assert.match(problem.contentType, /^application\/problem\+json/);
  });

  it('when a well-formed request follows, then the server still answers it', async () => {
    const response = await fetch(`${server.url}/health`);
    assert.equal(response.status, 200);
  });
});
