import type { FromSchema } from 'json-schema-to-ts';
import { AMI_ID_PATTERN, INSTANCE_ID_PATTERN, INSTANCE_STATES } from './common.js';
import { scheduleSchema } from './requests.js';

const nullableString = { type: ['string', 'null'] } as const;

/** The instance as the API returns it: built from the SQLite row, which is refreshed from EC2. */
export const instanceSchema = {
  title: 'Instance',
  type: 'object',
  additionalProperties: false,
  required: [
    'id', 'name', 'state', 'public_ip', 'private_ip', 'ssh_string', 'ami', 'instance_type', 'storage_gb',
    'key_name', 'security_group_id', 'backend_used', 'launch_time', 'created_at', 'updated_at',
    'owner', 'tags', 'expires_at', 'on_expiry', 'schedule',
  ],
  properties: {
    id: { type: 'string', pattern: INSTANCE_ID_PATTERN, examples: ['i-0abcd1234ef567890'] },
    name: { type: 'string' },
    state: { type: 'string', enum: INSTANCE_STATES, description: 'As EC2 last reported it.' },
    public_ip: { ...nullableString, description: 'Changes when a stopped instance starts again.' },
    private_ip: nullableString,
    ssh_string: {
      type: 'string',
      description: 'ssh -i <key file> <login user>@<public ip>: the key file is KEY_FILE for the configured key pair, else ~/.ssh/<key>.pem; empty when there is no public IP.',
    },
    ami: { type: 'string', pattern: AMI_ID_PATTERN },
    instance_type: { type: 'string' },
    storage_gb: { type: ['integer', 'null'] },
    key_name: nullableString,
    security_group_id: nullableString,
    backend_used: { type: 'string', const: 'awscli' },
    launch_time: { type: ['string', 'null'], format: 'date-time' },
    created_at: { type: 'string', format: 'date-time' },
    updated_at: { type: 'string', format: 'date-time' },
    owner: { ...nullableString, description: 'The API token that launched it (its Owner tag); null when unknown.' },
    tags: {
      type: 'object',
      additionalProperties: { type: 'string' },
      description: "The user's tags (the service's own tags, such as Name and Owner, are not among them).",
    },
    expires_at: {
      type: ['string', 'null'], format: 'date-time',
      description: 'When the scheduler stops or terminates it (on_expiry); null: never.',
    },
    on_expiry: { type: ['string', 'null'], enum: ['stop', 'terminate', null] },
    schedule: { ...scheduleSchema, type: ['object', 'null'], description: 'Its off-hours schedule, or null.' },
  },
} as const;
export type Instance = FromSchema<typeof instanceSchema>;

export const instanceListSchema = {
  title: 'InstanceList',
  type: 'object',
  additionalProperties: false,
  required: ['instances', 'next_cursor'],
  properties: {
    instances: { type: 'array', items: instanceSchema },
    next_cursor: {
      type: ['string', 'null'],
      description: 'Pass as `cursor` to get the next page; null on the last page.',
    },
  },
} as const;
export type InstanceList = FromSchema<typeof instanceListSchema>;

export const healthSchema = {
  title: 'Health',
  type: 'object',
  additionalProperties: false,
  required: ['status'],
  properties: { status: { type: 'string', const: 'ok' } },
} as const;

/**
 * GET /health/ready: 503 with status "draining" from the moment a shutdown starts, and
 * "storage-unavailable" while the database cannot take writes.
 */
export const readinessSchema = {
  title: 'Readiness',
  type: 'object',
  additionalProperties: false,
  required: ['status'],
  properties: { status: { type: 'string', enum: ['ok', 'draining', 'storage-unavailable'] } },
} as const;

export const problemSchema = {
  title: 'Problem',
  description: 'RFC 9457 problem details (application/problem+json).',
  type: 'object',
  required: ['type', 'title', 'status', 'detail'],
  properties: {
    type: { type: 'string' },
    title: { type: 'string' },
    status: { type: 'integer' },
    detail: { type: 'string' },
    instance: { type: 'string' },
    request_id: { type: 'string' },
    operation_id: { type: 'string', description: 'The operation in flight (409 operation-in-flight).' },
    errors: {
      type: 'array',
      description: 'The failing fields (validation and policy problems).',
      items: {
        type: 'object',
        required: ['field', 'message'],
        properties: { field: { type: 'string' }, message: { type: 'string' } },
      },
    },
  },
} as const;
export type Problem = FromSchema<typeof problemSchema>;
