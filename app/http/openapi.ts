/**
 * The OpenAPI 3.1 document, assembled from one part per resource (app/http/openapi/) built on the same
 * schema objects ajv compiles (app/schemas/), so the docs cannot drift from what the service validates
 * and returns. Security is applied to the whole document in one pass, last.
 */
import { Router } from 'express';
import swaggerUi from 'swagger-ui-express';
import { problemSchema } from '../schemas/instance.js';
import { eventPaths, eventSchemas } from './openapi/events.js';
import { healthPaths, healthSchemas, metricsPaths } from './openapi/health.js';
import { instancePaths, instanceSchemas, usagePaths } from './openapi/instances.js';
import { launchPolicyPaths, launchPolicySchemas } from './openapi/launch-policy.js';
import { operationPaths, operationSchemas } from './openapi/operations.js';
import { applySecurity, securitySchemes } from './openapi/security.js';
import { sessionPaths, sessionSchemas } from './openapi/session.js';

export function buildOpenApiDocument(version: string): Record<string, unknown> {
  const paths = { ...healthPaths, ...instancePaths, ...usagePaths, ...launchPolicyPaths, ...operationPaths, ...eventPaths, ...metricsPaths, ...sessionPaths };
  applySecurity(paths);
  return {
    openapi: '3.1.0',
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    info: {
      title: 'ec2-creator',
      version,
      description:
        'Provision and manage AWS EC2 instances through audited AWS CLI scripts. Records live in SQLite and are ' +
        're-read from EC2 on every single-instance call. Errors are RFC 9457 application/problem+json.',
    },
    security: [{ bearerAuth: [] }],
    paths,
    components: {
      schemas: { ...healthSchemas, ...instanceSchemas, ...launchPolicySchemas, ...operationSchemas, ...eventSchemas, ...sessionSchemas, Problem: problemSchema },
      securitySchemes,
    },
  };
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
