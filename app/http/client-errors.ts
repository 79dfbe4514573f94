/**
 * Requests Node's HTTP parser refuses never reach Express: a raw non-ASCII byte in the request line, a
 * malformed header, headers too large, a request that took too long to arrive. Node answers those with a
 * bare status line and no body; here they get a problem+json body like every other refusal.
 */
import { STATUS_CODES, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from '../logger.js';
import { PROBLEM_BASE } from './problems.js';

function statusFor(code: string | undefined): { status: number; slug: string; title: string; detail: string } {
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      return { status: 431, slug: 'headers-too-large', title: 'Request headers too large', detail: 'The request headers are too large' };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { status: 408, slug: 'request-timeout', title: 'Request timeout', detail: 'The request did not arrive in time' };
    default:
      return {
        status: 400, slug: 'malformed-request', title: 'Malformed request',
        detail: 'The request is not valid HTTP (a request line or header with characters HTTP does not allow?)',
      };
  }
}

export function answerClientErrors(server: Server, logger: Logger): void {
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
    // A reset connection, or one whose response has already begun, cannot be answered (as in Node's own
    // handler: a request still being read, say a body timing out, has a response not yet started).
    const inFlight = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (error.code === 'ECONNRESET' || !socket.writable || inFlight?.headersSent) {
      socket.destroy();
      return;
    }
    const { status, slug, title, detail } = statusFor(error.code);
    logger.info('request refused by the HTTP parser', { status, code: error.code });
    const body = JSON.stringify({ type: `${PROBLEM_BASE}${slug}`, title, status, detail });
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n` +
        'Content-Type: application/problem+json\r\n' +
        `Content-Length: ${Buffer.byteLength(body)}\r\n` +
        'Connection: close\r\n\r\n' +
        body,
    );
  });
}
