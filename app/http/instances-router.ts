/**
 * Thin handlers: validate with the shared schemas, call the instances service (reads) or the lifecycle
 * service (changes), shape the response.
 */
import { Router } from 'express';
import type { Response } from 'express';
import type { InstancesService } from '../domain/instances.js';
import type { LifecycleService } from '../domain/lifecycle.js';
import type { InstanceSettings } from '../guardrails/instance-settings.js';
import {
  validateCreateInstanceRequest, validateInstanceIdParams, validateListInstancesQuery, validateUpdateInstanceRequest,
} from '../schemas/validators.js';
import { opContext } from './context.js';
import { answer, idempotencyFrom, prefersAsync, rememberFor } from './operations.js';
import { methodNotAllowed } from './problems.js';
import { check, requireJsonBody } from './validate.js';

/** RFC 9111's Warning header (code 299, "miscellaneous persistent warning"), quoted text. */
function warn(res: Response, warning: string | undefined): void {
  if (warning) res.setHeader('Warning', `299 ec2-creator "${warning.replace(/["\\]/g, '')}"`);
}

/**
 * Reads go to the instances service directly; changes run as operations of the lifecycle service (which
 * passes creates and starts through the free-tier guard); PATCH changes the guardrails (expiry, schedule).
 */
export function instancesRouter(service: InstancesService, lifecycle: LifecycleService, settings: InstanceSettings): Router {
  const router = Router();
  const idOf = (params: unknown): string => check(validateInstanceIdParams, { ...(params as object) }, 'instance id').id;

  router
    .route('/instances')
    .get(async (req, res) => {
      const query = check(validateListInstancesQuery, { ...(req.query as object) }, 'query');
      res.json(await service.list(query));
    })
    .post(requireJsonBody(), async (req, res) => {
      const body = check(validateCreateInstanceRequest, req.body, 'request body');
      const submission = await lifecycle.create(body, opContext(res), {
        idempotency: idempotencyFrom(req, body),
        remember: rememberFor(req, res, 'create'),
        onWarning: (warning) => warn(res, warning),
      });
      await answer(req, res, submission, 'create');
    })
    .all(methodNotAllowed('GET, POST'));

  // Before /instances/:id, which would read "sync" as a (malformed) instance id.
  router
    .route('/instances/sync')
    .post(async (req, res) => {
      const { operationId, done } = await lifecycle.sync(opContext(res));
      res.setHeader('Operation-Id', operationId);
      if (prefersAsync(req)) {
        res.status(202).location(`/operations/${operationId}`).setHeader('Preference-Applied', 'respond-async');
        res.json(await lifecycle.operation(operationId));
        return;
      }
      res.json({ ...(await done), operation_id: operationId });
    })
    .all(methodNotAllowed('POST'));

  router
    .route('/instances/:id')
    .get(async (req, res) => {
      res.json(await service.get(idOf(req.params), opContext(res)));
    })
    .patch(requireJsonBody(), async (req, res) => {
      const id = idOf(req.params);
      const body = check(validateUpdateInstanceRequest, req.body, 'request body');
      res.json(await settings.update(id, body, opContext(res)));
    })
    .delete(async (req, res) => {
      const id = idOf(req.params);
      const submission = await lifecycle.destroy(id, opContext(res), {
        idempotency: idempotencyFrom(req),
        remember: rememberFor(req, res, 'terminate'),
      });
      await answer(req, res, submission, 'terminate');
    })
    .all(methodNotAllowed('GET, PATCH, DELETE'));

  for (const kind of ['start', 'stop'] as const) {
    router
      .route(`/instances/:id/${kind}`)
      .post(async (req, res) => {
        const submission = await lifecycle[kind](idOf(req.params), opContext(res), {
          idempotency: idempotencyFrom(req),
          remember: rememberFor(req, res, kind),
          onWarning: (warning) => warn(res, warning),
        });
        await answer(req, res, submission, kind);
      })
      .all(methodNotAllowed('POST'));
  }

  return router;
}
