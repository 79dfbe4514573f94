/**
 * Resource limits at the HTTP edge: a per-token sliding-window rate limit on mutating requests,
 * helmet's security headers, and the Node HTTP server's timeouts for slow clients.
 */
import type { Server, ServerOptions } from 'node:http';
import type { RequestHandler } from 'express';
import helmet from 'helmet';
import type { HttpTimeouts } from '../auth/config.js';
import { principalOf, SAFE_METHODS } from './auth.js';
import { sendProblem } from './problems.js';

export interface RateLimitOptions {
  /** Mutating requests allowed per key per window; 0 = no limit. */
  limit: number;
  /** Window length (default one minute). */
  windowMs?: number;
  /** Clock (tests inject one). */
  now?: () => number;
}

/**
 * Sliding window log: each key (the token name; the client address when authentication is off) keeps the
 * times of its last `limit` mutating requests. A request when `limit` of them lie within the window is
 * answered 429 with Retry-After = whole seconds until the oldest leaves the window. Refused requests do
 * not count. Keys are bounded by the configured tokens (or loopback addresses when auth is off).
 */
export function rateLimitMutations(options: RateLimitOptions): RequestHandler {
  const windowMs = options.windowMs ?? 60_000;
  const now = options.now ?? Date.now;
  const logs = new Map<string, number[]>();
  if (options.limit <= 0) return (_req, _res, next) => next();

  return (req, res, next) => {
    if (SAFE_METHODS.has(req.method)) {
      next();
      return;
    }
    const key = principalOf(res)?.name ?? `address:${req.ip ?? 'unknown'}`;
    const t = now();
    const log = (logs.get(key) ?? []).filter((at) => at > t - windowMs);
    if (log.length >= options.limit) {
      logs.set(key, log);
      const oldest = log[0] ?? t;
      const retryAfter = Math.max(1, Math.ceil((oldest + windowMs - t) / 1000));
      sendProblem(req, res, {
        status: 429,
        slug: 'rate-limited',
        title: 'Too many requests',
        detail: `At most ${options.limit} changing requests per ${Math.round(windowMs / 1000)} s per token; retry in ${retryAfter} s`,
        headers: { 'Retry-After': String(retryAfter) },
      });
      return;
    }
    log.push(t);
    logs.set(key, log);
    if (logs.size > 10_000) {
      for (const [k, v] of logs) if (v.every((at) => at <= t - windowMs)) logs.delete(k);
    }
    next();
  };
}

/**
 * helmet's defaults, minus `upgrade-insecure-requests` (the service may be reached over plain HTTP on a
 * private network, where that directive would break the /docs page's own assets).
 */
export function securityHeaders(): RequestHandler {
  return helmet({
    contentSecurityPolicy: { directives: { upgradeInsecureRequests: null } },
  });
}

/**
 * Options for http.createServer: Node enforces headersTimeout and requestTimeout only when it sweeps its
 * connections, every connectionsCheckingInterval (30 s by default), so a slow client would be cut up to
 * 30 s late. Sweeping every half second (at most a tenth of the shorter timeout) keeps the cut within
 * about half a second of the configured time; a sweep only walks the open connections.
 */
export function httpServerOptions(timeouts: HttpTimeouts): ServerOptions {
  const shorter = Math.min(timeouts.headersTimeoutMs, timeouts.requestTimeoutMs);
  return {
    headersTimeout: timeouts.headersTimeoutMs,
    requestTimeout: timeouts.requestTimeoutMs,
    keepAliveTimeout: timeouts.keepAliveTimeoutMs,
    connectionsCheckingInterval: Math.max(50, Math.min(500, Math.floor(shorter / 10))),
  };
}

/**
 * Slow-client limits on the listening server. Node applies requestTimeout to RECEIVING the request only
 * (verified in test/security/limits.test.ts), so a synchronous start/stop that answers after minutes is not
 * cut; the socket inactivity timeout stays off for the same reason.
 */
export function applyServerTimeouts(server: Server, timeouts: HttpTimeouts): void {
  server.headersTimeout = timeouts.headersTimeoutMs;
  server.requestTimeout = timeouts.requestTimeoutMs;
  server.keepAliveTimeout = timeouts.keepAliveTimeoutMs;
  server.timeout = 0;
}
