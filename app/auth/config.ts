/**
 * The security part of the configuration: API tokens, AUTH_DISABLED, the instance quota, the
 * per-token rate limit, whether the API docs are public and the HTTP server's timeouts for slow clients.
 * Called by loadConfig (app/config.ts); every bad value is a ConfigError naming its variable.
 */
import { isIP } from 'node:net';
import path from 'node:path';
import { booleanVariable, ConfigError, readVariable, wholeNumber, type Env } from '../env.js';
import { generatedTokenFile, isLoopbackHost, parseTokenList, readTokenFile, type ApiToken } from './tokens.js';

/** Live managed instances allowed at once when MAX_INSTANCES is not set. */
export const DEFAULT_MAX_INSTANCES = 5;

export type AuthConfig =
  /** AUTH_DISABLED=true (loopback only): every caller is anonymous and may do everything. */
  | { mode: 'disabled' }
  /** Tokens from API_TOKENS or API_TOKENS_FILE (`warning` when the file's mode is wider than needed). */
  | { mode: 'tokens'; source: 'API_TOKENS' | 'API_TOKENS_FILE'; tokens: ApiToken[]; file?: string; warning?: string }
  /** Neither set: server start-up generates (or reuses) an operator token in `file`. */
  | { mode: 'generate'; file: string };

export interface HttpTimeouts {
  /** Time a client has to send the request headers (slowloris). */
  headersTimeoutMs: number;
  /** Time a client has to send the whole request (headers and body). Node does not apply it to the response. */
  requestTimeoutMs: number;
  /** How long an idle keep-alive connection stays open. */
  keepAliveTimeoutMs: number;
}

export interface SecurityConfig {
  auth: AuthConfig;
  /** Live (not terminated, not failed) managed instances allowed at once. */
  maxInstances: number;
  /** Mutating requests per token per minute; 0 turns the limit off. */
  rateLimitPerMinute: number;
  /** Whether GET /openapi.json and /docs answer without a token. */
  publicDocs: boolean;
  /** Whether GET /metrics answers without a token. */
  metricsPublic: boolean;
  /**
   * Proxies whose X-Forwarded-For/-Proto are believed (Express' `trust proxy`): false (none), a number of
   * hops, or addresses, CIDRs and Express' names (loopback, linklocal, uniquelocal).
   */
  trustProxy: false | number | string[];
  http: HttpTimeouts;
}

export const DEFAULT_RATE_LIMIT_PER_MINUTE = 60;

export function loadAuthConfig(env: Env, host: string, databasePath: string | null, cwd: string): AuthConfig {
  const disabled = booleanVariable(env, 'AUTH_DISABLED', false);
  const list = readVariable(env, 'API_TOKENS');
  const file = readVariable(env, 'API_TOKENS_FILE');
  if (disabled) {
    if (!isLoopbackHost(host)) {
      throw new ConfigError(
        'AUTH_DISABLED',
        `authentication may only be turned off when HOST is a loopback address (127.0.0.1, ::1, localhost); HOST is ${JSON.stringify(host)}`,
      );
    }
    if (list !== undefined || file !== undefined) {
      throw new ConfigError('AUTH_DISABLED', `is true but ${list !== undefined ? 'API_TOKENS' : 'API_TOKENS_FILE'} is set too; choose one`);
    }
    return { mode: 'disabled' };
  }
  if (list !== undefined && file !== undefined) {
    throw new ConfigError('API_TOKENS_FILE', 'and API_TOKENS are both set; use one of them');
  }
  if (list !== undefined) return { mode: 'tokens', source: 'API_TOKENS', tokens: parseTokenList(list) };
  if (file !== undefined) {
    const resolved = path.resolve(cwd, file);
    const { tokens, warning } = readTokenFile(resolved);
    return { mode: 'tokens', source: 'API_TOKENS_FILE', tokens, file: resolved, ...(warning ? { warning } : {}) };
  }
  return { mode: 'generate', file: generatedTokenFile(databasePath, cwd) };
}

export function loadSecurityConfig(env: Env, options: { host: string; databasePath: string | null; cwd: string }): SecurityConfig {
  const auth = loadAuthConfig(env, options.host, options.databasePath, options.cwd);
  const maxInstances = wholeNumber(env, 'MAX_INSTANCES', DEFAULT_MAX_INSTANCES, 0, 10_000);
  const rateLimitPerMinute = wholeNumber(env, 'RATE_LIMIT_PER_MINUTE', DEFAULT_RATE_LIMIT_PER_MINUTE, 0, 100_000);
  // Every endpoint but /health* needs a token unless the operator opens the docs on purpose.
  const publicDocs = booleanVariable(env, 'PUBLIC_DOCS', false);
  const metricsPublic = booleanVariable(env, 'METRICS_PUBLIC', false);
  const trustProxy = trustProxyFrom(env);
  const headersTimeoutMs = wholeNumber(env, 'HTTP_HEADERS_TIMEOUT_MS', 15_000, 1_000, 600_000);
  const requestTimeoutMs = wholeNumber(env, 'HTTP_REQUEST_TIMEOUT_MS', 60_000, 1_000, 3_600_000);
  const keepAliveTimeoutMs = wholeNumber(env, 'HTTP_KEEP_ALIVE_TIMEOUT_MS', 5_000, 1_000, 600_000);
  if (headersTimeoutMs > requestTimeoutMs) {
    throw new ConfigError('HTTP_HEADERS_TIMEOUT_MS', `must not exceed HTTP_REQUEST_TIMEOUT_MS (${requestTimeoutMs})`);
  }
  return { auth, maxInstances, rateLimitPerMinute, publicDocs, metricsPublic, trustProxy, http: { headersTimeoutMs, requestTimeoutMs, keepAliveTimeoutMs } };
}

const PROXY_NAMES = new Set(['loopback', 'linklocal', 'uniquelocal']);

/**
 * TRUST_PROXY: unset or `false` believes no proxy (a client could claim any address or HTTPS); a number of
 * hops; or the proxies' addresses. `true` (believe anyone) is refused: it would let any client spoof both.
 */
function trustProxyFrom(env: Env): false | number | string[] {
  const raw = readVariable(env, 'TRUST_PROXY');
  if (raw === undefined || raw === 'false') return false;
  if (raw === 'true') throw new ConfigError('TRUST_PROXY', 'true would believe any client\'s X-Forwarded-* headers; name the proxies (addresses, CIDRs, loopback) or a number of hops');
  if (/^[0-9]+$/.test(raw)) return wholeNumber(env, 'TRUST_PROXY', 0, 1, 10);
  const entries = raw.split(',').map((entry) => entry.trim()).filter((entry) => entry !== '');
  for (const entry of entries) {
    const [address, bits, extra] = entry.split('/');
    const valid = PROXY_NAMES.has(entry)
      || (extra === undefined && address !== undefined && isIP(address) !== 0 && (bits === undefined || /^[0-9]{1,3}$/.test(bits)));
    if (!valid) throw new ConfigError('TRUST_PROXY', `${JSON.stringify(entry)} is not an address, a CIDR or one of loopback, linklocal, uniquelocal`);
  }
  if (entries.length === 0) throw new ConfigError('TRUST_PROXY', 'names no proxy');
  return entries;
}
