/**
 * The OpenAPI 3.1 document, assembled from the same schema objects ajv compiles (app/schemas/), so the
 * docs cannot drift from what the service validates and returns.
 */
import { Router } from 'express';
import swaggerUi from 'swagger-ui-express';
import { withSecurity } from './openapi-security.js'; // security (issue 6)
import { withLifecycle } from './openapi-lifecycle.js'; // lifecycle engine (issue 5)
import { healthSchema, instanceListSchema, instanceSchema, problemSchema } from '../schemas/instance.js';
import { createInstanceRequestSchema, instanceIdParamsSchema, listInstancesQuerySchema } from '../schemas/requests.js';

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const problem = (description: string) => ({
  description,
  content: { 'application/problem+json': { schema: ref('Problem') } },
});
const json = (description: string, schemaName: string) => ({
  description,
  content: { 'application/json': { schema: ref(schemaName) } },
});

const idParameter = {
  name: 'id',
  in: 'path',
  required: true,
  description: 'EC2 instance id',
  schema: instanceIdParamsSchema.properties.id,
};

const ec2Failures = {
  '502': problem('EC2 or the EC2 layer failed (unexpected AWS error, bad credentials, unusable script output)'),
  '503': problem('AWS throttled us or is unavailable; see Retry-After'),
  '504': problem('The EC2 operation timed out'),
};

export function buildOpenApiDocument(version: string): Record<string, unknown> {
  const queryParameters = Object.entries(listInstancesQuerySchema.properties).map(([name, schema]) => ({
    name,
    in: 'query',
    required: false,
    ...('description' in schema ? { description: schema.description } : {}),
    schema,
  }));
  const changeOperation = (verb: 'start' | 'stop') => ({
    post: {
      operationId: `${verb}Instance`,
      summary: `${verb === 'start' ? 'Start' : 'Stop'} an instance and wait until it is ${verb === 'start' ? 'running' : 'stopped'}`,
      parameters: [idParameter],
      responses: {
        '200': json('The instance as EC2 reports it after the change (new public IP after a start)', 'Instance'),
        '400': problem('Malformed instance id'),
        '404': problem('No such instance is recorded'),
        '409': problem('The instance state does not allow it, or EC2 no longer knows the instance'),
        ...ec2Failures,
      },
    },
  });

  // lifecycle engine (issue 5): withLifecycle adds operations, sync, readiness and the change headers
  return withSecurity(withLifecycle({ // security (issue 6): bearer scheme, 401/403/429 on every operation
    openapi: '3.1.0',
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    info: {
      title: 'ec2-creator',
      version,
      description:
        'Provision and manage AWS EC2 instances through audited AWS CLI scripts. Records live in SQLite and are ' +
        're-read from EC2 on every single-instance call. Errors are RFC 9457 application/problem+json.',
    },
    paths: {
      '/health': {
        get: { operationId: 'health', summary: 'Liveness', responses: { '200': json('Alive', 'Health') } },
      },
      '/instances': {
        get: {
          operationId: 'listInstances',
          summary: 'List recorded instances, newest first',
          description: 'Terminated instances are hidden unless include_terminated=true or state=terminated.',
          parameters: queryParameters,
          responses: { '200': json('One page of instances', 'InstanceList'), '400': problem('Invalid query') },
        },
        post: {
          operationId: 'createInstance',
          summary: 'Launch an instance',
          requestBody: { required: true, content: { 'application/json': { schema: ref('CreateInstanceRequest') } } },
          responses: {
            '201': {
              ...json('Launched; the state is what EC2 reported (usually pending)', 'Instance'),
              headers: { Location: { schema: { type: 'string' }, description: '/instances/{id}' } },
            },
            '400': problem('Malformed JSON, unknown fields or wrong types'),
            '413': problem('Body larger than 16 kB'),
            '415': problem('Body is not application/json'),
            '422': problem('Refused by the launch policy (instance type, storage cap, AMI missing or wrong architecture)'),
            ...ec2Failures,
          },
        },
      },
      '/instances/{id}': {
        get: {
          operationId: 'getInstance',
          summary: 'One instance, re-read from EC2',
          parameters: [idParameter],
          responses: {
            '200': json('The instance; terminated when EC2 no longer knows it', 'Instance'),
            '400': problem('Malformed instance id'),
            '404': problem('No such instance is recorded'),
            ...ec2Failures,
          },
        },
        delete: {
          operationId: 'destroyInstance',
          summary: 'Terminate an instance; its record is kept, marked terminated',
          parameters: [idParameter],
          responses: {
            '204': { description: 'Terminated (also when EC2 no longer knew the instance)' },
            '400': problem('Malformed instance id'),
            '404': problem('No such instance is recorded'),
            '409': problem('EC2 refused (e.g. the instance is not managed by ec2-creator)'),
            ...ec2Failures,
          },
        },
      },
      '/instances/{id}/start': changeOperation('start'),
      '/instances/{id}/stop': changeOperation('stop'),
    },
    components: {
      schemas: {
        Health: healthSchema,
        Instance: instanceSchema,
        InstanceList: instanceListSchema,
        CreateInstanceRequest: createInstanceRequestSchema,
        Problem: problemSchema,
      },
    },
  }));
}

export function openApiRouter(document: Record<string, unknown>): Router {
  const router = Router();
  router.get('/openapi.json', (_req, res) => {
    res.json(document);
  });
  router.use('/docs', swaggerUi.serve);
  router.get('/docs', swaggerUi.setup(document, { customSiteTitle: 'ec2-creator API' }));
  return router;
}
