/** Thin handlers: validate with the shared schemas, call the instances service, shape the response. */
import { Router } from 'express';
import type { InstancesService } from '../domain/instances.js';
import {
  validateCreateInstanceRequest, validateInstanceIdParams, validateListInstancesQuery,
} from '../schemas/validators.js';
import { opContext } from './context.js';
import { methodNotAllowed } from './problems.js';
import { check, requireJsonBody } from './validate.js';

export function instancesRouter(service: InstancesService): Router {
  const router = Router();
  const idOf = (params: unknown): string => check(validateInstanceIdParams, { ...(params as object) }, 'instance id').id;

  router
    .route('/instances')
    .get((req, res) => {
      const query = check(validateListInstancesQuery, { ...(req.query as object) }, 'query');
      res.json(service.list(query));
    })
    .post(requireJsonBody(), async (req, res) => {
      const body = check(validateCreateInstanceRequest, req.body, 'request body');
      const instance = await service.create(body, opContext(res));
      res.status(201).location(`/instances/${instance.id}`).json(instance);
    })
    .all(methodNotAllowed('GET, POST'));

  router
    .route('/instances/:id')
    .get(async (req, res) => {
      res.json(await service.get(idOf(req.params), opContext(res)));
    })
    .delete(async (req, res) => {
      await service.destroy(idOf(req.params), opContext(res));
      res.status(204).end();
    })
    .all(methodNotAllowed('GET, DELETE'));

  router
    .route('/instances/:id/start')
    .post(async (req, res) => {
      res.json(await service.start(idOf(req.params), opContext(res)));
    })
    .all(methodNotAllowed('POST'));

  router
    .route('/instances/:id/stop')
    .post(async (req, res) => {
      res.json(await service.stop(idOf(req.params), opContext(res)));
    })
    .all(methodNotAllowed('POST'));

  return router;
}
