/** The launch policy: what a create may ask for, as the server is configured. */
import { launchPolicySchema } from '../../schemas/launch-policy.js';
import { json, type Doc } from './shared.js';

export const launchPolicyPaths: Doc = {
  '/launch-policy': {
    get: {
      operationId: 'getLaunchPolicy',
      summary: 'The launch policy: allowed instance types, the storage cap and the instance quota (any role)',
      responses: { '200': json('The launch policy POST /instances enforces', 'LaunchPolicy') },
    },
  },
};

export const launchPolicySchemas: Doc = { LaunchPolicy: launchPolicySchema };
