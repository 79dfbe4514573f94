/** GET /metrics (Prometheus text format) and the timing of every answered request under its route template. */
import { Router, type Request, type RequestHandler } from 'express';
import type { Metrics } from '../metrics.js';
import { methodNotAllowed } from './problems.js';

/** The route template that answered (`/instances/:id`), never the raw path: ids would explode the label. */
function routeOf(req: Request): string {
  const route = (req as Request & { route?: { path?: unknown } }).route;
  return typeof route?.path === 'string' ? `${req.baseUrl}${route.path}` : 'unmatched';
}

export function requestMetrics(metrics: Metrics): RequestHandler {
  return (req, res, next) => {
    const started = process.hrtime.bigint();
    let observed = false;
    const observe = () => {
      if (observed) return;
      observed = true;
      metrics.observeRequest(req.method, routeOf(req), res.statusCode, Number(process.hrtime.bigint() - started) / 1e9);
    };
    res.once('finish', observe);
    res.once('close', observe); // a client that left (or an event stream that ended) counts too
    next();
  };
}

export function metricsRouter(metrics: Metrics): Router {
  const router = Router();
  router
    .route('/metrics')
    .get(async (_req, res) => {
      const text = await metrics.registry.metrics();
      res.type(metrics.registry.contentType).send(text);
    })
    .all(methodNotAllowed('GET'));
  return router;
}
