/**
 * Process entry: .env → config → store → runner → createApp → listen. SIGTERM/SIGINT stop accepting
 * connections, kill running scripts' process groups, close the database and exit.
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

export interface RunningServer {
  url: string;
  close(): Promise<void>;
}

/** Starts the service with the given environment; used by `npm start` and by the sandbox. */
export async function startServer(env: NodeJS.ProcessEnv = process.env): Promise<RunningServer> {
  const config = loadConfig(env);
  const logger = createLogger({ level: config.logLevel });
  const store = openStore(config.databasePath);
  const runner = createScriptRunner({
    scriptsDir: config.scriptsDir,
    timeoutMs: config.scriptTimeoutMs,
    logger,
    env: scriptEnvironment(config),
  });
  const notifier = createNotifier(config.email, logger);
  const deps = { store, runner, logger, config, notifier };
  const services = createServices(deps);
  const app = createApp(deps, services);

  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(config.port, config.host, (error?: Error) => (error ? reject(error) : resolve(s)));
    s.once('error', reject);
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  logger.info('listening', { url, database: config.databasePath, scripts_dir: config.scriptsDir });

  // Launches left unresolved by a crash: find their instances by client token (in the background).
  services.instances.reconcileLaunches({ requestId: 'startup' }).catch((error: unknown) => {
    logger.warn('start-up reconciliation failed', { error: error instanceof Error ? error.message : String(error) });
  });

  let closing: Promise<void> | undefined;
  return {
    url,
    close() {
      closing ??= new Promise<void>((resolve) => {
        logger.info('shutting down');
        runner.killAll();
        server.close(() => {
          store.close();
          resolve();
        });
        server.closeIdleConnections();
        setTimeout(() => server.closeAllConnections(), 10_000).unref();
      });
      return closing;
    },
  };
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
