import type { FromSchema } from 'json-schema-to-ts';
import {
  AMI_ID_PATTERN, EBS_MAX_GB, SECURITY_GROUP_ID_PATTERN, TAG_KEY_PATTERN, TAG_TEXT_PATTERN, INSTANCE_ID_PATTERN, INSTANCE_NAME_PATTERN, INSTANCE_STATES, INSTANCE_TYPE_PATTERN,
} from './common.js';

/** User tags as EC2 accepts them: keys 1–128, values 0–256 characters of letters, digits, spaces and _ . : / = + - @ (no = in a key). */
export const userTagsSchema = {
  type: 'object',
  maxProperties: 10,
  propertyNames: { minLength: 1, maxLength: 128, pattern: TAG_KEY_PATTERN },
  additionalProperties: { type: 'string', maxLength: 256, pattern: TAG_TEXT_PATTERN },
  description: 'At most 10 tags, put on the instance and its volume. Name, Owner, ManagedBy, ec2-creator:* and aws:* are reserved (400).',
  examples: [{ team: 'web', 'cost-center': '4711' }],
} as const;

export const HH_MM_PATTERN = '^(?:[01][0-9]|2[0-3]):[0-5][0-9]$';

/** An off-hours schedule: stop (and start) at local times on some days, in an IANA time zone. */
export const scheduleSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['stop_at', 'days', 'timezone'],
  properties: {
    stop_at: { type: 'string', pattern: HH_MM_PATTERN, examples: ['19:00'] },
    start_at: { type: 'string', pattern: HH_MM_PATTERN, examples: ['08:00'], description: 'Leave out for a schedule that only stops.' },
    days: {
      type: 'string', minLength: 3, maxLength: 64, pattern: '^[A-Za-z,-]+$',
      description: '"daily", a range like "mon-fri", or a list like "mon,wed,fri".',
      examples: ['mon-fri'],
    },
    timezone: { type: 'string', minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_+/-]+$', examples: ['Europe/Berlin'] },
  },
} as const;

const guardrailProperties = {
  expires_at: {
    type: 'string', format: 'date-time',
    description: 'When the instance expires (ISO 8601); at most MAX_TTL_HOURS ahead (422). Not with ttl_hours.',
    examples: ['2026-12-01T18:00:00Z'],
  },
  ttl_hours: {
    type: 'integer', minimum: 1, maximum: 87600,
    description: 'Expires this many hours from now; at most MAX_TTL_HOURS (422). Not with expires_at.',
    examples: [8],
  },
  on_expiry: { type: 'string', enum: ['stop', 'terminate'], description: 'What happens at expiry.' },
  schedule: {
    ...scheduleSchema,
    type: ['object', 'null'],
    description: 'Off-hours schedule; null: none.',
  },
} as const;

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
      description: 'Launch into a security group the service manages: SSH from ssh_cidr, HTTP and HTTPS from web_cidr.',
    },
    ssh_cidr: {
      type: 'string', minLength: 4, maxLength: 49,
      description: 'With create_security_group: where SSH is allowed from (IPv4 or IPv6 CIDR); default SECURITY_GROUP_CIDR. A /0 needs ALLOW_OPEN_SECURITY_GROUP=true (422).',
      examples: ['203.0.113.7/32'],
    },
    web_cidr: {
      type: 'string', minLength: 4, maxLength: 49,
      description: 'With create_security_group: where HTTP and HTTPS are allowed from; none when left out.',
      examples: ['198.51.100.0/24'],
    },
    security_group_ids: {
      type: 'array', minItems: 1, maxItems: 5, uniqueItems: true,
      items: { type: 'string', pattern: SECURITY_GROUP_ID_PATTERN },
      description: 'Existing security groups to launch into instead (each must exist in the default VPC; 422 otherwise).',
    },
    tags: userTagsSchema,
    ...guardrailProperties,
    schedule: {
      ...guardrailProperties.schedule,
      description: 'Off-hours schedule; left out: DEFAULT_SCHEDULE; null: none.',
    },
    on_expiry: { ...guardrailProperties.on_expiry, description: 'What happens at expiry (default DEFAULT_ON_EXPIRY).' },
  },
} as const;
export type CreateInstanceRequest = FromSchema<typeof createInstanceRequestSchema>;

/** PATCH /instances/{id}: change or clear the expiry, the action at expiry and the schedule. */
export const updateInstanceRequestSchema = {
  title: 'UpdateInstanceRequest',
  type: 'object',
  additionalProperties: false,
  minProperties: 1,
  properties: {
    ...guardrailProperties,
    expires_at: { ...guardrailProperties.expires_at, type: ['string', 'null'], description: 'A new expiry, or null: none.' },
  },
} as const;
export type UpdateInstanceRequest = FromSchema<typeof updateInstanceRequestSchema>;

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
    tag: {
      anyOf: [
        { type: 'string', minLength: 1, maxLength: 386 },
        { type: 'array', maxItems: 10, items: { type: 'string', minLength: 1, maxLength: 386 } },
      ],
      description: 'KEY=VALUE, KEY:VALUE or KEY; repeat to require several.',
    },
    owner: { type: 'string', minLength: 1, maxLength: 256 },
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

export const usageQuerySchema = {
  title: 'UsageQuery',
  type: 'object',
  additionalProperties: false,
  properties: {
    month: { type: 'string', pattern: '^[0-9]{4}-(?:0[1-9]|1[0-2])$', description: 'YYYY-MM (UTC); default this month.', examples: ['2026-11'] },
  },
} as const;
export type UsageQuery = FromSchema<typeof usageQuerySchema>;
