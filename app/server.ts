/**
 * Process entry: .env → config → the SQLite file's writer lock → listen → store → replica registration →
 * runner → createApp → start-up recovery. Nothing is written before the lock is held and the port is bound,
 * so a second server on the same SQLite file, or one whose port is taken, stops without touching the data.
 * On PostgreSQL several servers share the database as replicas (app/domain/replicas.ts). SIGTERM/SIGINT drain
 * (readiness 503, new changes 503, in-flight work gets most of SHUTDOWN_TIMEOUT_MS, leftovers are killed and
 * marked interrupted), close the listener, the database and the lock, and exit 0 within SHUTDOWN_TIMEOUT_MS.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import { readlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { config as loadDotenv } from 'dotenv';
import { createApp, createServices } from './app.js';
import { ConfigError, loadConfig, scriptEnvironment } from './config.js';
import { InterruptedError } from './domain/errors.js';
import { createScriptRunner, orphanScripts, type ScriptRunner } from './ec2/runner.js';
import { createLogger, type Logger } from './logger.js';
import { createNotifier } from './notify/index.js';
import { DatabaseLockedError, StorageOpenError } from './store/errors.js';
import { openStore } from './store/index.js';
import { asyncSqliteStore } from './store/async-sqlite.js';
import type { AsyncStore } from './store/ports.js';
import { describeUrl, openPostgresStore } from './store/postgres/index.js';
import { joinReplicas, type Replica } from './domain/replicas.js';
import { lockDatabase } from './store/lock.js';
import { registerSecretsFromEnv } from './redact.js';
import { resolveAuth } from './auth/setup.js';
import { answerClientErrors } from './http/client-errors.js';
import { applyServerTimeouts, httpServerOptions } from './http/limits.js';

export interface RunningServer {
  url: string;
  close(): Promise<void>;
}

/** Starts the service with the given environment; used by `npm start` and by the sandbox. */
export async function startServer(env: NodeJS.ProcessEnv = process.env): Promise<RunningServer> {
  const config = loadConfig(env);
  const logger = createLogger({ level: config.logLevel });
  // Mask secrets in every log line; resolve API tokens (generated on first start).
  registerSecretsFromEnv(process.env);
  registerSecretsFromEnv(env);
  const auth = resolveAuth(config.auth, logger);

  // One writer per database, before anything is written: a second server would "recover" the first one's
  // running operations as interrupted. The kernel drops the lock when this process ends, however it ends.
  // (PostgreSQL lets several servers in: each takes over only the work of servers whose lease ran out.)
  const sqlitePath = config.databasePath;
  const lock = sqlitePath === null ? undefined : openingDatabase(sqlitePath, () => lockDatabase(sqlitePath));
  if (lock) logger.info('database locked for this server', { database: sqlitePath, lock_file: lock.lockFile, pid: process.pid });

  // Requests that arrive before the app is ready wait for it (a start-up that fails closes the listener).
  let ready!: (app: (req: IncomingMessage, res: ServerResponse) => void) => void;
  const appReady = new Promise<(req: IncomingMessage, res: ServerResponse) => void>((resolve) => (ready = resolve));
  let handler = (req: IncomingMessage, res: ServerResponse): void => {
    void appReady.then((app) => app(req, res));
  };
  let server: Server | undefined;
  let store: AsyncStore | undefined;
  let replica: Replica | undefined;
  let started;
  try {
    // The port before the store: a port clash stops start-up before migrations or recovery run.
    server = await listen(createServer(httpServerOptions(config.http), (req, res) => handler(req, res)), config);
    if (config.postgresUrl !== null) {
      try {
        store = await openPostgresStore(config.postgresUrl, { logger });
      } catch (error) {
        throw new ConfigError('DATABASE_URL', error instanceof Error ? error.message : String(error));
      }
    } else {
      const file = sqlitePath as string;
      store = asyncSqliteStore(openingDatabase(file, () => openStore(file, { logger, watchIntervalMs: 1_000 })));
    }
    // The runner and the finder of scripts a killed server left running are made from one description of
    // the scripts, so a script is recognised by the same path (and stopped with the same grace) it ran with.
    const scripts = { scriptsDir: config.scriptsDir };
    const runner = stoppableRunner(createScriptRunner({
      ...scripts,
      timeoutMs: config.scriptTimeoutMs,
      logger,
      env: scriptEnvironment(config),
    }));
    const orphans = orphanScripts(scripts);
    const notifier = createNotifier(config.email, logger, config.webhooks);
    replica = await joinReplicas({
      store,
      shared: config.postgresUrl !== null,
      leaseTimeoutMs: config.leaseTimeoutS * 1000,
      ...thisMachine(),
      pid: process.pid,
      logger,
      newId: () => `replica-${randomUUID()}`,
    });
    const deps = { store, runner, orphans, logger, config, notifier, auth, owner: replica.id };
    const services = createServices(deps);
    const app = createApp(deps, services);
    // Operations a crash left queued/running (on SQLite: any; on PostgreSQL: those of servers whose lease
    // ran out) are marked interrupted before the first request is taken (a request that arrives meanwhile
    // waits); their instances are reconciled with EC2 in the background.
    const recovering = services.lifecycle.recover({ requestId: 'startup' }, await replica.startUpScope());
    const warn = (error: unknown) => {
      logger.warn('start-up reconciliation failed', { error: error instanceof Error ? error.message : String(error) });
    };
    const settled = recovering.settled.catch(() => undefined);
    const recovery = recovering.done.catch(warn);
    void settled.then(() => {
      handler = app;
      ready(app);
    });
    started = { server, store, runner, notifier, services, recovery, replica };
  } catch (error) {
    server?.close();
    await replica?.leave().catch(() => undefined);
    await store?.close();
    lock?.release();
    throw error;
  }
  const { runner, notifier, services, recovery } = started;
  const listening = started.server;
  applyServerTimeouts(listening, config.http);
  answerClientErrors(listening, logger);
  const address = listening.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  lock?.describe({ url });
  logger.info('listening', {
    url, database: config.postgresUrl === null ? config.databasePath : describeUrl(config.postgresUrl), scripts_dir: config.scriptsDir,
    replica: started.replica.id,
  });
  const member = started.replica;
  member.start(services.lifecycle, url, async () => {
    runner.killAll({ force: true });
    await services.operations.interruptActive('interrupted: another server took this one for dead (its lease ran out) and took over its work');
  });

  // Periodic reconciliation and idempotency-key purge: on one server at a time where several share the database.
  const timers: NodeJS.Timeout[] = [];
  if (config.syncIntervalS > 0) {
    timers.push(setInterval(() => {
      if (services.operations.draining) return;
      background(logger, 'periodic reconciliation failed', () =>
        member.asDuty('periodic-sync', async () => (await services.lifecycle.sync({ requestId: 'periodic-sync' })).done));
    }, config.syncIntervalS * 1000));
  }
  timers.push(setInterval(() => background(logger, 'idempotency key purge failed', () =>
    member.asDuty('purge-idempotency-keys', () => services.operations.purgeIdempotencyKeys())), 3_600_000));
  const purgeEvents = () => background(logger, 'event purge failed', () =>
    member.asDuty('purge-events', () => services.events.purge(config.events.retentionHours)));
  purgeEvents();
  timers.push(setInterval(purgeEvents, 3_600_000));
  // Expiries and schedules, on one server at a time; the first look follows start-up's reconciliation, so an
  // action that came due while no server ran is judged on what EC2 says now, and carried out once.
  const schedule = () => {
    if (services.operations.draining) return;
    background(logger, 'the scheduler failed', () => member.asDuty('scheduler', () => services.scheduler.tick()));
  };
  if (config.guardrails.schedulerIntervalS > 0) {
    void recovery.then(schedule);
    timers.push(setInterval(schedule, config.guardrails.schedulerIntervalS * 1000));
  }
  for (const timer of timers) timer.unref();

  const open = started.store;
  let closing: Promise<void> | undefined;
  return {
    url,
    /**
     * Graceful shutdown within SHUTDOWN_TIMEOUT_MS: readiness answers 503 and new changes are refused at
     * once; operations in flight (and the requests waiting for them) get the time but a last quarter (at
     * most 2 s); what still runs then is marked interrupted, its process groups are killed and no script
     * may start any more (each leads its own group and would outlive us); what is left of the time
     * answers the waiting requests, closes the listener, waits for notifications, and closes the database
     * and its lock.
     */
    close() {
      closing ??= (async () => {
        const deadline = Date.now() + config.shutdownTimeoutMs;
        const left = () => Math.max(0, deadline - Date.now());
        const killAt = deadline - Math.min(2_000, Math.floor(config.shutdownTimeoutMs / 4));
        services.operations.beginShutdown();
        services.events.close(); // open streams would hold the listener open
        for (const timer of timers) clearInterval(timer);
        logger.info('shutting down', { ...services.operations.stats(), shutdown_timeout_ms: config.shutdownTimeoutMs });
        listening.closeIdleConnections();

        if (!(await settlesWithin(services.operations.idle(), Math.max(0, killAt - Date.now())))) {
          runner.stop();
          const interrupted = await services.operations.interruptActive(
            `interrupted: could not finish within SHUTDOWN_TIMEOUT_MS (${config.shutdownTimeoutMs} ms after the shutdown began)`,
          );
          logger.warn('shutdown timeout: killing what still runs', { operation_ids: interrupted });
          await settlesWithin(services.operations.idle(), left()); // let the waiting requests answer
        }
        await settlesWithin(recovery, left());
        runner.stop(); // whatever still runs now would outlive the process

        const closed = new Promise<void>((resolve) => listening.close(() => resolve()));
        listening.closeIdleConnections();
        if (!(await settlesWithin(closed, left()))) {
          listening.closeAllConnections();
          await settlesWithin(closed, 1_000); // the sockets are destroyed: only their close events are awaited
        }
        await settlesWithin(notifier.idle(), left());
        const leaving = member.leave().catch((error: unknown) => {
          logger.warn('could not leave the replicas table; the lease runs out instead', { error: error instanceof Error ? error.message : String(error) });
        });
        await settlesWithin(leaving, left());
        await settlesWithin(open.close(), left());
        lock?.release();
        logger.info('shut down');
      })();
      return closing;
    },
  };
}

/** Opening the database (or its lock): a failure names DATABASE_URL and the path; a held lock says who holds it. */
function openingDatabase<T>(databasePath: string, open: () => T): T {
  try {
    return open();
  } catch (error) {
    if (error instanceof StorageOpenError) throw new ConfigError('DATABASE_URL', error.message);
    if (error instanceof DatabaseLockedError) throw error;
    throw new ConfigError('DATABASE_URL', `cannot open the SQLite database ${databasePath}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/** Binds HOST:PORT; a clash or a bad address names the variable. */
async function listen(server: Server, config: { host: string; port: number }): Promise<Server> {
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.port, config.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return server;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const where = `${config.host}:${config.port}`;
    if (code === 'EADDRINUSE') throw new ConfigError('PORT', `${where} is already in use`);
    if (code === 'EACCES') throw new ConfigError('PORT', `not allowed to listen on ${where}`);
    if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') throw new ConfigError('HOST', `cannot listen on ${where}: no such local address`);
    throw error;
  }
}

/**
 * The runner, with a stop: after it no script starts (an operation that goes on after its script was killed,
 * e.g. a launch looking for its instance, would leave a new one running past the process's exit) and
 * every one still running is killed.
 */
function stoppableRunner(runner: ScriptRunner): ScriptRunner & { stop(): void } {
  let stopped = false;
  return {
    ...runner,
    run(script, args, validate, ctx) {
      if (stopped) return Promise.reject(new InterruptedError(`${script} was not started: the service is shutting down`));
      return runner.run(script, args, validate, ctx);
    },
    stop() {
      stopped = true;
      runner.killAll({ force: true });
    },
  };
}

/** Runs periodic work; a failure (a synchronous refusal included) is logged, never thrown out of a timer. */
function background(logger: Logger, what: string, work: () => unknown): void {
  try {
    void Promise.resolve(work()).catch((error: unknown) => {
      logger.warn(what, { error: error instanceof Error ? error.message : String(error) });
    });
  } catch (error) {
    logger.warn(what, { error: error instanceof Error ? error.message : String(error) });
  }
}

/**
 * This machine as replicas tell it apart: its host name, and where Linux says, its pid namespace (containers
 * that share a host name need not share pids: there a pid is only compared within one namespace).
 */
function thisMachine(): { host: string; isAlive?: (pid: number) => boolean } {
  try {
    const namespace = /\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/pid'))?.[1];
    if (namespace) return { host: `${hostname()} (pid namespace ${namespace})`, isAlive: processIsAlive };
  } catch {
    // no /proc: the lease alone tells a dead replica
  }
  return { host: hostname() };
}

/** Whether a process of this machine runs (EPERM: it does, as another user). */
function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
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
    const message = error instanceof ConfigError
      ? `invalid configuration: ${error.message}`
      : error instanceof DatabaseLockedError ? error.message : String(error);
    process.stderr.write(`ec2-creator: ${message}\n`);
    process.exit(1);
  }
  // The first SIGTERM or SIGINT starts the graceful shutdown; later ones are ignored rather than killing
  // the process half way: Ctrl-C on `npm start` delivers SIGINT twice (from the terminal and from npm).
  const shutDown = (): void => {
    running.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  let signalled = false;
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      if (signalled) return;
      signalled = true;
      shutDown();
    });
  }
}

const entry = process.argv[1];
const invokedDirectly = entry !== undefined && import.meta.url === pathToFileURL(path.resolve(entry)).href;
if (invokedDirectly) await main();
