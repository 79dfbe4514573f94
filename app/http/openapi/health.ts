/** Health: liveness and readiness, public (no token). */
import { healthSchema, readinessSchema } from '../../schemas/instance.js';
import { json, type Doc } from './shared.js';

export const healthPaths: Doc = {
  '/health': {
    get: { operationId: 'health', summary: 'Liveness', responses: { '200': json('Alive', 'Health') } },
  },
  '/health/live': {
    get: {
      operationId: 'liveness',
      summary: 'Liveness: 200 while the process runs (also while draining)',
      responses: { '200': json('Alive', 'Health') },
    },
  },
  '/health/ready': {
    get: {
      operationId: 'readiness',
      summary: 'Readiness: 503 from the moment a shutdown begins, and while the database cannot take writes',
      responses: {
        '200': json('Ready', 'Readiness'),
        '503': json('Draining, or the database deleted, replaced, full or failing: send no new work', 'Readiness'),
      },
    },
  },
};

export const healthSchemas: Doc = { Health: healthSchema, Readiness: readinessSchema };
