import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * An HTTP proxy in front of moto that answers the first `throttle` requests the way EC2 does when
 * it throttles (503, RequestLimitExceeded), so the real AWS CLI's own retries can be observed.
 */
export interface ThrottlingProxy {
  endpoint: string;
  requests: number;
  throttled: number;
  close(): Promise<void>;
}

const THROTTLED_BODY =
  '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>RequestLimitExceeded</Code>' +
  '<Message>Request limit exceeded.</Message></Error></Errors><RequestID>fault-proxy</RequestID></Response>';

export async function startThrottlingProxy(upstream: string, throttle: number): Promise<ThrottlingProxy> {
  const target = new URL(upstream);
  const state = { requests: 0, throttled: 0 };
  const server: Server = createServer((incoming, outgoing) => {
    state.requests += 1;
    if (state.throttled < throttle) {
      state.throttled += 1;
      incoming.resume();
      outgoing.writeHead(503, { 'content-type': 'text/xml' }).end(THROTTLED_BODY);
      return;
    }
    const forwarded = request(
      { hostname: target.hostname, port: target.port, method: incoming.method, path: incoming.url, headers: incoming.headers },
      (answer) => {
        outgoing.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(outgoing);
      },
    );
    forwarded.on('error', () => outgoing.writeHead(502).end());
    incoming.pipe(forwarded);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    get requests() {
      return state.requests;
    },
    get throttled() {
      return state.throttled;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
