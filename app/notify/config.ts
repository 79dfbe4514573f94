/**
 * Email settings from the environment. Email is off unless both SMTP_HOST and NOTIFICATION_EMAIL are
 * set; setting only one of them is a mistake worth stopping for, not a silent "off".
 */
import { hostname } from 'node:os';
import { ConfigError } from '../config.js';

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

type Env = Record<string, string | undefined>;

// Deliberately simple: one @, no spaces or separators; the SMTP server has the last word.
const ADDRESS = /^[^\s@,;<>"]+@[^\s@,;<>"]+$/;

function read(env: Env, name: string): string | undefined {
  const value = env[name]?.trim();
  return value === undefined || value === '' ? undefined : value;
}

function wholeNumber(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = read(env, name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || value < min || value > max) {
    throw new ConfigError(name, `must be a whole number from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  }
  return value;
}

function flag(env: Env, name: string, fallback: boolean): boolean {
  const raw = read(env, name)?.toLowerCase();
  if (raw === undefined) return fallback;
  if (['true', '1', 'yes'].includes(raw)) return true;
  if (['false', '0', 'no'].includes(raw)) return false;
  throw new ConfigError(name, `must be true or false, got ${JSON.stringify(raw)}`);
}

export function loadEmailConfig(env: Env = process.env): EmailConfig | null {
  const host = read(env, 'SMTP_HOST');
  const recipients = read(env, 'NOTIFICATION_EMAIL');
  if (host === undefined && recipients === undefined) return null;
  if (host === undefined) throw new ConfigError('SMTP_HOST', 'is needed when NOTIFICATION_EMAIL is set');
  if (recipients === undefined) throw new ConfigError('NOTIFICATION_EMAIL', 'is needed when SMTP_HOST is set');
  if (/\s/.test(host)) throw new ConfigError('SMTP_HOST', `must be a host name or address, got ${JSON.stringify(host)}`);

  const to = recipients.split(',').map((address) => address.trim()).filter((address) => address !== '');
  for (const address of to) {
    if (!ADDRESS.test(address)) throw new ConfigError('NOTIFICATION_EMAIL', `${JSON.stringify(address)} is not an email address`);
  }
  const from = read(env, 'SMTP_FROM') ?? `ec2-creator@${hostname()}`;
  if (!ADDRESS.test(from)) throw new ConfigError('SMTP_FROM', `${JSON.stringify(from)} is not an email address`);

  const user = read(env, 'SMTP_USER');
  const password = env.SMTP_PASSWORD === undefined || env.SMTP_PASSWORD === '' ? undefined : env.SMTP_PASSWORD;
  if ((user === undefined) !== (password === undefined)) {
    throw new ConfigError(user === undefined ? 'SMTP_USER' : 'SMTP_PASSWORD', 'SMTP_USER and SMTP_PASSWORD go together');
  }
  const port = wholeNumber(env, 'SMTP_PORT', 587, 1, 65535);
  return {
    host,
    port,
    secure: flag(env, 'SMTP_SECURE', port === 465),
    // A password must not cross the network in clear: with credentials, STARTTLS is required.
    requireTls: flag(env, 'SMTP_REQUIRE_TLS', user !== undefined),
    user,
    password,
    from,
    to,
    attempts: wholeNumber(env, 'SMTP_ATTEMPTS', 5, 1, 20),
    retryBaseMs: wholeNumber(env, 'SMTP_RETRY_BASE_MS', 2_000, 1, 600_000),
  };
}
