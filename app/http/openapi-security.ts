/**
 * The security part of the OpenAPI document (issue 6): the bearer scheme, required everywhere but /health*,
 * and the 401/403/429 (and quota 409) answers every operation can give, so documented responses match
 * what the middleware in app/http/auth.ts and app/http/limits.ts really does. Applied to every path,
 * including ones added later.
 */
const problem = (description: string, headers?: Record<string, unknown>) => ({
  description,
  ...(headers ? { headers } : {}),
  content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
});

const MUTATING = new Set(['post', 'put', 'patch', 'delete']);
const METHODS = new Set(['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace']);

/**
 * Any request may carry a body, and the JSON body parser runs before routing: a malformed, oversized or
 * oddly encoded body is refused on every route (found by the fuzz tests), so every operation documents it.
 */
function addBodyProblems(responses: Record<string, unknown>): void {
  responses['400'] ??= problem('Malformed request (invalid JSON body, bad parameters)');
  responses['413'] ??= problem('Request body larger than 16 kB');
  responses['415'] ??= problem('Unsupported request body media type or charset');
}

export function withSecurity<T extends Record<string, unknown>>(document: T): T {
  const doc = document as Record<string, any>;
  doc.components ??= {};
  doc.components.securitySchemes = {
    ...(doc.components.securitySchemes ?? {}),
    bearerAuth: {
      type: 'http',
      scheme: 'bearer',
      description:
        'An API token from API_TOKENS / API_TOKENS_FILE (or the generated data/api-token). Role viewer may only ' +
        'read (GET); role operator may do everything.',
    },
  };
  doc.security = [{ bearerAuth: [] }];
  for (const [route, item] of Object.entries<Record<string, any>>(doc.paths ?? {})) {
    for (const [method, operation] of Object.entries<Record<string, any>>(item)) {
      if (!METHODS.has(method)) continue;
      if (/^\/health(?:\/|$)/.test(route)) {
        operation.security = [];
        addBodyProblems((operation.responses ??= {}));
        continue;
      }
      const responses = (operation.responses ??= {});
      addBodyProblems(responses);
      responses['401'] ??= problem('No bearer token, or not a valid one', {
        'WWW-Authenticate': { schema: { type: 'string' }, description: 'Bearer realm="ec2-creator" (with error="invalid_token" when a token was sent)' },
      });
      if (MUTATING.has(method)) {
        responses['403'] ??= problem('The token has the viewer role, which may only read');
        responses['429'] ??= problem('More than RATE_LIMIT_PER_MINUTE changing requests for this token in the last minute', {
          'Retry-After': { schema: { type: 'integer' }, description: 'Seconds until a request will be accepted again' },
        });
      }
      if (route === '/instances' && method === 'post') {
        const existing = responses['409'] as { description?: string } | undefined;
        responses['409'] = existing
          ? { ...existing, description: `${existing.description ?? 'Conflict'}; or the quota of MAX_INSTANCES live instances is reached (type urn:ec2-creator:problem:quota-exceeded)` }
          : problem('The quota of MAX_INSTANCES live instances is reached (type urn:ec2-creator:problem:quota-exceeded)');
      }
    }
  }
  return document;
}
