/** Instances: list, create, get, start, stop, terminate and sync. */
import { instanceListSchema, instanceSchema } from '../../schemas/instance.js';
import { syncResultSchema } from '../../schemas/operation.js';
import {
  createInstanceRequestSchema, instanceIdParamsSchema, listInstancesQuerySchema, updateInstanceRequestSchema, usageQuerySchema,
} from '../../schemas/requests.js';
import { usageReportSchema } from '../../schemas/usage.js';
import { accepted, change, ec2Failures, json, preferHeader, problem, queryParameters, ref, type Doc } from './shared.js';

const idParameter = {
  name: 'id',
  in: 'path',
  required: true,
  description: 'EC2 instance id',
  schema: instanceIdParamsSchema.properties.id,
};

const startOrStop = (verb: 'start' | 'stop'): Doc => ({
  post: change({
    operationId: `${verb}Instance`,
    summary: `${verb === 'start' ? 'Start' : 'Stop'} an instance and wait until it is ${verb === 'start' ? 'running' : 'stopped'}`,
    parameters: [idParameter],
    responses: {
      '200': json('The instance as EC2 reports it after the change (new public IP after a start)', 'Instance'),
      '404': problem('No such instance is recorded'),
      '409': problem('the instance is terminated, or EC2 no longer knows it'),
    },
  }),
});

export const instancePaths: Doc = {
  '/instances': {
    get: {
      operationId: 'listInstances',
      summary: 'List recorded instances, newest first',
      description: 'Answered from the records. Terminated instances are hidden unless include_terminated=true or state=terminated.',
      parameters: queryParameters(listInstancesQuerySchema),
      responses: { '200': json('One page of instances', 'InstanceList'), '400': problem('Invalid query') },
    },
    post: change({
      operationId: 'createInstance',
      summary: 'Launch an instance and wait until EC2 reports it running',
      requestBody: { required: true, content: { 'application/json': { schema: ref('CreateInstanceRequest') } } },
      responses: {
        '201': {
          ...json('Launched; the state is what EC2 reported once the launch settled (running)', 'Instance'),
          headers: {
            Location: { schema: { type: 'string' }, description: '/instances/{id}' },
            Warning: { schema: { type: 'string' }, description: 'With FREE_TIER_GUARD=warn: the free-tier allowance the month would pass' },
          },
        },
        '409': problem('the quota of MAX_INSTANCES live instances is reached (type urn:ec2-creator:problem:quota-exceeded)'),
        '413': problem('Body larger than 16 kB'),
        '415': problem('Body is not application/json'),
      },
    }),
  },
  '/instances/{id}': {
    get: {
      operationId: 'getInstance',
      summary: 'One instance, re-read from EC2',
      description:
        'Concurrent reads of one instance share one describe run; describes wait in line behind MAX_CONCURRENT_READS ' +
        '(never refused). While an operation changes the instance, the state is the transitional one it set.',
      parameters: [idParameter],
      responses: {
        '200': json('The instance; terminated when EC2 no longer knows it', 'Instance'),
        '400': problem('Malformed instance id'),
        '404': problem('No such instance is recorded'),
        ...ec2Failures,
      },
    },
    patch: {
      operationId: 'updateInstance',
      summary: "Change or clear an instance's expiry, its action at expiry and its off-hours schedule",
      description: 'A new expiry is also written to the EC2 tag ec2-creator:expires-at (removed when cleared).',
      parameters: [idParameter],
      requestBody: { required: true, content: { 'application/json': { schema: ref('UpdateInstanceRequest') } } },
      responses: {
        '200': json('The instance with its new settings', 'Instance'),
        '400': problem('Invalid body (e.g. an unknown time zone)'),
        '404': problem('No such instance is recorded'),
        '409': problem('The instance is terminated'),
        '422': problem('The expiry is in the past or beyond MAX_TTL_HOURS'),
        ...ec2Failures,
      },
    },
    delete: change({
      operationId: 'destroyInstance',
      summary: 'Terminate an instance; its record is kept, marked terminated',
      parameters: [idParameter],
      responses: {
        '204': { description: 'Terminated (also when EC2 no longer knew the instance)' },
        '404': problem('No such instance is recorded'),
        '409': problem('EC2 refused (e.g. the instance is not managed by ec2-creator)'),
      },
    }),
  },
  '/instances/{id}/start': startOrStop('start'),
  '/instances/{id}/stop': startOrStop('stop'),
  '/instances/sync': {
    post: {
      operationId: 'syncInstances',
      summary: 'Reconcile the records with EC2 (one read through list_instances.sh); concurrent calls share one run',
      parameters: [preferHeader],
      responses: {
        '200': json('Counts of what changed', 'SyncResult'),
        '202': accepted,
        '502': problem('EC2 or the EC2 layer failed'),
        '503': problem('Shutting down, storage unavailable, or AWS throttling; see Retry-After'),
        '504': problem('Reading EC2 timed out'),
      },
    },
  },
};

export const usagePaths: Doc = {
  '/usage': {
    get: {
      operationId: 'getUsage',
      summary: "The month's free-tier use: instance hours, EBS GB-months and public IPv4 hours against their allowances",
      description: 'From the recorded history of every state change; projected to the end of the month at the current running set.',
      parameters: queryParameters(usageQuerySchema),
      responses: { '200': json('The month so far', 'UsageReport'), '400': problem('A malformed month, or one that has not begun') },
    },
  },
};

export const instanceSchemas: Doc = {
  UpdateInstanceRequest: updateInstanceRequestSchema,
  UsageReport: usageReportSchema,
  Instance: instanceSchema,
  InstanceList: instanceListSchema,
  CreateInstanceRequest: createInstanceRequestSchema,
  SyncResult: syncResultSchema,
};
