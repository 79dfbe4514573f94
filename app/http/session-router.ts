/**
 * The dashboard's sign-in: POST /session exchanges an API token for an HttpOnly, SameSite=Strict session
 * cookie (Secure over HTTPS); GET /session says who is signed in; DELETE /session signs out. Bearer-token
 * clients never need any of it.
 */
import { Router, type Response } from 'express';
import type { Sessions } from '../auth/sessions.js';
import { ConflictError } from '../domain/errors.js';
import type { Logger } from '../logger.js';
import type { Session } from '../schemas/session.js';
import { validateCreateSessionRequest } from '../schemas/validators.js';
import { cookieValue, principalOf, SESSION_COOKIE, sendUnauthorized } from './auth.js';
import { requestId } from './context.js';
import { methodNotAllowed } from './problems.js';
import { check, requireJsonBody } from './validate.js';

export function sessionRouter(options: { sessions: Sessions | undefined; ttlMs: number; logger: Logger }): Router {
  const { sessions, logger } = options;
  const router = Router();
  const describe = (res: Response): Session => {
    const principal = principalOf(res);
    const session = res.locals.session as { expiresAt: string } | undefined;
    if (!principal) return { name: null, role: 'operator', via: 'none', expires_at: null };
    return { name: principal.name, role: principal.role, via: session ? 'session' : 'token', expires_at: session?.expiresAt ?? null };
  };
  router
    .route('/session')
    .post(requireJsonBody(), async (req, res) => {
      const { token } = check(validateCreateSessionRequest, req.body, 'request body');
      if (!sessions) throw new ConflictError('Authentication is disabled on this server: there is nothing to sign in to');
      const opened = await sessions.open(token);
      if (!opened) {
        logger.info('sign-in failed', { request_id: requestId(res), client_address: req.ip });
        sendUnauthorized(req, res, 'The token is not valid', true);
        return;
      }
      res.cookie(SESSION_COOKIE, opened.id, {
        httpOnly: true, sameSite: 'strict', secure: req.secure, path: '/', maxAge: options.ttlMs,
      });
      logger.info('signed in', { request_id: requestId(res), actor: opened.principal.name, role: opened.principal.role, expires_at: opened.expiresAt });
      const body: Session = { name: opened.principal.name, role: opened.principal.role, via: 'session', expires_at: opened.expiresAt };
      res.status(201).json(body);
    })
    .get((_req, res) => {
      res.json(describe(res));
    })
    .delete(async (req, res) => {
      const id = cookieValue(req, SESSION_COOKIE);
      if (id !== undefined && sessions) await sessions.close(id);
      res.clearCookie(SESSION_COOKIE, { path: '/', httpOnly: true, sameSite: 'strict', secure: req.secure });
      logger.info('signed out', { request_id: requestId(res), actor: principalOf(res)?.name });
      res.status(204).end();
    })
    .all(methodNotAllowed('GET, POST, DELETE'));
  return router;
}
