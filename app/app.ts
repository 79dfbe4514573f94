/**
 * createApp(deps): the Express application — middleware, routers, the one error handler. It never
 * listens (app/server.ts does), so tests drive it in-process with supertest.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import express, { type Express } from 'express';
import { repoRoot, type Config } from './config.js';
import { createChangeTracker, createInstancesService, type InstancesService } from './domain/instances.js';
import type { OrphanScripts, ScriptRunner } from './ec2/runner.js';
import { createEc2, type Ec2 } from './ec2/scripts.js';
import { requestContext } from './http/context.js';
import { instancesRouter } from './http/instances-router.js';
import { buildOpenApiDocument, openApiRouter } from './http/openapi.js';
import { errorHandler, methodNotAllowed, notFoundHandler } from './http/problems.js';
import type { Logger } from './logger.js';
import type { Notifier } from './notify/events.js';
import type { AsyncStore } from './store/ports.js';
import { authenticate, authorize, type AuthSetup } from './http/auth.js';
import { rateLimitMutations, securityHeaders } from './http/limits.js';
import { createLifecycleService, type LifecycleService } from './domain/lifecycle.js';
import { createOperationsEngine, type OperationsEngine } from './domain/operations.js';
import { createReconciler } from './domain/reconcile.js';
import { operationsRouter } from './http/operations-router.js';
import { rememberRecorded } from './http/operations.js';
import { createEventStream, type EventStream } from './domain/event-stream.js';
import { eventsRouter } from './http/events-router.js';
import { metricsRouter, requestMetrics } from './http/metrics.js';
import { sessionRouter } from './http/session-router.js';
import { dashboardRouter } from './http/dashboard.js';
import { createSessions } from './auth/sessions.js';
import { createMetrics, type Metrics } from './metrics.js';
import { launchPolicyRouter } from './http/launch-policy-router.js';
import { createScheduler, type Scheduler } from './guardrails/scheduler.js';
import { createUsageMeter, type UsageMeter } from './guardrails/usage-meter.js';
import { createInstanceSettings, type InstanceSettings } from './guardrails/instance-settings.js';
import { usageRouter } from './http/usage-router.js';
import { silentNotifier } from './notify/events.js';

export interface AppDeps {
  /** SQLite (app/store/async-sqlite.ts over openStore) or PostgreSQL (app/store/postgres). */
  store: AsyncStore;
  runner: ScriptRunner;
  /** Scripts a killed server left running, found at start-up by whoever made the runner; none when omitted. */
  orphans?: OrphanScripts | undefined;
  logger: Logger;
  config: Config;
  /** Lifecycle events go here (email); none when omitted. */
  notifier?: Notifier;
  /**
   * Authentication, stated explicitly (createApp refuses to start without it): `{ mode: 'disabled' }` or
   * `{ mode: 'tokens', tokens }` (app/auth/tokens.ts parses them).
   */
  auth?: AuthSetup;
  /** This server, as the operations it records name it (app/domain/replicas.ts). */
  owner?: string | undefined;
  /** The time the guardrails go by: expiry, schedules, the free-tier meter (tests move it). */
  clock?: (() => Date) | undefined;
  /** Rate limiter clock and window (tests shorten them). */
  rateLimit?: { now?: () => number; windowMs?: number };
  /** The EC2 port; by default the scripts' adapters over `runner` (tests of the domain may give a fake). */
  ec2?: Ec2 | undefined;
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
export interface Services {
  instances: InstancesService;
  operations: OperationsEngine;
  lifecycle: LifecycleService;
  events: EventStream;
  metrics: Metrics;
  /** Expiries and off-hours schedules (server.ts runs it every SCHEDULER_INTERVAL_S; tests call tick). */
  scheduler: Scheduler;
  usage: UsageMeter;
  settings: InstanceSettings;
}

/** What may wait in memory for one event-stream client; beyond it, it reads on from the store. */
const EVENT_BACKLOG_BYTES = 256 * 1024;

/** How often a replica with a free script slot looks for operations other replicas queued. */
const QUEUE_POLL_MS = 500;

export function createServices(deps: AppDeps): Services {
  const { store, config, logger } = deps;
  const metrics = createMetrics();
  const ec2 = deps.ec2 ?? createEc2(metrics.instrument(deps.runner), { coalesceWindowMs: config.coalesceWindowMs, pollIntervalS: config.pollIntervalS });
  const changes = createChangeTracker();
  const instances = createInstancesService({
    instances: store.instances,
    ec2,
    logger,
    changes,
    keyFiles: { keyName: config.keyName, keyFile: config.keyFile },
    describeTimeoutMs: config.timeouts.describe,
    maxConcurrentReads: config.maxConcurrentReads,
    consistencyWindowMs: config.eventualConsistencyS * 1000,
  });
  const operations = createOperationsEngine({
    store,
    logger,
    owner: deps.owner,
    maxConcurrent: config.maxConcurrentScripts,
    maxQueued: config.maxQueuedOperations,
    idempotencyTtlHours: config.idempotencyTtlHours,
    // Replicas sharing PostgreSQL take each other's queued operations whenever a script slot is free.
    shareQueue: store.dialect === 'postgres' && deps.owner !== undefined ? { pollMs: QUEUE_POLL_MS } : undefined,
    rememberRecorded,
  });
  const reconciler = createReconciler({
    instances: store.instances,
    ec2,
    logger,
    describeTimeoutMs: config.timeouts.describe,
    isBusy: (instanceId) => operations.activeOn(instanceId) !== undefined,
    busyAnywhere: async () =>
      new Set((await store.operations.unfinished()).flatMap((op) => (op.instance_id === null ? [] : [op.instance_id]))),
    changes,
    consistencyWindowMs: config.eventualConsistencyS * 1000,
  });
  const clock = deps.clock ?? (() => new Date());
  const usage = createUsageMeter({ store, config: config.guardrails, clock });
  const lifecycle = createLifecycleService({
    engine: operations,
    store,
    ec2,
    reconciler,
    changes,
    policy: {
      allowedInstanceTypes: config.allowedInstanceTypes,
      maxStorageGb: config.maxStorageGb,
      maxInstances: config.maxInstances,
    },
    keyName: config.keyName,
    keyFiles: { keyName: config.keyName, keyFile: config.keyFile },
    logger,
    notifier: deps.notifier,
    timeouts: config.timeouts,
    orphans: deps.orphans,
    guardrails: config.guardrails,
    clock,
    freeTier: usage,
    launchLookupMs: config.launchLookupS * 1000,
    consistencyWindowMs: config.eventualConsistencyS * 1000,
  });
  const events = createEventStream({
    store,
    logger,
    keyFiles: { keyName: config.keyName, keyFile: config.keyFile },
    // PostgreSQL also says at once when another replica recorded events; the look is the fallback.
    pollMs: store.dialect === 'postgres' ? 1_000 : 250,
    stallMs: config.events.stallS * 1000,
    maxBacklogBytes: EVENT_BACKLOG_BYTES,
  });
  metrics.readFrom({
    queue: () => operations.stats(),
    eventClients: () => events.clients,
    async instancesByState() {
      const byState: Record<string, number> = {};
      for (const row of await store.instances.live()) byState[row.state] = (byState[row.state] ?? 0) + 1;
      return byState;
    },
    operationsByKindAndStatus: () => store.operations.countByKindAndStatus(),
  });
  const scheduler = createScheduler({
    store, lifecycle, config: config.guardrails, clock, logger, notifier: deps.notifier ?? silentNotifier,
    keyFiles: { keyName: config.keyName, keyFile: config.keyFile },
  });
  const settings = createInstanceSettings({
    instances: store.instances, ec2, config: config.guardrails, clock, logger,
    keyFiles: { keyName: config.keyName, keyFile: config.keyFile }, describeTimeoutMs: config.timeouts.describe,
  });
  return { instances, operations, lifecycle, events, metrics, scheduler, usage, settings };
}

export function createApp(deps: AppDeps, services = createServices(deps)): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');
  // Behind a TLS-terminating proxy named in TRUST_PROXY, req.secure and req.ip are what the proxy says.
  app.set('trust proxy', deps.config.trustProxy);

  // Headers first (every answer carries them), then who is calling, may they,
  // and how often; all before the body is parsed, so strangers cannot make us read 16 kB bodies.
  if (!deps.auth) throw new Error('createApp: deps.auth is required ({ mode: "disabled" } or { mode: "tokens", tokens })');
  app.use(requestMetrics(services.metrics));
  app.use(securityHeaders());
  app.use(requestContext(deps.logger));
  const sessionTtlMs = deps.config.sessionTtlHours * 3_600_000;
  const sessions = deps.auth.mode === 'tokens'
    ? createSessions({ store: deps.store.sessions, tokens: deps.auth.tokens, ttlMs: sessionTtlMs })
    : undefined;
  app.use(authenticate(deps.auth, {
    logger: deps.logger, publicDocs: deps.config.publicDocs, metricsPublic: deps.config.metricsPublic, sessions,
  }));
  app.use(authorize());
  app.use(rateLimitMutations({ limit: deps.config.rateLimitPerMinute, ...deps.rateLimit }));
  app.use(express.json({ limit: BODY_LIMIT, strict: true, type: ['application/json', 'application/*+json'] }));

  app.route('/health').get((_req, res) => {
    res.json({ status: 'ok' });
  }).all(methodNotAllowed('GET'));
  // Liveness stays 200 while draining, readiness says "send no more";
  // during a drain every answer closes its connection, so keep-alive clients move on.
  app.route('/health/live').get((_req, res) => {
    res.json({ status: 'ok' });
  }).all(methodNotAllowed('GET'));
  app.route('/health/ready').get(async (_req, res) => {
    if (services.operations.draining) res.status(503).setHeader('Retry-After', '5').json({ status: 'draining' });
    // The database deleted, replaced, full, failing or out of reach: changes would be refused (the log says why).
    else if (!(await deps.store.health()).ok) res.status(503).setHeader('Retry-After', '30').json({ status: 'storage-unavailable' });
    else res.json({ status: 'ok' });
  }).all(methodNotAllowed('GET'));
  app.use((_req, res, next) => {
    if (services.operations.draining) res.setHeader('Connection', 'close');
    next();
  });
  app.use(dashboardRouter());
  app.use(sessionRouter({ sessions, ttlMs: sessionTtlMs, logger: deps.logger }));
  app.use(metricsRouter(services.metrics));
  app.use(operationsRouter(services.operations));
  app.use(eventsRouter({
    stream: services.events, logger: deps.logger, maxClients: deps.config.events.maxClients, heartbeatS: deps.config.events.heartbeatS,
  }));
  app.use(launchPolicyRouter(deps.config));
  app.use(openApiRouter(buildOpenApiDocument(packageVersion())));
  app.use(usageRouter(services.usage));
  app.use(instancesRouter(services.instances, services.lifecycle, services.settings));

  app.use(notFoundHandler());
  app.use(errorHandler(deps.logger));
  return app;
}
