/**
 * Request id (X-Request-Id honoured when sane, generated otherwise, echoed back) and one access-log line
 * per request. The id lives in res.locals and is handed explicitly to the domain, which passes it to the
 * runner, so every log line of a request carries it.
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { Logger } from '../logger.js';
import type { OpContext } from '../domain/context.js';

const SANE_REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;

export function requestId(res: Response): string {
  return (res.locals.requestId as string | undefined) ?? 'unknown';
}

export function opContext(res: Response): OpContext {
  return {
    requestId: requestId(res),
    // Set by app/http/auth.ts: the token's name, never the token.
    actor: (res.locals.principal as { name?: string } | undefined)?.name,
    // The audit trail records where the request came from.
    clientAddress: res.req.ip,
  };
}

export function requestContext(logger: Logger): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    const offered = req.get('x-request-id');
    const id = offered !== undefined && SANE_REQUEST_ID.test(offered) ? offered : randomUUID();
    res.locals.requestId = id;
    res.setHeader('X-Request-Id', id);
    const started = performance.now();
    res.on('finish', () => {
      logger.info('request', {
        request_id: id,
        method: req.method,
        path: req.originalUrl.split('?')[0],
        status: res.statusCode,
        duration_ms: Math.round(performance.now() - started),
        actor: (res.locals.principal as { name?: string } | undefined)?.name,
      });
    });
    next();
  };
}
