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

export const metricsPaths: Doc = {
  '/metrics': {
    get: {
      operationId: 'metrics',
      summary: 'Prometheus metrics (text exposition format); any token, or none with METRICS_PUBLIC=true',
      description: [
        'Process and Node defaults; ec2creator_http_request_duration_seconds{method,route,status_code} (route is',
        'the template, e.g. /instances/:id); ec2creator_script_runs_total and ec2creator_script_duration_seconds',
        '{script,outcome}; ec2creator_operations{kind,status} and ec2creator_instances{state} (from the database,',
        'the same on every replica); ec2creator_operations_running, ec2creator_operations_queued and',
        'ec2creator_event_stream_clients (this server).',
      ].join(' '),
      responses: { '200': { description: 'The metrics', content: { 'text/plain': { schema: { type: 'string' } } } } },
    },
  },
};
