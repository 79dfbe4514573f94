/**
 * Environment → validated, typed configuration, read once at start-up. A bad value throws a ConfigError
 * naming the variable; app/server.ts prints it and exits non-zero. The AWS CLI's own variables
 * (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL, …) are not read here: they pass through to the scripts.
 */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, instanceTypeList, readVariable, wholeNumber, type Env } from './env.js';
import { loadEmailConfig, loadWebhookConfig, type EmailConfig, type WebhookConfig } from './notify/config.js';
import { loadSecurityConfig, type SecurityConfig } from './auth/config.js';
import { INSTANCE_TYPE_PATTERN, KEY_NAME_PATTERN } from './schemas/common.js';
import { loadGuardrailsConfig, type GuardrailsConfig } from './guardrails/config.js';

/** Read scripts (describes) running at once when MAX_CONCURRENT_READS is not set. */
const DEFAULT_MAX_CONCURRENT_READS = 4;

export const LOG_LEVELS = ['error', 'warn', 'info', 'http', 'verbose', 'debug', 'silly'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Config {
  port: number;
  host: string;
  /** Absolute path of the SQLite file, or ':memory:'; null when the store is PostgreSQL. */
  databasePath: string | null;
  /** The PostgreSQL database (postgres://…), or null for SQLite. */
  postgresUrl: string | null;
  scriptsDir: string;
  keyName: string;
  /** Where people keep KEY_NAME's private key, as ssh_string names it; null: ~/.ssh/<KEY_NAME>.pem. */
  keyFile: string | null;
  allowedInstanceTypes: string[];
  maxStorageGb: number;
  scriptTimeoutMs: number;
  logLevel: LogLevel;
  /** Email on lifecycle events; null when SMTP_HOST and NOTIFICATION_EMAIL are unset. */
  email: EmailConfig | null;
  /** Webhooks on lifecycle events; null when WEBHOOK_URLS is unset. */
  webhooks: WebhookConfig | null;
  /** Mutating script runs at once (create, start, stop, terminate). */
  maxConcurrentScripts: number;
  /** Operations waiting for a slot; beyond it 503. */
  maxQueuedOperations: number;
  /** How long a start, stop or destroy waits for others of its kind to share one script run (0: never). */
  coalesceWindowMs: number;
  /** Read scripts (describe) running at once; further reads wait in line, never refused. */
  maxConcurrentReads: number;
  /** Seconds between a script's reads of EC2 while it waits for a state (create, start, stop). */
  pollIntervalS: number;
  /** How long a launch whose outcome is unknown is looked for by its client token before its request is answered. */
  launchLookupS: number;
  /** How long after a launch EC2 not showing the instance (or its client token) proves nothing. */
  eventualConsistencyS: number;
  /** Runner timeout per script kind (ms). */
  timeouts: ScriptTimeouts;
  /** How long shutdown waits for in-flight work before killing it. */
  shutdownTimeoutMs: number;
  /** Reconcile with EC2 every this many seconds; 0 = never. */
  syncIntervalS: number;
  /**
   * How long a server that stopped renewing its lease counts as alive (seconds); then another server sharing
   * the PostgreSQL database takes over its operations. Renewed every third of it.
   */
  leaseTimeoutS: number;
  /** Idempotency keys are kept at least this long. */
  idempotencyTtlHours: number;
  /** The event stream (GET /events): how long events are kept, how many streams at once, the heartbeat. */
  events: { retentionHours: number; maxClients: number; heartbeatS: number; stallS: number };
  // Tokens, quota, rate limit, docs, HTTP timeouts (app/auth/config.ts)
  auth: SecurityConfig['auth'];
  maxInstances: number;
  rateLimitPerMinute: number;
  publicDocs: boolean;
  metricsPublic: boolean;
  trustProxy: false | number | string[];
  /** How long a dashboard session (POST /session) lasts. */
  sessionTtlHours: number;
  http: SecurityConfig['http'];
  /** Expiry, schedules, the free-tier meter and how open a security group may be. */
  guardrails: GuardrailsConfig;
}

export interface ScriptTimeouts {
  create: number;
  start: number;
  stop: number;
  terminate: number;
  describe: number;
}

export { ConfigError } from './env.js';

/** The repository root (works from app/ under tsx and from dist/app/ after a build). */
export function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i += 1) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    dir = path.dirname(dir);
  }
  return process.cwd();
}

/**
 * A URL of any other store (`mysql://…`) is refused rather than taken as a relative path, which would
 * quietly create a SQLite file under a folder named `mysql:`. A file whose name really starts with `word:`
 * is still reachable as `./word:…` or `file:word:…`.
 */
function refuseOtherSchemes(url: string): void {
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]+):/.exec(url)?.[1];
  if (!scheme || scheme === 'sqlite' || scheme === 'file') return;
  throw new ConfigError(
    'DATABASE_URL',
    `${scheme}: is not a store this service supports: give postgres://… for PostgreSQL, or a SQLite file as a path, file:path or sqlite:path (got ${JSON.stringify(url)}; for a file whose name starts with "${scheme}:", write ./${url})`,
  );
}

/** postgres://user:password@host:port/database (or postgresql://), checked enough to fail at start-up, not at the first request. */
function postgresUrlFrom(url: string): string | null {
  if (!/^postgres(?:ql)?:\/\//.test(url)) return null;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigError('DATABASE_URL', 'is not a valid postgres:// URL (user:password@host:port/database; percent-encode special characters)');
  }
  if (!parsed.hostname) throw new ConfigError('DATABASE_URL', 'a postgres:// URL needs a host, e.g. postgres://ec2creator@db.internal:5432/ec2creator');
  if (parsed.pathname.length <= 1) throw new ConfigError('DATABASE_URL', 'a postgres:// URL needs a database name after the host, e.g. …:5432/ec2creator');
  return url;
}

/**
 * Accepts a plain path, `file:path`, `sqlite:path` or `sqlite:///abs/path`; relative paths resolve against cwd.
 * A URL's query or fragment is refused: SQLite's URI parameters (mode=ro, cache=shared, …) would not apply,
 * and taking them as part of the name would make a file literally named `x.db?mode=ro`.
 */
export function databasePathFrom(url: string, cwd: string): string {
  if (url === ':memory:') return url;
  refuseOtherSchemes(url);
  let p = url;
  const match = /^(?:sqlite|file):(?:\/\/)?(.*)$/.exec(url);
  if (match) {
    p = match[1] ?? '';
    const extra = /[?#]/.exec(p);
    if (extra) {
      const part = extra[0] === '?' ? 'a query' : 'a fragment';
      throw new ConfigError(
        'DATABASE_URL',
        `${JSON.stringify(url)} has ${part} (${JSON.stringify(p.slice(extra.index))}), which is not supported: give the database file only, e.g. ${url.slice(0, url.length - (p.length - extra.index))}`,
      );
    }
  }
  if (p === '') throw new ConfigError('DATABASE_URL', `no file path in ${JSON.stringify(url)}`);
  return path.resolve(cwd, p);
}

export function loadConfig(env: Env = process.env, cwd: string = process.cwd()): Config {
  const port = wholeNumber(env, 'PORT', 8000, 0, 65535);
  const host = readVariable(env, 'HOST') ?? '127.0.0.1';
  if (/\s/.test(host)) throw new ConfigError('HOST', `must be a host name or address, got ${JSON.stringify(host)}`);

  const databaseUrl = readVariable(env, 'DATABASE_URL') ?? './data/instances.db';
  const postgresUrl = postgresUrlFrom(databaseUrl);
  const databasePath = postgresUrl === null ? databasePathFrom(databaseUrl, cwd) : null;

  const scriptsDir = path.resolve(cwd, readVariable(env, 'SCRIPTS_DIR') ?? path.join(repoRoot(), 'aws_cli_bash_scripts'));
  if (!existsSync(scriptsDir) || !statSync(scriptsDir).isDirectory()) {
    throw new ConfigError('SCRIPTS_DIR', `${scriptsDir} is not a directory`);
  }

  const keyName = readVariable(env, 'KEY_NAME') ?? 'my_ec2_keypair';
  if (!new RegExp(KEY_NAME_PATTERN).test(keyName)) {
    throw new ConfigError('KEY_NAME', `${JSON.stringify(keyName)} is not a valid EC2 key pair name`);
  }
  // Shown to people, never opened: an absolute path or one under ~/, so it means the same on their machine.
  const keyFile = readVariable(env, 'KEY_FILE') ?? null;
  if (keyFile !== null && (!/^(?:\/|~\/)/.test(keyFile) || /[\u0000-\u001f\u007f]/.test(keyFile))) {
    throw new ConfigError('KEY_FILE', `must be an absolute path or one starting with ~/, without control characters, got ${JSON.stringify(keyFile)}`);
  }

  const allowedInstanceTypes = instanceTypeList(env, 'ALLOWED_INSTANCE_TYPES', 't3.micro,t4g.micro', INSTANCE_TYPE_PATTERN);

  const maxStorageGb = wholeNumber(env, 'MAX_STORAGE_GB', 30, 1, 16384);
  const scriptTimeoutMs = wholeNumber(env, 'SCRIPT_TIMEOUT_MS', 300_000, 1_000, 3_600_000);

  const logLevel = (readVariable(env, 'LOG_LEVEL') ?? 'info').toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new ConfigError('LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(logLevel)}`);
  }

  const maxConcurrentScripts = wholeNumber(env, 'MAX_CONCURRENT_SCRIPTS', 8, 1, 256);
  const maxQueuedOperations = wholeNumber(env, 'MAX_QUEUED_OPERATIONS', 32, 0, 10_000);
  const maxConcurrentReads = wholeNumber(env, 'MAX_CONCURRENT_READS', DEFAULT_MAX_CONCURRENT_READS, 1, 256);
  const coalesceWindowMs = wholeNumber(env, 'COALESCE_WINDOW_MS', 50, 0, 5_000);
  const pollIntervalS = wholeNumber(env, 'POLL_INTERVAL_S', 5, 1, 60);
  const launchLookupS = wholeNumber(env, 'LAUNCH_LOOKUP_S', 30, 0, 600);
  const eventualConsistencyS = wholeNumber(env, 'EVENTUAL_CONSISTENCY_S', 300, 0, 3_600);
  const timeouts = scriptTimeoutsFrom(env, scriptTimeoutMs);
  // 25 s: the whole shutdown fits a 30 s grace period (Kubernetes' and systemd's default) before SIGKILL.
  const shutdownTimeoutMs = wholeNumber(env, 'SHUTDOWN_TIMEOUT_MS', 25_000, 0, 3_600_000);
  const syncIntervalS = wholeNumber(env, 'SYNC_INTERVAL_S', 0, 0, 86_400);
  if (syncIntervalS !== 0 && syncIntervalS < 10) throw new ConfigError('SYNC_INTERVAL_S', `must be 0 (off) or at least 10, got ${syncIntervalS}`);
  const leaseTimeoutS = wholeNumber(env, 'LEASE_TIMEOUT_S', 30, 3, 3_600);
  const idempotencyTtlHours = wholeNumber(env, 'IDEMPOTENCY_KEY_TTL_HOURS', 24, 24, 8_760);
  const events = {
    retentionHours: wholeNumber(env, 'EVENT_RETENTION_HOURS', 72, 1, 87_600),
    maxClients: wholeNumber(env, 'MAX_EVENT_CLIENTS', 100, 1, 10_000),
    heartbeatS: wholeNumber(env, 'EVENT_HEARTBEAT_S', 15, 1, 300),
    stallS: wholeNumber(env, 'EVENT_CLIENT_STALL_S', 30, 1, 3_600),
  };

  return {
    maxConcurrentScripts,
    maxQueuedOperations,
    coalesceWindowMs,
    maxConcurrentReads,
    pollIntervalS,
    launchLookupS,
    eventualConsistencyS,
    timeouts,
    shutdownTimeoutMs,
    syncIntervalS,
    leaseTimeoutS,
    idempotencyTtlHours,
    events,
    sessionTtlHours: wholeNumber(env, 'SESSION_TTL_HOURS', 12, 1, 720),
    port,
    host,
    databasePath,
    postgresUrl,
    scriptsDir,
    keyName,
    keyFile,
    allowedInstanceTypes,
    maxStorageGb,
    scriptTimeoutMs,
    logLevel: logLevel as LogLevel,
    email: loadEmailConfig(env),
    webhooks: loadWebhookConfig(env),
    guardrails: loadGuardrailsConfig(env),
    ...loadSecurityConfig(env, { host, databasePath, cwd }),
  };
}

/** The limit of each kind of script: its own variable, else `scriptTimeoutMs` (SCRIPT_TIMEOUT_MS). */
export function scriptTimeoutsFrom(env: Env, scriptTimeoutMs: number): ScriptTimeouts {
  const timeout = (name: string) => wholeNumber(env, name, scriptTimeoutMs, 1_000, 3_600_000);
  return {
    create: timeout('CREATE_TIMEOUT_MS'),
    start: timeout('START_TIMEOUT_MS'),
    stop: timeout('STOP_TIMEOUT_MS'),
    terminate: timeout('TERMINATE_TIMEOUT_MS'),
    describe: timeout('DESCRIBE_TIMEOUT_MS'),
  };
}

/** What the scripts must see of our configuration (they read KEY_NAME and MAX_STORAGE_GB themselves too). */
export function scriptEnvironment(config: Pick<Config, 'keyName' | 'maxStorageGb'>): Record<string, string> {
  return { KEY_NAME: config.keyName, MAX_STORAGE_GB: String(config.maxStorageGb) };
}
