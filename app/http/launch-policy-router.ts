/** GET /launch-policy: the configured launch limits, readable with any token (viewer is enough). */
import { Router } from 'express';
import type { Config } from '../config.js';
import type { LaunchPolicy } from '../schemas/launch-policy.js';
import { methodNotAllowed } from './problems.js';

export function launchPolicyRouter(
  config: Pick<Config, 'allowedInstanceTypes' | 'maxStorageGb' | 'maxInstances'>,
): Router {
  // Configuration is read once at start-up, so the answer is built once too.
  const policy: LaunchPolicy = {
    allowed_instance_types: [...config.allowedInstanceTypes],
    max_storage_gb: config.maxStorageGb,
    max_instances: config.maxInstances,
  };
  const router = Router();
  router
    .route('/launch-policy')
    .get((_req, res) => {
      res.json(policy);
    })
    .all(methodNotAllowed('GET'));
  return router;
}
