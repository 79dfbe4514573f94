import type { FromSchema } from 'json-schema-to-ts';
import {
  AMI_ID_PATTERN, EBS_MAX_GB, INSTANCE_ID_PATTERN, INSTANCE_NAME_PATTERN, INSTANCE_STATES, INSTANCE_TYPE_PATTERN,
} from './common.js';

export const createInstanceRequestSchema = {
  title: 'CreateInstanceRequest',
  type: 'object',
  additionalProperties: false,
  required: ['name', 'ami', 'instance_type', 'storage_gb'],
  properties: {
    name: { type: 'string', pattern: INSTANCE_NAME_PATTERN, maxLength: 128, examples: ['web-1'] },
    ami: { type: 'string', pattern: AMI_ID_PATTERN, examples: ['ami-1e749f67'] },
    instance_type: {
      type: 'string',
      pattern: INSTANCE_TYPE_PATTERN,
      description: 'Must also be one of ALLOWED_INSTANCE_TYPES (422 otherwise).',
      examples: ['t3.micro'],
    },
    storage_gb: {
      type: 'integer',
      minimum: 1,
      maximum: EBS_MAX_GB,
      description: 'Root volume size in GiB; the launch policy caps it at MAX_STORAGE_GB (422 above it).',
      examples: [8],
    },
    create_security_group: {
      type: 'boolean',
      default: false,
      description: 'Ensure the ec2-creator SSH/web security group exists and launch into it.',
    },
  },
} as const;
export type CreateInstanceRequest = FromSchema<typeof createInstanceRequestSchema>;

export const MAX_PAGE_SIZE = 1000;
export const DEFAULT_PAGE_SIZE = 100;

/** Query strings arrive as strings; this schema is compiled with type coercion (limit, include_terminated). */
export const listInstancesQuerySchema = {
  title: 'ListInstancesQuery',
  type: 'object',
  additionalProperties: false,
  properties: {
    state: { type: 'string', enum: INSTANCE_STATES },
    name: { type: 'string', minLength: 1, maxLength: 128 },
    include_terminated: { type: 'boolean', default: false },
    limit: { type: 'integer', minimum: 1, maximum: MAX_PAGE_SIZE, default: DEFAULT_PAGE_SIZE },
    cursor: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$', description: 'Opaque; from next_cursor.' },
  },
} as const;
export type ListInstancesQuery = FromSchema<typeof listInstancesQuerySchema>;

export const instanceIdParamsSchema = {
  title: 'InstanceIdParams',
  type: 'object',
  additionalProperties: false,
  required: ['id'],
  properties: { id: { type: 'string', pattern: INSTANCE_ID_PATTERN } },
} as const;
export type InstanceIdParams = FromSchema<typeof instanceIdParamsSchema>;
