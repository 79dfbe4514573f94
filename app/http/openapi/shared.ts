/** Building blocks every resource's part of the OpenAPI document uses. */
import { IDEMPOTENCY_KEY_PATTERN } from '../../schemas/operation.js';

export type Doc = Record<string, any>;

export const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });

export const problem = (description: string, headers?: Record<string, unknown>) => ({
  description,
  ...(headers ? { headers } : {}),
  content: { 'application/problem+json': { schema: ref('Problem') } },
});

export const json = (description: string, schemaName: string) => ({
  description,
  content: { 'application/json': { schema: ref(schemaName) } },
});

/** Query parameters from a query schema's properties. */
export function queryParameters(schema: { properties: Record<string, object> }): Doc[] {
  return Object.entries(schema.properties).map(([name, property]) => ({
    name,
    in: 'query',
    required: false,
    ...('description' in property ? { description: property.description } : {}),
    schema: property,
  }));
}

/** What a call that runs a script may answer when EC2 or the EC2 layer fails. */
export const ec2Failures = {
  '502': problem('EC2 or the EC2 layer failed (unexpected AWS error, bad credentials, unusable script output)'),
  '503': problem('AWS throttled us or is unavailable, the service is shutting down, or storage is unavailable; see Retry-After'),
  '504': problem('The EC2 operation timed out'),
};

export const preferHeader = {
  name: 'Prefer',
  in: 'header',
  required: false,
  description: '`respond-async` (RFC 7240): answer 202 at once with the operation; follow it at Location.',
  schema: { type: 'string', examples: ['respond-async'] },
};

export const idempotencyKeyHeader = {
  name: 'Idempotency-Key',
  in: 'header',
  required: false,
  description:
    'Makes the request safe to retry: the same key with the same request answers the first result (also after a ' +
    'restart; kept at least 24 h); with a different request 422. For launches the EC2 ClientToken is derived from it.',
  schema: { type: 'string', pattern: IDEMPOTENCY_KEY_PATTERN },
};

export const accepted = {
  description:
    'Accepted (Prefer: respond-async): the operation, to follow at Location. Whatever a request without the ' +
    'preference is refused for before a script runs (validation, launch policy, quota, a terminated instance, ' +
    'an operation in flight) is refused the same way, never accepted.',
  headers: {
    Location: { schema: { type: 'string' }, description: '/operations/{id}' },
    'Preference-Applied': { schema: { type: 'string', const: 'respond-async' } },
  },
  content: { 'application/json': { schema: ref('Operation') } },
};

/** Parameters and answers every change (create, start, stop, terminate) shares. */
export function change(operation: Doc): Doc {
  return {
    ...operation,
    parameters: [...(operation.parameters ?? []), idempotencyKeyHeader, preferHeader],
    responses: {
      ...operation.responses,
      '202': accepted,
      '400': problem('Malformed request (body, id or Idempotency-Key)'),
      '409': problem(
        'The state does not allow it, or another operation on the instance is in flight (operation_id names it)' +
          (operation.responses?.['409']?.description ? `; ${operation.responses['409'].description}` : ''),
      ),
      '422': problem('Refused by the launch policy, or the Idempotency-Key was used with a different request'),
      ...ec2Failures,
      '503': problem('Shutting down, script slots and queue full, storage unavailable, or AWS throttling; see Retry-After'),
    },
  };
}
