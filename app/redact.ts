/**
 * Redaction: secrets never reach a log line (or a script error message built from script output).
 * The registry is process-wide on purpose — a secret is a secret for the whole process — and only grows.
 *
 * What is masked:
 *  - every registered secret value, wherever it appears inside a string (API tokens, AWS_SECRET_ACCESS_KEY,
 *    AWS_SESSION_TOKEN, SMTP_PASSWORD, …; values shorter than MIN_SECRET_LENGTH are not matched by value,
 *    to avoid masking ordinary words);
 *  - `Bearer <anything>` and `Basic <anything>` credentials in any string;
 *  - the whole value of fields whose name says they hold a credential (authorization, password, …).
 */
import winston from 'winston';

export const REDACTED = '[REDACTED]';
/** Where winston keeps the serialised line (triple-beam's MESSAGE symbol). */
const MESSAGE = Symbol.for('message');
export const MIN_SECRET_LENGTH = 8;

/** Environment variables whose values are secrets. */
export const SECRET_ENV_VARIABLES = [
  'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_SECURITY_TOKEN', 'SMTP_PASSWORD', 'API_TOKENS', 'WEBHOOK_SECRET',
] as const;

/** Field names (lower-cased, `-` → `_`) whose values are always masked. */
const SECRET_KEYS = new Set([
  'authorization', 'proxy_authorization', 'cookie', 'set_cookie', 'password', 'smtp_password', 'pass',
  'secret', 'aws_secret_access_key', 'aws_session_token', 'api_token', 'api_tokens', 'bearer', 'token',
]);

const secrets = new Set<string>();
let pattern: RegExp | undefined;

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function rebuild(): void {
  const values = [...secrets].sort((a, b) => b.length - a.length).map(escape);
  pattern = values.length > 0 ? new RegExp(values.join('|'), 'g') : undefined;
}

/** Masks `value` wherever it appears from now on (no-op for short or empty values). */
export function registerSecret(value: string | undefined): void {
  if (value === undefined) return;
  const v = value.trim();
  if (v.length < MIN_SECRET_LENGTH || secrets.has(v)) return;
  secrets.add(v);
  rebuild();
}

/** Registers the values of the secret environment variables (and each token of API_TOKENS). */
export function registerSecretsFromEnv(env: Record<string, string | undefined>): void {
  for (const name of SECRET_ENV_VARIABLES) {
    const value = env[name];
    if (!value) continue;
    registerSecret(value);
    if (name === 'API_TOKENS') {
      for (const entry of value.split(',')) registerSecret(entry.split(':').slice(2).join(':'));
    }
  }
}

const CREDENTIAL_IN_TEXT = /\b(Bearer|Basic)\s+[A-Za-z0-9\-._~+/]+=*/gi;

export function redactText(text: string): string {
  let out = text.replace(CREDENTIAL_IN_TEXT, (_m, scheme: string) => `${scheme} ${REDACTED}`);
  if (pattern) out = out.replace(pattern, REDACTED);
  return out;
}

function isSecretKey(key: string): boolean {
  return SECRET_KEYS.has(key.toLowerCase().replace(/-/g, '_'));
}

/** A redacted deep copy (strings masked, credential fields replaced, cycles cut). */
export function redactValue(value: unknown, seen: WeakSet<object> = new WeakSet()): unknown {
  if (typeof value === 'string') return redactText(value);
  if (typeof value !== 'object' || value === null) return value;
  if (seen.has(value)) return '[Circular]';
  seen.add(value);
  if (Array.isArray(value)) return value.map((v) => redactValue(v, seen));
  if (value instanceof Error) {
    return { name: value.name, message: redactText(value.message), ...(value.stack ? { stack: redactText(value.stack) } : {}) };
  }
  if (Buffer.isBuffer(value) || value instanceof Date) return value;
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) out[key] = isSecretKey(key) && v !== null && v !== undefined ? REDACTED : redactValue(v, seen);
  return out;
}

/**
 * A winston format: masks the info object's fields (before serialisation) and, as a last line of defence,
 * the serialised line itself (after winston.format.json()). Use it on both sides of json().
 */
export const redactFormat = winston.format((info) => {
  const record = info as unknown as Record<string | symbol, unknown>;
  for (const key of Object.keys(record)) {
    const value = record[key];
    record[key] = isSecretKey(key) && value !== null && value !== undefined ? REDACTED : redactValue(value);
  }
  const line = record[MESSAGE];
  if (typeof line === 'string') record[MESSAGE] = redactText(line);
  return info;
});
