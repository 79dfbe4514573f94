import type { FromSchema } from 'json-schema-to-ts';
import { INSTANCE_STATES, INSTANCE_TYPE_PATTERN, SECURITY_GROUP_ID_PATTERN } from './common.js';

/**
 * What each script prints on stdout (the EC2 layer's JSON contract). The runner validates every document
 * against these before the domain sees it: a wrong shape is a ScriptError (502), never a crash.
 * Extra fields are tolerated so the scripts can grow without breaking the service.
 */
const nullableString = { type: ['string', 'null'] } as const;
// Script output is untrusted (OWASP API10); values that reach records, logs and
// answers must be printable, bounded text (EC2 tag values are at most 256 characters). ---
const PRINTABLE = '^[^\\u0000-\\u001f\\u007f]*$';
const printableOrNull = { type: ['string', 'null'], maxLength: 256, pattern: PRINTABLE } as const;
// An instance's Name tag is data, not markup: EC2 allows any characters in a tag value, and anyone may tag an
// instance in the region. It is kept exactly as EC2 has it (bounded as EC2 bounds it) and only ever leaves
// the service JSON-encoded (answers, log lines), where control characters are escaped.
const tagValueOrNull = { type: ['string', 'null'], maxLength: 256 } as const;
const ipOrNull = { type: ['string', 'null'], maxLength: 45, pattern: '^[0-9A-Fa-f.:]+$' } as const;

export const scriptErrorOutputSchema = {
  title: 'ScriptErrorOutput',
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: {
        code: { type: 'string' },
        message: { type: 'string' },
        /** create_instance.sh: the instance EC2 had launched before the run failed (the launch happened). */
        instance_id: { type: 'string', pattern: '^i-[0-9a-f]{8,17}$' },
      },
    },
  },
} as const;
export type ScriptErrorOutput = FromSchema<typeof scriptErrorOutputSchema>;

/**
 * A line create_instance.sh writes to its progress descriptor the moment EC2 has launched the instance, before
 * the wait for `running` is over.
 */
export const scriptProgressSchema = {
  title: 'ScriptProgress',
  type: 'object',
  required: ['event', 'instance_id', 'client_token', 'state'],
  properties: {
    event: { type: 'string', enum: ['launched'] },
    instance_id: { type: 'string', pattern: '^i-[0-9a-f]{8,17}$' },
    client_token: { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,64}$' },
    state: { type: 'string', maxLength: 32 },
    launch_time: { type: ['string', 'null'], maxLength: 64 },
  },
} as const;
export type ScriptProgress = FromSchema<typeof scriptProgressSchema>;

export const ec2InstanceSchema = {
  title: 'ScriptInstance',
  type: 'object',
  required: [
    'id', 'name', 'state', 'public_ip', 'private_ip', 'ami', 'instance_type', 'storage_gb', 'key_name',
    'security_group_ids', 'launch_time', 'client_token', 'managed',
  ],
  properties: {
    id: { type: 'string', pattern: '^i-[0-9a-f]{8,17}$' },
    name: tagValueOrNull,
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
    /**
     * Every EC2 tag of the instance, key → value, bounded as EC2 bounds them (50 tags, keys of 128 and values
     * of 256 characters). Optional: scripts that predate it, and test fixtures, print documents without it.
     */
    tags: {
      type: 'object',
      maxProperties: 50,
      additionalProperties: { type: 'string', maxLength: 256 },
      propertyNames: { type: 'string', maxLength: 128 },
    },
  },
} as const;
export type Ec2Instance = FromSchema<typeof ec2InstanceSchema>;

/**
 * start, stop and destroy given several ids: each id either succeeded (its document in `instances`) or
 * failed on its own (in `errors`, with the exit code a run for that id alone would have ended with).
 */
export const instanceBatchOutputSchema = {
  title: 'ScriptInstanceBatch',
  type: 'object',
  required: ['instances', 'errors'],
  properties: {
    instances: { type: 'array', items: ec2InstanceSchema },
    errors: {
      type: 'array',
      items: {
        type: 'object',
        required: ['instance_id', 'exit_code', 'error'],
        properties: {
          instance_id: { type: 'string', pattern: '^i-[0-9a-f]{8,17}$' },
          exit_code: { type: 'integer', minimum: 1, maximum: 255 },
          error: scriptErrorOutputSchema.properties.error,
        },
      },
    },
  },
} as const;
export type Ec2InstanceBatch = FromSchema<typeof instanceBatchOutputSchema>;

/**
 * list_instances.sh --all reports every instance in the region, most of them not ours. An instance tagged
 * ManagedBy=ec2-creator must be a full, valid document (one bad entry spoils the list: its record could
 * otherwise be judged on a partial read); an unmanaged entry (managed: false) is only required to be an
 * object here, so that one instance someone else made cannot fail the read for everyone. The adapter
 * (app/ec2/scripts.ts) then keeps only the entries that are valid instance documents.
 */
export const instanceListOutputSchema = {
  title: 'ScriptInstanceList',
  type: 'object',
  required: ['instances'],
  properties: {
    instances: {
      type: 'array',
      items: {
        if: { type: 'object', required: ['managed'], properties: { managed: { const: false } } },
        then: { type: 'object' },
        else: ec2InstanceSchema,
      },
    },
  },
} as const;
/** What the list schema guarantees: managed entries are instance documents, the others only objects. */
export interface Ec2InstanceList {
  instances: Array<Ec2Instance | Record<string, unknown>>;
}

/** An entry of the list that is not a usable instance document (always an unmanaged one). */
export interface UnreadableInstance {
  /** Its instance id when it has a well-formed one, else null. */
  id: string | null;
  /** Which fields failed, from the schema (never the values themselves). */
  problems: string;
}

/** The list as the domain sees it: the usable documents, and what was left out. */
export interface Ec2InstanceListing {
  instances: Ec2Instance[];
  unreadable: UnreadableInstance[];
}

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

/** An IPv4 (203.0.113.0/24) or IPv6 (2001:db8::/32) block, as the script spells it. */
const CIDR_PATTERN = '^([0-9]{1,3}(\\.[0-9]{1,3}){3}/[0-9]{1,2}|[0-9a-f:]{2,39}/[0-9]{1,3})$';

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
        properties: {
          protocol: { type: 'string' },
          port: { type: ['integer', 'null'] },
          cidr: { type: 'string', maxLength: 43, pattern: CIDR_PATTERN },
        },
      },
    },
    /** Inbound rules the run revoked because they were not asked for (absent from older scripts). */
    revoked: { type: 'integer', minimum: 0 },
  },
} as const;
export type Ec2SecurityGroup = FromSchema<typeof securityGroupOutputSchema>;

/** describe_security_groups.sh: the groups asked for, in order, and the region's default VPC. */
export const securityGroupsOutputSchema = {
  title: 'ScriptSecurityGroups',
  type: 'object',
  required: ['default_vpc_id', 'groups'],
  properties: {
    default_vpc_id: { type: ['string', 'null'], pattern: '^vpc-[0-9a-f]+$' },
    groups: {
      type: 'array',
      maxItems: 5,
      items: {
        type: 'object',
        required: ['id', 'name', 'vpc_id', 'managed'],
        properties: {
          id: { type: 'string', pattern: SECURITY_GROUP_ID_PATTERN },
          name: { type: 'string', maxLength: 255, pattern: PRINTABLE },
          vpc_id: { type: ['string', 'null'], pattern: '^vpc-[0-9a-f]+$' },
          managed: { type: 'boolean' },
        },
      },
    },
  },
} as const;
export type Ec2SecurityGroups = FromSchema<typeof securityGroupsOutputSchema>;

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
