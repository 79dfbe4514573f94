/**
 * Authentication and function-level authorization.
 *
 * Every route needs `Authorization: Bearer <token>` except /health (and /health/*) and, when the docs are
 * public (PUBLIC_DOCS=true; off by default), GET /openapi.json and /docs. Missing token → 401 with
 * `WWW-Authenticate: Bearer realm="ec2-creator"`; a token that does not match → 401 with
 * `error="invalid_token"`; a viewer on any method but GET/HEAD/OPTIONS → 403. The caller's name and role
 * go to res.locals.principal; the token itself is never stored, logged or echoed.
 */
import type { Request, RequestHandler, Response } from 'express';
import type { Logger } from '../logger.js';
import type { AuthSetup } from '../auth/setup.js';
import type { Principal } from '../auth/tokens.js';
import type { Sessions } from '../auth/sessions.js';
import { createTokenVerifier } from '../auth/verify.js';
import { requestId } from './context.js';
import { sendProblem } from './problems.js';

export type { AuthSetup } from '../auth/setup.js';

export const REALM = 'ec2-creator';
export const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS']);

const HEALTH = /^\/health(?:\/[A-Za-z0-9_-]+)?\/?$/;
const DOCS = /^\/(?:openapi\.json|docs(?:\/.*)?)$/;
const METRICS = /^\/metrics\/?$/;
const SESSION_PATH = /^\/session\/?$/;
/** The dashboard's page and assets: no data in them, so no token (the API behind them needs one). */
const DASHBOARD = /^\/(?:ui\/[A-Za-z0-9._-]+)?$/;
/** RFC 6750: `Bearer` SP b64token. */
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;

/** 401 with the bearer challenge; `invalid` when credentials were offered and refused (RFC 6750). */
export function sendUnauthorized(req: Request, res: Response, detail: string, invalid: boolean): void {
  sendProblem(req, res, {
    status: 401, slug: 'unauthorized', title: 'Unauthorized', detail,
    headers: { 'WWW-Authenticate': invalid ? `Bearer realm="${REALM}", error="invalid_token"` : `Bearer realm="${REALM}"` },
  });
}

export function principalOf(res: Response): Principal | undefined {
  return res.locals.principal as Principal | undefined;
}

function authorizationHeaderCount(req: Request): number {
  let count = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    if (req.rawHeaders[i]?.toLowerCase() === 'authorization') count += 1;
  }
  return count;
}

export function isPublicPath(req: Request, publicDocs: boolean, metricsPublic = false): boolean {
  if (HEALTH.test(req.path)) return true;
  const reading = req.method === 'GET' || req.method === 'HEAD';
  return reading && (DASHBOARD.test(req.path) || (publicDocs && DOCS.test(req.path)) || (metricsPublic && METRICS.test(req.path)));
}

/** The cookie a dashboard session rides in (HttpOnly, SameSite=Strict). */
export const SESSION_COOKIE = 'ec2c_session';
/** The header the dashboard sets on every changing request; a cross-site form or image cannot. */
export const CSRF_HEADER = 'X-Ec2-Creator-Csrf';

export function cookieValue(req: Request, name: string): string | undefined {
  for (const part of (req.get('cookie') ?? '').split(';')) {
    const at = part.indexOf('=');
    if (at > 0 && part.slice(0, at).trim() === name) return part.slice(at + 1).trim();
  }
  return undefined;
}

/**
 * Why a changing request authenticated by the session cookie may have been forged by another site, if it
 * may: it lacks the dashboard's header, or its Origin is not this server.
 */
function forgeryRisk(req: Request): string | undefined {
  if (req.get(CSRF_HEADER) === undefined) return `a changing request signed in by cookie must carry the ${CSRF_HEADER} header`;
  const origin = req.get('origin');
  if (origin === undefined) return 'a changing request signed in by cookie must carry an Origin header';
  let host: string;
  try {
    host = new URL(origin).host;
  } catch {
    return `the Origin ${JSON.stringify(origin)} is not a URL`;
  }
  if (host !== req.get('host')) return `the Origin ${origin} is not this server`;
  return undefined;
}

export function authenticate(
  setup: AuthSetup,
  options: { logger: Logger; publicDocs?: boolean; metricsPublic?: boolean; sessions?: Sessions | undefined },
): RequestHandler {
  const publicDocs = options.publicDocs ?? false;
  const metricsPublic = options.metricsPublic ?? false;
  if (setup.mode === 'disabled') {
    return (_req, _res, next) => next();
  }
  const verify = createTokenVerifier(setup.tokens);

  const refuse = (req: Request, res: Response, reason: 'missing' | 'malformed' | 'invalid'): void => {
    options.logger.info('authentication failed', {
      request_id: requestId(res), reason, method: req.method, path: req.path, client_address: req.ip,
    });
    sendUnauthorized(req, res, reason === 'missing' ? 'Send an API token as Authorization: Bearer <token>' : 'The bearer token is not valid', reason !== 'missing');
  };

  /** The browser's session cookie instead of a bearer token: valid, and not a forged changing request. */
  const bySession = async (req: Request, res: Response, id: string): Promise<boolean> => {
    const principal = await options.sessions?.resolve(id);
    if (!principal) {
      res.clearCookie(SESSION_COOKIE, { path: '/' });
      sendUnauthorized(req, res, 'The session has expired or was signed out; sign in again', true);
      return false;
    }
    const risk = SAFE_METHODS.has(req.method) ? undefined : forgeryRisk(req);
    if (risk !== undefined) {
      options.logger.warn('changing request by session cookie refused as a possible forgery', {
        request_id: requestId(res), method: req.method, path: req.path, origin: req.get('origin'), reason: risk,
      });
      sendProblem(req, res, { status: 403, slug: 'csrf', title: 'Possible cross-site request forgery', detail: risk });
      return false;
    }
    res.locals.principal = { name: principal.name, role: principal.role };
    res.locals.session = { id, expiresAt: principal.expiresAt };
    return true;
  };

  return async (req, res, next) => {
    if (isPublicPath(req, publicDocs, metricsPublic) || (req.method === 'POST' && SESSION_PATH.test(req.path))) {
      next();
      return;
    }
    const session = cookieValue(req, SESSION_COOKIE);
    if (req.get('authorization') === undefined && session !== undefined && options.sessions) {
      if (await bySession(req, res, session)) next();
      return;
    }
    // Node keeps only the first of several Authorization headers: a viewer's and an operator's token
    // together must not be served as whichever came first.
    if (authorizationHeaderCount(req) > 1) {
      sendProblem(req, res, {
        status: 400, slug: 'ambiguous-credentials', title: 'Ambiguous credentials',
        detail: 'Send exactly one Authorization header',
      });
      return;
    }
    const header = req.get('authorization');
    // No header, or another scheme (Basic, …): no bearer token was offered.
    if (header === undefined || !/^bearer(?:\s|$)/i.test(header.trimStart())) {
      refuse(req, res, 'missing');
      return;
    }
    const match = BEARER.exec(header.trim());
    if (!match?.[1]) {
      refuse(req, res, 'malformed');
      return;
    }
    const principal = verify(match[1]);
    if (!principal) {
      refuse(req, res, 'invalid');
      return;
    }
    res.locals.principal = principal;
    next();
  };
}

/** Viewers read; only operators may call anything that is not GET, HEAD or OPTIONS. */
export function authorize(): RequestHandler {
  return (req, res, next) => {
    const principal = principalOf(res);
    // Signing out is every role's.
    if (principal && principal.role !== 'operator' && !SAFE_METHODS.has(req.method) && !SESSION_PATH.test(req.path)) {
      sendProblem(req, res, {
        status: 403,
        slug: 'forbidden',
        title: 'Forbidden',
        detail: `Token "${principal.name}" has the ${principal.role} role, which may only read; ${req.method} needs an operator token`,
      });
      return;
    }
    next();
  };
}
