import type { FromSchema } from 'json-schema-to-ts';
import { INSTANCE_STATES } from './common.js';

/**
 * What each script prints on stdout (the EC2 layer's JSON contract). The runner validates every document
 * against these before the domain sees it: a wrong shape is a ScriptError (502), never a crash.
 * Extra fields are tolerated so the scripts can grow without breaking the service.
 */
const nullableString = { type: ['string', 'null'] } as const;

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
    id: { type: 'string', pattern: '^i-[0-9a-f]+$' },
    name: nullableString,
    state: { type: 'string', enum: INSTANCE_STATES },
    public_ip: nullableString,
    private_ip: nullableString,
    ami: { type: 'string', pattern: '^ami-[0-9a-f]+$' },
    instance_type: { type: 'string', minLength: 1 },
    storage_gb: { type: ['integer', 'null'] },
    key_name: nullableString,
    security_group_ids: { type: 'array', items: { type: 'string' } },
    launch_time: { type: 'string', minLength: 1 },
    client_token: nullableString,
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
