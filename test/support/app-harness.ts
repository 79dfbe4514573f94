/**
 * The service under test, in-process: createApp with a real SQLite file in a temp dir, the real runner and
 * (by default) the real scripts in aws_cli_bash_scripts/, talking to the moto_server the global fixture
 * started. Every script run is recorded with its start/end time for the assertions.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { Express } from 'express';
import { createApp, createServices, type AppDeps, type Services } from '../../app/app.js';
import { loadConfig, scriptEnvironment, scriptTimeoutsFrom, type Config } from '../../app/config.js';
import { createScriptRunner, type RunContext, type ScriptRunner } from '../../app/ec2/runner.js';
import { createLogger, type Logger } from '../../app/logger.js';
import type { Notifier } from '../../app/notify/events.js';
import type { Ec2 } from '../../app/ec2/scripts.js';
import { openStore, type Store } from '../../app/store/index.js';
import { asyncSqliteStore } from '../../app/store/async-sqlite.js';
import type { AsyncStore } from '../../app/store/ports.js';
import { openPostgresStore } from '../../app/store/postgres/index.js';
import { freshPostgresDatabase, pgRows } from './postgres.js';
import type { InstanceRow } from '../../app/store/instances-repo.js';
import request from 'supertest';
import { randomUUID } from 'node:crypto';
import { TEST_KEY_NAME, UBUNTU_X86_AMI, ec2InstanceById, launchOutsideTheService } from './ec2-reader.js';
import { testRunDir } from './global-fixture.js';
import { launchManaged } from './scripts.js';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const realScriptsDir = path.join(repoRoot, 'aws_cli_bash_scripts');
export const fixturesDir = path.join(repoRoot, 'test', 'fixtures');

export interface ScriptRun {
  script: string;
  args: readonly string[];
  startedAt: bigint;
  endedAt?: bigint;
}

export interface HarnessOptions {
  scriptsDir?: string;
  env?: Record<string, string | undefined>;
  /** The runner's timeout (SCRIPT_TIMEOUT_MS), and so every kind's unless `config.timeouts` says otherwise. */
  timeoutMs?: number;
  killGraceMs?: number;
  config?: Partial<Config>;
  /** Where lifecycle events go (none by default). */
  notifier?: Notifier;
  /** A notifier made with the harness's logger (its lines land in `logs`); wins over `notifier`. */
  notifierFor?: (logger: Logger) => Notifier;
  /** Reuse the database of an earlier harness (restart). */
  databasePath?: string;
  /** Authentication; disabled unless a test passes tokens. */
  auth?: AppDeps['auth'];
  /** Rate limiter clock/window. */
  rateLimit?: AppDeps['rateLimit'];
  /** The guardrails' time (expiry, schedules, the free-tier meter). */
  clock?: () => Date;
  /** The EC2 port (test/support/fake-ec2.ts) instead of the real scripts, for tests whose subject is not a script. */
  ec2?: Ec2;
}

export type StoreKind = 'sqlite' | 'postgres';

export interface Harness {
  app: Express;
  /** The domain services behind the app. */
  services: Services;
  /** SQLite's repositories, read and written synchronously (on PostgreSQL every use throws: use `records`). */
  store: Store;
  storeKind: StoreKind;
  /** The store the app uses, whichever it is. */
  records: AsyncStore;
  /** The SQLite file or the postgres:// URL: another harness on it is a restart. */
  databaseUrl: string;
  /** Runs SQL on the database directly, not through the service (`?` placeholders on both stores). */
  sql<T = Record<string, unknown>>(statement: string, ...params: unknown[]): Promise<T[]>;
  runner: ScriptRunner;
  databasePath: string;
  runs: ScriptRun[];
  /** Every log line (parsed JSON). */
  logs: Array<Record<string, unknown>>;
  logger: Logger;
  /** The SQLite row for an instance id, read directly. */
  row(instanceId: string): InstanceRow | undefined;
  rowCount(): number;
  /** Closes the database (and, unless keepFiles, removes the temp dir). */
  close(options?: { keepFiles?: boolean }): void;
}

/**
 * A full configuration: what loadConfig makes of an empty environment, with `overrides` over it. As there,
 * each kind of script is held to `scriptTimeoutMs` unless `timeouts` is given.
 */
export function testConfig(overrides: Partial<Config> = {}): Config {
  const defaults = loadConfig({});
  const scriptTimeoutMs = overrides.scriptTimeoutMs ?? defaults.scriptTimeoutMs;
  return { ...defaults, timeouts: scriptTimeoutsFrom({}, scriptTimeoutMs), ...overrides };
}

export function createHarness(options: HarnessOptions = {}): Harness {
  // In the run's folder, which goes with the run: a harness kept for a restart is never left behind.
  const dir = options.databasePath ? undefined : mkdtempSync(path.join(testRunDir(), 'app-'));
  const databasePath = options.databasePath ?? path.join(dir as string, 'nested', 'instances.db');
  return buildHarness(options, { kind: 'sqlite', databasePath, dir });
}

/**
 * The same harness on either store: SQLite as createHarness makes it, or a database of its own (or
 * `databaseUrl`'s, for a restart) on this worker's throwaway PostgreSQL.
 */
export async function createHarnessOn(kind: StoreKind, options: HarnessOptions & { databaseUrl?: string } = {}): Promise<Harness> {
  if (kind === 'sqlite') return createHarness({ ...options, ...(options.databaseUrl ? { databasePath: options.databaseUrl } : {}) });
  const url = options.databaseUrl ?? await freshPostgresDatabase();
  return buildHarness(options, { kind: 'postgres', url, store: await openPostgresStore(url) });
}

/** Behaviour suites run on both stores; EC2_CREATOR_TEST_STORES=sqlite narrows a run to one. */
export function storeKinds(): StoreKind[] {
  const wanted = (process.env.EC2_CREATOR_TEST_STORES ?? 'sqlite,postgres').split(',').map((k) => k.trim());
  return (['sqlite', 'postgres'] as const).filter((kind) => wanted.includes(kind));
}

type HarnessDatabase =
  | { kind: 'sqlite'; databasePath: string; dir: string | undefined }
  | { kind: 'postgres'; url: string; store: AsyncStore };

const NOT_ON_POSTGRES = new Proxy({}, {
  get(_target, property) {
    throw new Error(`h.store.${String(property)} is SQLite's: on PostgreSQL use h.records or h.sql`);
  },
}) as Store;

function buildHarness(options: HarnessOptions, database: HarnessDatabase): Harness {
  const databasePath = database.kind === 'sqlite' ? database.databasePath : ':postgres:';
  const dir = database.kind === 'sqlite' ? database.dir : undefined;
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) logs.push(JSON.parse(line));
      callback();
    },
  });
  const logger = createLogger({ level: 'debug', stream: sink });
  const config = testConfig({
    keyName: TEST_KEY_NAME,
    scriptsDir: options.scriptsDir ?? realScriptsDir,
    scriptTimeoutMs: options.timeoutMs ?? 60_000,
    ...options.config,
  });
  // Storage faults are logged naming the file.
  const store = database.kind === 'sqlite' ? openStore(databasePath, { logger }) : NOT_ON_POSTGRES;
  const records = database.kind === 'sqlite' ? asyncSqliteStore(store) : database.store;
  const inner = createScriptRunner({
    scriptsDir: config.scriptsDir,
    timeoutMs: config.scriptTimeoutMs,
    killGraceMs: options.killGraceMs ?? 1_000,
    logger,
    env: { ...scriptEnvironment(config), ...options.env },
  });
  const runs: ScriptRun[] = [];
  const runner: ScriptRunner = {
    timeoutMs: inner.timeoutMs,
    killAll: (killOptions) => inner.killAll(killOptions),
    async run(script, args, validate, ctx?: RunContext) {
      const record: ScriptRun = { script, args, startedAt: process.hrtime.bigint() };
      runs.push(record);
      try {
        return await inner.run(script, args, validate, ctx);
      } finally {
        record.endedAt = process.hrtime.bigint();
      }
    },
  };
  const deps: AppDeps = {
    store: records, runner, logger, config, notifier: options.notifierFor?.(logger) ?? options.notifier,
    auth: options.auth ?? { mode: 'disabled' }, rateLimit: options.rateLimit, clock: options.clock, ec2: options.ec2,
  };
  const services = createServices(deps); // tests look at the engine too
  const app = createApp(deps, services);
  return {
    app,
    services,
    store,
    storeKind: database.kind,
    records,
    databaseUrl: database.kind === 'sqlite' ? databasePath : database.url,
    sql: (statement, ...params) => (database.kind === 'sqlite'
      ? sqliteRows(store, statement, params)
      : postgresRows(database.url, statement, params)),
    runner,
    databasePath,
    runs,
    logs,
    logger,
    row: (id) => store.instances.findByInstanceId(id),
    rowCount: () => (store.db.prepare('SELECT count(*) AS n FROM instances').get() as { n: number }).n,
    close(closeOptions = {}) {
      if (database.kind === 'postgres') void database.store.close();
      else store.close();
      if (dir && !closeOptions.keepFiles) rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function sqliteRows<T>(store: Store, statement: string, params: unknown[]): Promise<T[]> {
  const prepared = store.db.prepare(statement);
  if (prepared.reader) return prepared.all(...params) as T[];
  prepared.run(...params);
  return [];
}

function postgresRows<T>(url: string, statement: string, params: unknown[]): Promise<T[]> {
  let n = 0;
  return pgRows<T>(url, statement.replace(/\?/g, () => `$${(n += 1)}`), params);
}

/**
 * Makes the record's launch an hour old, as for an instance EC2 forgot long after it launched it: EC2 not
 * showing it then proves it gone (just after a launch it would not: app/domain/consistency.ts).
 */
export async function launchedLongAgo(h: Harness, instanceId: string): Promise<void> {
  await h.sql('UPDATE instances SET launch_time = ? WHERE instance_id = ?', new Date(Date.now() - 3_600_000).toISOString(), instanceId);
}

/** Asserts the body is an RFC 9457 problem with the given status; returns it. */
export function expectProblem(response: { status: number; headers: Record<string, string>; body: any }, status: number): any {
  if (response.status !== status) {
    throw new Error(`expected status ${status}, got ${response.status}: ${JSON.stringify(response.body)}`);
  }
  const type = response.headers['content-type'] ?? '';
  if (!type.startsWith('application/problem+json')) throw new Error(`expected application/problem+json, got ${type}`);
  for (const field of ['type', 'title', 'status', 'detail']) {
    if (!(field in response.body)) throw new Error(`problem lacks ${field}: ${JSON.stringify(response.body)}`);
  }
  if (response.body.status !== status) throw new Error(`problem.status ${response.body.status} != ${status}`);
  return response.body;
}

/**
 * Arranges managed, running instances without running create_instance.sh for each: launched in-process
 * as the script would tag them, then recorded by one sync through the app. Returns their ids in order.
 */
export async function arrangeManagedInstances(h: Harness, names: readonly string[]): Promise<string[]> {
  const ids: string[] = [];
  for (const name of names) {
    const [id] = await launchOutsideTheService({
      imageId: UBUNTU_X86_AMI, keyName: TEST_KEY_NAME, tags: { Name: name, ManagedBy: 'ec2-creator' },
    });
    ids.push(id as string);
  }
  const synced = await request(h.app).post('/instances/sync');
  if (synced.status !== 200) throw new Error(`sync answered ${synced.status}: ${JSON.stringify(synced.body)}`);
  for (const id of ids) if (!(await h.records.instances.findByInstanceId(id))) throw new Error(`sync did not record ${id}`);
  return ids;
}

/**
 * Arranges one running instance the service already knows, for tests whose subject is not the create:
 * launched in-process as create_instance.sh launches it (tags, key pair, client token) and recorded in
 * h's store as a completed launch records it (the intent row, then EC2's id, state, addresses, group
 * and launch time), so no script runs. The Ubuntu image gives 8 GiB and the login user "ubuntu".
 * Returns the instance id.
 */
export async function arrangeRecordedInstance(h: Harness, options: { name: string; keyName?: string }): Promise<string> {
  const keyName = options.keyName ?? TEST_KEY_NAME;
  const { id, clientToken } = await launchManaged(options.name, {
    imageId: UBUNTU_X86_AMI, keyName, clientToken: `ec2c-${randomUUID()}`,
  });
  const ec2 = await ec2InstanceById(id);
  if (ec2?.State?.Name !== 'running') throw new Error(`EC2 reports ${id} as ${ec2?.State?.Name}, not running`);
  await h.records.instances.insertLaunch({
    clientToken, name: options.name, ami: UBUNTU_X86_AMI, instanceType: 't3.micro', storageGb: 8,
    keyName, securityGroupId: null, loginUser: 'ubuntu',
  });
  await h.records.instances.completeLaunch(clientToken, {
    instanceId: id,
    name: options.name,
    state: 'running',
    publicIp: ec2.PublicIpAddress ?? null,
    privateIp: ec2.PrivateIpAddress ?? null,
    storageGb: 8,
    keyName,
    securityGroupId: ec2.SecurityGroups?.[0]?.GroupId ?? null,
    launchTime: ec2.LaunchTime ? new Date(ec2.LaunchTime).toISOString() : null,
  });
  return id;
}
