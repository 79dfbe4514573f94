/**
 * The lifecycle engine's part of the OpenAPI document (issue 5): operations, sync, readiness/liveness, and
 * on every change the Idempotency-Key and Prefer headers with their 202/409/422/503 answers.
 */
import { readinessSchema } from '../schemas/instance.js';
import {
  listOperationsQuerySchema, operationIdParamsSchema, operationListSchema, operationSchema, syncResultSchema,
  IDEMPOTENCY_KEY_PATTERN,
} from '../schemas/operation.js';

type Doc = Record<string, any>;

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const problem = (description: string) => ({ description, content: { 'application/problem+json': { schema: ref('Problem') } } });
const json = (description: string, schemaName: string) => ({ description, content: { 'application/json': { schema: ref(schemaName) } } });

const idempotencyKeyHeader = {
  name: 'Idempotency-Key',
  in: 'header',
  required: false,
  description:
    'Makes the request safe to retry: the same key with the same request answers the first result (also after a ' +
    'restart; kept at least 24 h); with a different request 422. For launches the EC2 ClientToken is derived from it.',
  schema: { type: 'string', pattern: IDEMPOTENCY_KEY_PATTERN },
};
const preferHeader = {
  name: 'Prefer',
  in: 'header',
  required: false,
  description: '`respond-async` (RFC 7240): answer 202 at once with the operation; follow it at Location.',
  schema: { type: 'string', examples: ['respond-async'] },
};
const accepted = {
  description: 'Accepted (Prefer: respond-async): the operation, to follow at Location',
  headers: {
    Location: { schema: { type: 'string' }, description: '/operations/{id}' },
    'Preference-Applied': { schema: { type: 'string', const: 'respond-async' } },
  },
  content: { 'application/json': { schema: ref('Operation') } },
};

export function withLifecycle(doc: Doc): Doc {
  const paths = doc.paths as Doc;
  const changes: Array<[string, string]> = [
    ['/instances', 'post'], ['/instances/{id}/start', 'post'], ['/instances/{id}/stop', 'post'], ['/instances/{id}', 'delete'],
  ];
  for (const [p, method] of changes) {
    const op = paths[p]?.[method] as Doc | undefined;
    if (!op) continue;
    op.parameters = [...(op.parameters ?? []), idempotencyKeyHeader, preferHeader];
    op.responses = {
      ...op.responses,
      '202': accepted,
      '400': problem('Malformed request (body, id or Idempotency-Key)'),
      '409': problem('The state does not allow it, or another operation on the instance is in flight (operation_id names it)'),
      '422': problem('Refused by the launch policy, or the Idempotency-Key was used with a different request'),
      '503': problem('Shutting down, script slots and queue full, or AWS throttling; see Retry-After'),
    };
  }

  const queryParameters = Object.entries(listOperationsQuerySchema.properties).map(([name, schema]) => ({
    name, in: 'query', required: false, ...('description' in schema ? { description: schema.description } : {}), schema,
  }));
  Object.assign(paths, {
    '/health/live': {
      get: { operationId: 'liveness', summary: 'Liveness: 200 while the process runs (also while draining)', responses: { '200': json('Alive', 'Health') } },
    },
    '/health/ready': {
      get: {
        operationId: 'readiness',
        summary: 'Readiness: 503 from the moment a shutdown begins',
        responses: { '200': json('Ready', 'Readiness'), '503': json('Draining: send no new work', 'Readiness') },
      },
    },
    '/operations': {
      get: {
        operationId: 'listOperations',
        summary: 'Operations, newest first',
        parameters: queryParameters,
        responses: { '200': json('One page of operations', 'OperationList'), '400': problem('Invalid query') },
      },
    },
    '/operations/{id}': {
      get: {
        operationId: 'getOperation',
        summary: 'One operation',
        parameters: [{ name: 'id', in: 'path', required: true, schema: operationIdParamsSchema.properties.id }],
        responses: { '200': json('The operation', 'Operation'), '400': problem('Malformed id'), '404': problem('No such operation') },
      },
    },
    '/instances/sync': {
      post: {
        operationId: 'syncInstances',
        summary: 'Reconcile the records with EC2 (one read through list_instances.sh); concurrent calls share one run',
        parameters: [preferHeader],
        responses: {
          '200': json('Counts of what changed', 'SyncResult'),
          '202': accepted,
          '502': problem('EC2 or the EC2 layer failed'),
          '503': problem('Shutting down or AWS throttling; see Retry-After'),
          '504': problem('Reading EC2 timed out'),
        },
      },
    },
  });
  Object.assign(doc.components.schemas as Doc, {
    Operation: operationSchema,
    OperationList: operationListSchema,
    SyncResult: syncResultSchema,
    Readiness: readinessSchema,
  });
  return doc;
}
