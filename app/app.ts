/**
 * createApp(deps): the Express application — middleware, routers, the one error handler. It never
 * listens (app/server.ts does), so tests drive it in-process with supertest.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import express, { type Express } from 'express';
import { repoRoot, type Config } from './config.js';
import { createInstancesService, type InstancesService } from './domain/instances.js';
import type { ScriptRunner } from './ec2/runner.js';
import { createEc2 } from './ec2/scripts.js';
import { requestContext } from './http/context.js';
import { instancesRouter } from './http/instances-router.js';
import { buildOpenApiDocument, openApiRouter } from './http/openapi.js';
import { errorHandler, methodNotAllowed, notFoundHandler } from './http/problems.js';
import type { Logger } from './logger.js';
import type { Notifier } from './notify/events.js';
import type { Store } from './store/index.js';

export interface AppDeps {
  store: Store;
  runner: ScriptRunner;
  logger: Logger;
  config: Pick<Config, 'keyName' | 'allowedInstanceTypes' | 'maxStorageGb'>;
  /** Lifecycle events go here (email); none when omitted. */
  notifier?: Notifier;
}

export const BODY_LIMIT = '16kb';

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(path.join(repoRoot(), 'package.json'), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : '0.0.0';
  } catch {
    return '0.0.0';
  }
}

/** The domain services built from the dependencies (server.ts also uses them for start-up reconciliation). */
export function createServices(deps: AppDeps): { instances: InstancesService } {
  return {
    instances: createInstancesService({
      instances: deps.store.instances,
      ec2: createEc2(deps.runner),
      policy: {
        keyName: deps.config.keyName,
        allowedInstanceTypes: deps.config.allowedInstanceTypes,
        maxStorageGb: deps.config.maxStorageGb,
      },
      logger: deps.logger,
      notifier: deps.notifier,
    }),
  };
}

export function createApp(deps: AppDeps, services = createServices(deps)): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');

  app.use(requestContext(deps.logger));
  app.use(express.json({ limit: BODY_LIMIT, strict: true, type: ['application/json', 'application/*+json'] }));

  app.route('/health').get((_req, res) => {
    res.json({ status: 'ok' });
  }).all(methodNotAllowed('GET'));
  app.use(openApiRouter(buildOpenApiDocument(packageVersion())));
  app.use(instancesRouter(services.instances));

  app.use(notFoundHandler());
  app.use(errorHandler(deps.logger));
  return app;
}
