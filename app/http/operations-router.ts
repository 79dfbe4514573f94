/** GET /operations and GET /operations/{id}: follow what the service did and is doing. */
import { Router } from 'express';
import type { OperationsEngine } from '../domain/operations.js';
import { validateListOperationsQuery, validateOperationIdParams } from '../schemas/validators.js';
import { methodNotAllowed } from './problems.js';
import { check } from './validate.js';

export function operationsRouter(engine: OperationsEngine): Router {
  const router = Router();
  router
    .route('/operations')
    .get(async (req, res) => {
      const query = check(validateListOperationsQuery, { ...(req.query as object) }, 'query');
      res.json(await engine.list(query));
    })
    .all(methodNotAllowed('GET'));
  router
    .route('/operations/:id')
    .get(async (req, res) => {
      const { id } = check(validateOperationIdParams, { ...(req.params as object) }, 'operation id');
      res.json(await engine.get(id));
    })
    .all(methodNotAllowed('GET'));
  return router;
}
