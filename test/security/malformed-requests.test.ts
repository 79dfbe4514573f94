/**
 * Requests a well-behaved client never sends: a malformed percent-encoding, a body whose
 * Content-Encoding does not decode, two Authorization headers. Each gets a 4xx problem+json, never a
 * 500, and changes nothing. Sent over a real socket, because supertest cannot send some of them.
 */
import assert from 'node:assert/strict';
import { request as httpRequest, type OutgoingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import type { Harness } from '../support/app-harness.js';
import { OPERATOR_TOKEN, VALID_CREATE, VIEWER_TOKEN, bearer, securedHarness } from './support.js';

interface Answer {
  status: number;
  contentType: string;
  body: any;
}

function send(server: Server, method: string, path: string, headers: OutgoingHttpHeaders, body?: Buffer): Promise<Answer> {
  const { port } = server.address() as AddressInfo;
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: unknown = text;
        try {
          parsed = JSON.parse(text);
        } catch {
          // left as text: the assertion shows it
        }
        resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), body: parsed });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

function assertProblem(answer: Answer, status: number, slug: string): void {
  assert.equal(answer.status, status, JSON.stringify(answer.body));
  assert.match(answer.contentType, /^application\/problem\+json/);
  assert.equal(answer.body.status, status);
  assert.equal(answer.body.type, `urn:ec2-creator:problem:${slug}`);
}

describe('malformed requests', () => {
  let h: Harness;
  let server: Server;

  beforeEach(async () => {
    h = securedHarness();
    server = await new Promise<Server>((resolve) => {
      const listening = h.app.listen(0, '127.0.0.1', () => resolve(listening));
    });
  });
  afterEach(async () => {
    await new Promise((resolve) => server.close(resolve));
    h.close();
  });

  function assertNothingChanged(): void {
    assert.deepEqual(h.runs, [], 'no script ran');
    assert.equal(h.rowCount(), 0, 'nothing recorded');
    assert.equal(h.store.operations.list({ limit: 5 }).length, 0, 'no operation recorded');
  }

  it('when the path holds a malformed percent-encoding, then 400 problem+json naming it, not 500', async () => {
    for (const path of ['/instances/%zz', '/instances/i-%E0%A4%A/stop', '/operations/%']) {
      const answer = await send(server, path.endsWith('stop') ? 'POST' : 'GET', path, { Authorization: bearer(OPERATOR_TOKEN) });
      assertProblem(answer, 400, 'malformed-url');
      assert.match(answer.body.detail, /percent-encoding/);
    }
    assertNothingChanged();
  });

  for (const [encoding, valid] of [['gzip', gzipSync], ['br', brotliCompressSync]] as const) {
    it(`when a ${encoding} body does not decode, then 400 problem+json and nothing is created; a valid ${encoding} body is read`, async () => {
      const headers = { Authorization: bearer(OPERATOR_TOKEN), 'Content-Type': 'application/json', 'Content-Encoding': encoding };

      const garbage = await send(server, 'POST', '/instances', headers, Buffer.from(JSON.stringify(VALID_CREATE)));

      assertProblem(garbage, 400, 'malformed-body');
      assert.match(garbage.body.detail, /Content-Encoding/);
      assertNothingChanged();
      // The same body encoded properly reaches validation (an unknown field makes it stop there).
      const decodable = await send(server, 'POST', '/instances', headers, valid(Buffer.from(JSON.stringify({ ...VALID_CREATE, extra: 1 }))));
      assertProblem(decodable, 400, 'validation');
      assertNothingChanged();
    });
  }

  it('when a request carries two Authorization headers, then 400 problem+json and nothing runs, whichever comes first', async () => {
    for (const pair of [[bearer(VIEWER_TOKEN), bearer(OPERATOR_TOKEN)], [bearer(OPERATOR_TOKEN), bearer(VIEWER_TOKEN)]]) {
      const answer = await send(server, 'POST', '/instances/sync', { Authorization: pair });

      assertProblem(answer, 400, 'ambiguous-credentials');
    }
    assertNothingChanged();
    const one = await send(server, 'GET', '/instances', { Authorization: bearer(VIEWER_TOKEN) });
    assert.equal(one.status, 200, 'one header is still served');
  });
});
