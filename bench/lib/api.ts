/** The service's API as the benchmarks call it: with a bearer token, every answer checked. */
import { performance } from 'node:perf_hooks';

const REQUEST_LIMIT_MS = 180_000;

export interface Api {
  /** Sends a request and returns its JSON body (undefined for 204); any other status than `expect` throws. */
  call<T = unknown>(method: string, pathAndQuery: string, options?: { body?: unknown; expect?: number; headers?: Record<string, string> }): Promise<T>;
  /** The same, also timed from sending to the end of the body, in ms. */
  timed<T = unknown>(method: string, pathAndQuery: string, options?: { body?: unknown; expect?: number }): Promise<{ body: T; ms: number }>;
}

export function apiClient(url: string, token: string): Api {
  async function timed<T>(
    method: string,
    pathAndQuery: string,
    options: { body?: unknown; expect?: number; headers?: Record<string, string> } = {},
  ): Promise<{ body: T; ms: number }> {
    const headers: Record<string, string> = { authorization: `Bearer ${token}`, ...options.headers };
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    const started = performance.now();
    const response = await fetch(`${url}${pathAndQuery}`, {
      method,
      headers,
      // Far beyond any figure: a request that hangs fails its part of the run instead of the whole run.
      signal: AbortSignal.timeout(REQUEST_LIMIT_MS),
      ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
    });
    const text = await response.text();
    const ms = performance.now() - started;
    const expect = options.expect ?? (method === 'POST' && pathAndQuery === '/instances' ? 201 : 200);
    if (response.status !== expect) {
      throw new Error(`${method} ${pathAndQuery} answered ${response.status} (expected ${expect}): ${text.slice(0, 500)}`);
    }
    return { body: (text ? JSON.parse(text) : undefined) as T, ms };
  }
  return {
    timed,
    async call(method, pathAndQuery, options) {
      return (await timed(method, pathAndQuery, options)).body as never;
    },
  };
}
