/**
 * Email settings from the environment. Email is off unless both SMTP_HOST and NOTIFICATION_EMAIL are
 * set; setting only one of them is a mistake worth stopping for, not a silent "off".
 */
import { hostname } from 'node:os';
import { booleanVariable, ConfigError, readVariable, wholeNumber, type Env } from '../env.js';

export interface EmailConfig {
  host: string;
  port: number;
  secure: boolean;
  requireTls: boolean;
  user: string | undefined;
  password: string | undefined;
  from: string;
  to: string[];
  attempts: number;
  retryBaseMs: number;
}

// Deliberately simple: one @, no spaces or separators; the SMTP server has the last word.
const ADDRESS = /^[^\s@,;<>"]+@[^\s@,;<>"]+$/;

export function loadEmailConfig(env: Env = process.env): EmailConfig | null {
  const host = readVariable(env, 'SMTP_HOST');
  const recipients = readVariable(env, 'NOTIFICATION_EMAIL');
  if (host === undefined && recipients === undefined) return null;
  if (host === undefined) throw new ConfigError('SMTP_HOST', 'is needed when NOTIFICATION_EMAIL is set');
  if (recipients === undefined) throw new ConfigError('NOTIFICATION_EMAIL', 'is needed when SMTP_HOST is set');
  if (/\s/.test(host)) throw new ConfigError('SMTP_HOST', `must be a host name or address, got ${JSON.stringify(host)}`);

  const to = recipients.split(',').map((address) => address.trim()).filter((address) => address !== '');
  for (const address of to) {
    if (!ADDRESS.test(address)) throw new ConfigError('NOTIFICATION_EMAIL', `${JSON.stringify(address)} is not an email address`);
  }
  const from = readVariable(env, 'SMTP_FROM') ?? `ec2-creator@${hostname()}`;
  if (!ADDRESS.test(from)) throw new ConfigError('SMTP_FROM', `${JSON.stringify(from)} is not an email address`);

  const user = readVariable(env, 'SMTP_USER');
  const password = env.SMTP_PASSWORD === undefined || env.SMTP_PASSWORD === '' ? undefined : env.SMTP_PASSWORD;
  if ((user === undefined) !== (password === undefined)) {
    throw new ConfigError(user === undefined ? 'SMTP_USER' : 'SMTP_PASSWORD', 'SMTP_USER and SMTP_PASSWORD go together');
  }
  const port = wholeNumber(env, 'SMTP_PORT', 587, 1, 65535);
  return {
    host,
    port,
    secure: booleanVariable(env, 'SMTP_SECURE', port === 465),
    // A password must not cross the network in clear: with credentials, STARTTLS is required.
    requireTls: booleanVariable(env, 'SMTP_REQUIRE_TLS', user !== undefined),
    user,
    password,
    from,
    to,
    attempts: wholeNumber(env, 'SMTP_ATTEMPTS', 5, 1, 20),
    retryBaseMs: wholeNumber(env, 'SMTP_RETRY_BASE_MS', 2_000, 1, 600_000),
  };
}

export type WebhookFormat = 'json' | 'slack';

export interface WebhookConfig {
  urls: URL[];
  /** Signs every delivery (HMAC-SHA256); may be absent only for the Slack format, which Slack does not check. */
  secret: string | undefined;
  format: WebhookFormat;
  attempts: number;
  retryBaseMs: number;
  timeoutMs: number;
}

/** Webhooks are off unless WEBHOOK_URLS is set. */
export function loadWebhookConfig(env: Env = process.env): WebhookConfig | null {
  const list = readVariable(env, 'WEBHOOK_URLS');
  if (list === undefined) return null;
  const urls = list.split(',').map((entry) => entry.trim()).filter((entry) => entry !== '').map((entry) => {
    let url: URL;
    try {
      url = new URL(entry);
    } catch {
      throw new ConfigError('WEBHOOK_URLS', `${JSON.stringify(entry)} is not a URL`);
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw new ConfigError('WEBHOOK_URLS', `${JSON.stringify(entry)} must be an http:// or https:// URL`);
    }
    return url;
  });
  if (urls.length === 0) throw new ConfigError('WEBHOOK_URLS', 'names no URL');
  const format = readVariable(env, 'WEBHOOK_FORMAT') ?? 'json';
  if (format !== 'json' && format !== 'slack') throw new ConfigError('WEBHOOK_FORMAT', `must be json or slack, got ${JSON.stringify(format)}`);
  const secret = env.WEBHOOK_SECRET === undefined || env.WEBHOOK_SECRET === '' ? undefined : env.WEBHOOK_SECRET;
  if (secret === undefined && format === 'json') {
    throw new ConfigError('WEBHOOK_SECRET', 'is needed with WEBHOOK_URLS: receivers check each delivery\'s signature with it');
  }
  if (secret !== undefined && secret.length < 16) throw new ConfigError('WEBHOOK_SECRET', 'must be at least 16 characters');
  return {
    urls,
    secret,
    format,
    attempts: wholeNumber(env, 'WEBHOOK_ATTEMPTS', 5, 1, 20),
    retryBaseMs: wholeNumber(env, 'WEBHOOK_RETRY_BASE_MS', 2_000, 1, 600_000),
    timeoutMs: wholeNumber(env, 'WEBHOOK_TIMEOUT_MS', 10_000, 100, 120_000),
  };
}
