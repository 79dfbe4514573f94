/** GET /usage: the free-tier meter for a month. */
import { Router } from 'express';
import { ValidationError } from '../domain/errors.js';
import type { UsageMeter } from '../guardrails/usage-meter.js';
import { validateUsageQuery } from '../schemas/validators.js';
import { methodNotAllowed } from './problems.js';
import { check } from './validate.js';

export function usageRouter(usage: UsageMeter): Router {
  const router = Router();
  router
    .route('/usage')
    .get(async (req, res) => {
      const { month } = check(validateUsageQuery, { ...(req.query as object) }, 'query');
      try {
        res.json(await usage.report(month));
      } catch (error) {
        if (error instanceof RangeError) throw new ValidationError(error.message, [{ field: 'month', message: error.message }]);
        throw error;
      }
    })
    .all(methodNotAllowed('GET'));
  return router;
}
