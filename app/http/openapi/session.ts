/** The dashboard's sign-in: an API token exchanged for a session cookie. */
import { createSessionRequestSchema, sessionSchema } from '../../schemas/session.js';
import { json, problem, type Doc } from './shared.js';

export const sessionPaths: Doc = {
  '/session': {
    post: {
      operationId: 'signIn',
      summary: 'Exchange an API token for a session cookie (for browsers; no bearer token needed)',
      description: [
        'Sets `ec2c_session` (HttpOnly, SameSite=Strict, Path=/, Secure over HTTPS, Max-Age SESSION_TTL_HOURS).',
        'Requests signed in by the cookie that change anything must carry the X-Ec2-Creator-Csrf header and an',
        'Origin of this server, or get 403. A token removed from the configuration ends its sessions.',
      ].join(' '),
      security: [],
      requestBody: { required: true, content: { 'application/json': { schema: { $ref: '#/components/schemas/CreateSessionRequest' } } } },
      responses: {
        '201': {
          ...json('Signed in', 'Session'),
          headers: { 'Set-Cookie': { schema: { type: 'string' }, description: 'ec2c_session=…; Path=/; HttpOnly; SameSite=Strict' } },
        },
        '409': problem('Authentication is disabled on this server'),
      },
    },
    get: {
      operationId: 'getSession',
      summary: 'Who this request is signed in as (by cookie or bearer token)',
      responses: { '200': json('The caller', 'Session') },
    },
    delete: {
      operationId: 'signOut',
      summary: 'End the session and clear its cookie (any role)',
      responses: { '204': { description: 'Signed out' } },
    },
  },
};

export const sessionSchemas: Doc = { CreateSessionRequest: createSessionRequestSchema, Session: sessionSchema };
