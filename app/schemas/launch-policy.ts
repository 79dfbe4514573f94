/**
 * GET /launch-policy: what POST /instances will accept, from the server's configuration. Clients such as
 * the Jenkins create job read it at run time, so their choices follow the server instead of a copy.
 */
import type { FromSchema } from 'json-schema-to-ts';
import { EBS_MAX_GB, INSTANCE_TYPE_PATTERN } from './common.js';

export const launchPolicySchema = {
  title: 'LaunchPolicy',
  type: 'object',
  additionalProperties: false,
  required: ['allowed_instance_types', 'max_storage_gb', 'max_instances'],
  properties: {
    allowed_instance_types: {
      type: 'array',
      minItems: 1,
      uniqueItems: true,
      items: { type: 'string', pattern: INSTANCE_TYPE_PATTERN },
      description: 'ALLOWED_INSTANCE_TYPES: the only values instance_type may take.',
      examples: [['t3.micro', 't4g.micro']],
    },
    max_storage_gb: {
      type: 'integer',
      minimum: 1,
      maximum: EBS_MAX_GB,
      description: 'MAX_STORAGE_GB: the largest storage_gb a launch may ask for.',
      examples: [30],
    },
    max_instances: {
      type: 'integer',
      minimum: 0,
      description: 'MAX_INSTANCES: live managed instances at once, launches in flight included (0: no launch is allowed).',
      examples: [5],
    },
  },
} as const;
export type LaunchPolicy = FromSchema<typeof launchPolicySchema>;
