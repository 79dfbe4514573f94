/**
 * The web dashboard: static files (app/web) served with no build step and no CDN, under a strict
 * Content-Security-Policy (scripts and styles from this server only, none inline). The page and its
 * assets need no token (they hold no data); everything it shows comes from the API, signed in by a
 * session cookie (POST /session).
 */
import path from 'node:path';
import express, { Router, type RequestHandler } from 'express';
import { fileURLToPath } from 'node:url';
import { methodNotAllowed } from './problems.js';

export const DASHBOARD_CSP = [
  "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:", "connect-src 'self'",
  "form-action 'self'", "frame-ancestors 'none'", "base-uri 'none'",
].join('; ');

const strictPolicy: RequestHandler = (_req, res, next) => {
  res.setHeader('Content-Security-Policy', DASHBOARD_CSP);
  next();
};

/** app/web beside app/http: the sources under tsx, dist/app/web (copied by `npm run build`) when built. */
const WEB_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'web');

export function dashboardRouter(webDir = WEB_DIR): Router {
  const router = Router();
  router.use('/ui', strictPolicy, express.static(webDir, { index: false, fallthrough: false, maxAge: 0 }));
  router
    .route('/')
    .get(strictPolicy, (_req, res) => {
      res.sendFile(path.join(webDir, 'index.html'), { headers: { 'Cache-Control': 'no-cache' } });
    })
    .all(methodNotAllowed('GET'));
  return router;
}
