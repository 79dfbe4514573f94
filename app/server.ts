/**
 * Process entry: .env → config → store → runner → createApp → start-up recovery → listen. SIGTERM/SIGINT
 * drain (readiness 503, new changes 503, in-flight work gets SHUTDOWN_TIMEOUT_MS, leftovers are killed and
 * marked interrupted), close the listener and the database, and exit 0.
 */
import type { Server } from 'node:http';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { config as loadDotenv } from 'dotenv';
import { createApp, createServices } from './app.js';
import { ConfigError, loadConfig, scriptEnvironment } from './config.js';
import { createScriptRunner } from './ec2/runner.js';
import { createLogger } from './logger.js';
import { createNotifier } from './notify/index.js';
import { openStore } from './store/index.js';
// --- security (issue 6) ---
import { registerSecretsFromEnv } from './auth/redact.js';
import { resolveAuth } from './auth/setup.js';
import { applyServerTimeouts } from './http/limits.js';

export interface RunningServer {
  url: string;
  close(): Promise<void>;
}

/** Starts the service with the given environment; used by `npm start` and by the sandbox. */
export async function startServer(env: NodeJS.ProcessEnv = process.env): Promise<RunningServer> {
  const config = loadConfig(env);
  const logger = createLogger({ level: config.logLevel });
  // --- security (issue 6): mask secrets in every log line; resolve API tokens (generated on first start) ---
  registerSecretsFromEnv(process.env);
  registerSecretsFromEnv(env);
  const auth = resolveAuth(config.auth, logger);
  // --- end security ---
  const store = openStore(config.databasePath);
  const runner = createScriptRunner({
    scriptsDir: config.scriptsDir,
    timeoutMs: config.scriptTimeoutMs,
    logger,
    env: scriptEnvironment(config),
  });
  const notifier = createNotifier(config.email, logger);
  const deps = { store, runner, logger, config, notifier, auth /* security (issue 6) */ };
  const services = createServices(deps);
  const app = createApp(deps, services);
  // --- lifecycle engine (issue 5): operations a crash left queued/running are marked interrupted right now
  // (synchronously, before the first request); their instances are reconciled with EC2 in the background.
  const recovery = services.lifecycle.recover({ requestId: 'startup' }).catch((error: unknown) => {
    logger.warn('start-up reconciliation failed', { error: error instanceof Error ? error.message : String(error) });
  });
  // --- end lifecycle

  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(config.port, config.host, (error?: Error) => (error ? reject(error) : resolve(s)));
    s.once('error', reject);
  });
  applyServerTimeouts(server, config.http); // security (issue 6): slow clients
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  logger.info('listening', { url, database: config.databasePath, scripts_dir: config.scriptsDir });

  // --- lifecycle engine (issue 5): periodic reconciliation and idempotency-key purge ---
  const timers: NodeJS.Timeout[] = [];
  if (config.syncIntervalS > 0) {
    timers.push(setInterval(() => {
      if (services.operations.draining) return;
      services.lifecycle.sync({ requestId: 'periodic-sync' }).done.catch((error: unknown) => {
        logger.warn('periodic reconciliation failed', { error: error instanceof Error ? error.message : String(error) });
      });
    }, config.syncIntervalS * 1000));
  }
  timers.push(setInterval(() => services.operations.purgeIdempotencyKeys(), 3_600_000));
  for (const timer of timers) timer.unref();

  let closing: Promise<void> | undefined;
  return {
    url,
    /**
     * Graceful shutdown: readiness answers 503 and new changes are refused at once; operations in flight
     * (and the requests waiting for them) get SHUTDOWN_TIMEOUT_MS; what still runs then is marked
     * interrupted and its process groups killed; then the listener closes, idle connections are dropped,
     * pending notifications get what is left of the bound, and the database is closed.
     */
    close() {
      closing ??= (async () => {
        const deadline = Date.now() + config.shutdownTimeoutMs;
        const left = () => Math.max(0, deadline - Date.now());
        services.operations.beginShutdown();
        for (const timer of timers) clearInterval(timer);
        logger.info('shutting down', { ...services.operations.stats(), shutdown_timeout_ms: config.shutdownTimeoutMs });
        server.closeIdleConnections();

        if (!(await settlesWithin(services.operations.idle(), left()))) {
          const interrupted = services.operations.interruptActive(
            `interrupted: still in flight ${config.shutdownTimeoutMs} ms after the shutdown began`,
          );
          logger.warn('shutdown timeout: killing what still runs', { operation_ids: interrupted });
          runner.killAll({ force: true });
          await settlesWithin(services.operations.idle(), 2_000); // let the waiting requests answer
        }
        await settlesWithin(recovery, left());

        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        if (!(await settlesWithin(closed, Math.max(left(), 1_000)))) {
          server.closeAllConnections();
          await settlesWithin(closed, 1_000);
        }
        await settlesWithin(notifier.idle(), left());
        store.close();
        logger.info('shut down');
      })();
      return closing;
    },
  };
}

/** Whether `promise` settled within `ms` (it is never cancelled). */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true, () => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function main(): Promise<void> {
  loadDotenv({ quiet: true });
  let running: RunningServer;
  try {
    running = await startServer();
  } catch (error) {
    const message = error instanceof ConfigError ? `invalid configuration: ${error.message}` : String(error);
    process.stderr.write(`ec2-creator: ${message}\n`);
    process.exit(1);
  }
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      running.close().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    });
  }
}

const entry = process.argv[1];
const invokedDirectly = entry !== undefined && import.meta.url === pathToFileURL(path.resolve(entry)).href;
if (invokedDirectly) await main();
