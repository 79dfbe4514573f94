import type { FromSchema } from 'json-schema-to-ts';
import { INSTANCE_STATES, INSTANCE_TYPE_PATTERN, SECURITY_GROUP_ID_PATTERN } from './common.js';

/**
 * What each script prints on stdout (the EC2 layer's JSON contract). The runner validates every document
 * against these before the domain sees it: a wrong shape is a ScriptError (502), never a crash.
 * Extra fields are tolerated so the scripts can grow without breaking the service.
 */
const nullableString = { type: ['string', 'null'] } as const;
// --- security (issue 6): script output is untrusted (OWASP API10); values that reach records, logs and
// answers must be printable, bounded text (EC2 tag values are at most 256 characters). ---
const PRINTABLE = '^[^\\u0000-\\u001f\\u007f]*$';
const printableOrNull = { type: ['string', 'null'], maxLength: 256, pattern: PRINTABLE } as const;
const ipOrNull = { type: ['string', 'null'], maxLength: 45, pattern: '^[0-9A-Fa-f.:]+$' } as const;

export const scriptErrorOutputSchema = {
  title: 'ScriptErrorOutput',
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: { code: { type: 'string' }, message: { type: 'string' } },
    },
  },
} as const;
export type ScriptErrorOutput = FromSchema<typeof scriptErrorOutputSchema>;

export const ec2InstanceSchema = {
  title: 'ScriptInstance',
  type: 'object',
  required: [
    'id', 'name', 'state', 'public_ip', 'private_ip', 'ami', 'instance_type', 'storage_gb', 'key_name',
    'security_group_ids', 'launch_time', 'client_token', 'managed',
  ],
  properties: {
    id: { type: 'string', pattern: '^i-[0-9a-f]{8,17}$' },
    name: printableOrNull,
    state: { type: 'string', enum: INSTANCE_STATES },
    public_ip: ipOrNull,
    private_ip: ipOrNull,
    ami: { type: 'string', pattern: '^ami-[0-9a-f]{8,17}$' },
    instance_type: { type: 'string', pattern: INSTANCE_TYPE_PATTERN },
    storage_gb: { type: ['integer', 'null'], minimum: 0 },
    key_name: printableOrNull,
    security_group_ids: { type: 'array', items: { type: 'string', pattern: SECURITY_GROUP_ID_PATTERN } },
    launch_time: { type: 'string', minLength: 1, maxLength: 64, pattern: PRINTABLE },
    client_token: printableOrNull,
    managed: { type: 'boolean' },
  },
} as const;
export type Ec2Instance = FromSchema<typeof ec2InstanceSchema>;

export const instanceListOutputSchema = {
  title: 'ScriptInstanceList',
  type: 'object',
  required: ['instances'],
  properties: { instances: { type: 'array', items: ec2InstanceSchema } },
} as const;
export type Ec2InstanceList = FromSchema<typeof instanceListOutputSchema>;

export const imageOutputSchema = {
  title: 'ScriptImage',
  type: 'object',
  required: ['id', 'name', 'architecture', 'state', 'root_device_name', 'owner_id', 'platform', 'description'],
  properties: {
    id: { type: 'string', pattern: '^ami-[0-9a-f]+$' },
    name: nullableString,
    architecture: nullableString,
    state: nullableString,
    root_device_name: nullableString,
    owner_id: nullableString,
    platform: nullableString,
    description: nullableString,
  },
} as const;
export type Ec2Image = FromSchema<typeof imageOutputSchema>;

export const securityGroupOutputSchema = {
  title: 'ScriptSecurityGroup',
  type: 'object',
  required: ['id', 'name', 'vpc_id', 'created', 'rules'],
  properties: {
    id: { type: 'string', pattern: '^sg-[0-9a-f]+$' },
    name: { type: 'string' },
    vpc_id: nullableString,
    created: { type: 'boolean' },
    rules: {
      type: 'array',
      items: {
        type: 'object',
        required: ['protocol', 'port', 'cidr'],
        properties: { protocol: { type: 'string' }, port: { type: ['integer', 'null'] }, cidr: { type: 'string' } },
      },
    },
  },
} as const;
export type Ec2SecurityGroup = FromSchema<typeof securityGroupOutputSchema>;

export const keyPairOutputSchema = {
  title: 'ScriptKeyPair',
  type: 'object',
  required: ['name', 'key_pair_id', 'fingerprint', 'created', 'private_key_file'],
  properties: {
    name: { type: 'string' },
    key_pair_id: nullableString,
    fingerprint: nullableString,
    created: { type: 'boolean' },
    private_key_file: nullableString,
  },
} as const;
export type Ec2KeyPair = FromSchema<typeof keyPairOutputSchema>;
