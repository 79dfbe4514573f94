/**
 * Security, applied to the whole document in one pass: the bearer scheme, required everywhere but
 * /health*, and the 401/403/429 answers the middleware in app/http/auth.ts and app/http/limits.ts gives
 * on every operation, so the documented responses match what really happens on any path.
 */
import { problem, type Doc } from './shared.js';

const MUTATING = new Set(['post', 'put', 'patch', 'delete']);
const METHODS = new Set(['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace']);

export const securitySchemes: Doc = {
  bearerAuth: {
    type: 'http',
    scheme: 'bearer',
    description:
      'An API token from API_TOKENS / API_TOKENS_FILE (or the generated data/api-token). Role viewer may only ' +
      'read (GET); role operator may do everything.',
  },
};

/**
 * Any request may carry a body, and the JSON body parser runs before routing: a malformed, oversized or
 * oddly encoded body is refused on every route (found by the fuzz tests), so every operation documents it.
 */
function addRequestProblems(responses: Doc): void {
  responses['400'] ??= problem('Malformed request (invalid JSON body, bad parameters)');
  responses['413'] ??= problem('Request body larger than 16 kB');
  responses['415'] ??= problem('Unsupported request body media type or charset');
}

export function applySecurity(paths: Doc): void {
  for (const [route, item] of Object.entries<Doc>(paths)) {
    for (const [method, operation] of Object.entries<Doc>(item)) {
      if (!METHODS.has(method)) continue;
      const responses: Doc = (operation.responses ??= {});
      addRequestProblems(responses);
      if (/^\/health(?:\/|$)/.test(route)) {
        operation.security = [];
        continue;
      }
      if (Array.isArray(operation.security) && operation.security.length === 0) {
        // Public, yet a limited change (signing in): counted against the caller's address.
        responses['429'] ??= problem('More than RATE_LIMIT_PER_MINUTE changing requests from this address in the last minute', {
          'Retry-After': { schema: { type: 'integer' }, description: 'Seconds until a request will be accepted again' },
        });
        responses['401'] ??= problem('The token is not valid');
        continue;
      }
      responses['401'] ??= problem('No bearer token, or not a valid one', {
        'WWW-Authenticate': {
          schema: { type: 'string' },
          description: 'Bearer realm="ec2-creator" (with error="invalid_token" when a token was sent)',
        },
      });
      if (MUTATING.has(method)) {
        responses['403'] ??= problem('The token has the viewer role, which may only read; or, signed in by cookie, the request lacks X-Ec2-Creator-Csrf or this server\'s Origin');
        responses['429'] ??= problem('More than RATE_LIMIT_PER_MINUTE changing requests for this token in the last minute', {
          'Retry-After': { schema: { type: 'integer' }, description: 'Seconds until a request will be accepted again' },
        });
      }
    }
  }
}
