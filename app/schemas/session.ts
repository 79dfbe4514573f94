/** POST /session: an API token exchanged for a dashboard session cookie; GET /session: who is signed in. */
import type { FromSchema } from 'json-schema-to-ts';

export const createSessionRequestSchema = {
  title: 'CreateSessionRequest',
  type: 'object',
  additionalProperties: false,
  required: ['token'],
  properties: {
    token: { type: 'string', minLength: 16, maxLength: 512, pattern: '^[A-Za-z0-9\\-._~+/]+=*$', description: 'An API token (API_TOKENS)' },
  },
} as const;
export type CreateSessionRequest = FromSchema<typeof createSessionRequestSchema>;

export const sessionSchema = {
  title: 'Session',
  type: 'object',
  additionalProperties: false,
  required: ['name', 'role', 'via', 'expires_at'],
  properties: {
    name: { type: ['string', 'null'], description: 'The API token\'s name; null when authentication is disabled' },
    role: { type: 'string', enum: ['viewer', 'operator'] },
    via: { type: 'string', enum: ['session', 'token', 'none'], description: 'How this request was signed in' },
    expires_at: { type: ['string', 'null'], format: 'date-time', description: 'When the session ends (null for a bearer token)' },
  },
} as const;
export type Session = FromSchema<typeof sessionSchema>;
