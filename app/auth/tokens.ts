/**
 * API tokens: `name:role:token` entries from API_TOKENS (comma-separated) or API_TOKENS_FILE (one a line,
 * `#` comments), validated at start-up. Only the SHA-256 digest of each token is kept for the check; the
 * plain value is registered with the log redactor and otherwise never leaves this module.
 *
 * Error messages name the variable and the entry (its position and, when parsable, its name) but never
 * echo an entry's text, because that text contains the secret.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, closeSync, constants, fstatSync, mkdirSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { BlockList, isIP } from 'node:net';
import path from 'node:path';
import { ConfigError } from '../env.js';
import { registerSecret } from '../redact.js';

export const ROLES = ['viewer', 'operator'] as const;
export type Role = (typeof ROLES)[number];

/** What the rest of the service knows about the caller: never the token itself. */
export interface Principal {
  name: string;
  role: Role;
}

export interface ApiToken extends Principal {
  /** SHA-256 of the token; the constant-time check compares these. */
  readonly digest: Buffer;
}

/** Token names end up in logs and operation records: short, printable, no separators. */
export const TOKEN_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;
/** RFC 6750 b64token, so any configured token can travel in `Authorization: Bearer …`. */
export const TOKEN_PATTERN = /^[A-Za-z0-9\-._~+/]+=*$/;
export const MIN_TOKEN_LENGTH = 16;
export const MAX_TOKEN_LENGTH = 512;

export function digestOf(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

export function makeToken(name: string, role: Role, token: string): ApiToken {
  registerSecret(token);
  return { name, role, digest: digestOf(token) };
}

/** Parses entries (already split) into tokens; throws a ConfigError naming `variable` on any bad entry. */
export function parseTokenEntries(entries: ReadonlyArray<{ text: string; where: string }>, variable: string): ApiToken[] {
  const tokens: ApiToken[] = [];
  const names = new Set<string>();
  const digests = new Set<string>();
  for (const { text, where } of entries) {
    const first = text.indexOf(':');
    const second = first < 0 ? -1 : text.indexOf(':', first + 1);
    if (first < 0 || second < 0) {
      throw new ConfigError(variable, `${where} is not name:role:token`);
    }
    const name = text.slice(0, first).trim();
    const role = text.slice(first + 1, second).trim();
    const token = text.slice(second + 1).trim();
    if (!TOKEN_NAME_PATTERN.test(name)) {
      throw new ConfigError(variable, `${where}: the name must be 1-64 of A-Z a-z 0-9 . _ @ - starting with a letter or digit`);
    }
    const label = `${where} (${name})`;
    if (!(ROLES as readonly string[]).includes(role)) {
      throw new ConfigError(variable, `${label}: role must be one of ${ROLES.join(', ')}, got ${JSON.stringify(role)}`);
    }
    if (token.length < MIN_TOKEN_LENGTH) {
      throw new ConfigError(variable, `${label}: the token is empty or shorter than ${MIN_TOKEN_LENGTH} characters`);
    }
    if (token.length > MAX_TOKEN_LENGTH) {
      throw new ConfigError(variable, `${label}: the token is longer than ${MAX_TOKEN_LENGTH} characters`);
    }
    if (!TOKEN_PATTERN.test(token)) {
      throw new ConfigError(variable, `${label}: the token may only contain A-Z a-z 0-9 - . _ ~ + / (and trailing =)`);
    }
    if (names.has(name)) throw new ConfigError(variable, `${label}: the name is used twice`);
    const digest = digestOf(token).toString('hex');
    if (digests.has(digest)) throw new ConfigError(variable, `${label}: the same token is configured under two names`);
    names.add(name);
    digests.add(digest);
    tokens.push(makeToken(name, role as Role, token));
  }
  if (tokens.length === 0) throw new ConfigError(variable, 'lists no token');
  return tokens;
}

/** API_TOKENS: comma-separated entries. */
export function parseTokenList(value: string, variable = 'API_TOKENS'): ApiToken[] {
  const entries = value
    .split(',')
    .map((text, i) => ({ text: text.trim(), where: `entry ${i + 1}` }))
    .filter((e) => e.text !== '');
  return parseTokenEntries(entries, variable);
}

/** A token file's text: one entry a line; blank lines and `#` comments ignored. */
export function parseTokenFile(text: string, variable = 'API_TOKENS_FILE'): ApiToken[] {
  const entries = text
    .split(/\r?\n/)
    .map((line, i) => ({ text: line.trim(), where: `line ${i + 1}` }))
    .filter((e) => e.text !== '' && !e.text.startsWith('#'));
  return parseTokenEntries(entries, variable);
}

/**
 * Token files hold secrets: refused when anyone but the owner (and the owner's group, read-only) can
 * read or write them. Returns a warning when the group can read it.
 */
export function checkTokenFileMode(file: string, mode: number, variable: string): string | undefined {
  const perms = mode & 0o777;
  const octal = perms.toString(8).padStart(4, '0');
  if ((perms & 0o006) !== 0 || (perms & 0o020) !== 0) {
    throw new ConfigError(variable, `${file} is readable or writable by others (mode ${octal}); run chmod 600 ${file}`);
  }
  if ((perms & 0o040) !== 0) return `${file} is readable by its group (mode ${octal}); chmod 600 is safer`;
  return undefined;
}

export function readTokenFile(file: string, variable = 'API_TOKENS_FILE'): { tokens: ApiToken[]; warning?: string } {
  let text: string;
  let mode: number;
  try {
    const fd = openSync(file, constants.O_RDONLY);
    try {
      const stat = fstatSync(fd);
      if (!stat.isFile()) throw new ConfigError(variable, `${file} is not a regular file`);
      mode = stat.mode;
      text = readFileSync(fd, 'utf8');
    } finally {
      closeSync(fd);
    }
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    throw new ConfigError(variable, `cannot read ${file} (${code})`);
  }
  const warning = checkTokenFileMode(file, mode, variable);
  return { tokens: parseTokenFile(text, variable), ...(warning ? { warning } : {}) };
}

/** Where the generated token lives: next to the SQLite file (or ./data for an in-memory database or PostgreSQL). */
export function generatedTokenFile(databasePath: string | null, cwd: string = process.cwd()): string {
  const dataDir = databasePath === null || databasePath === ':memory:' ? path.resolve(cwd, 'data') : path.dirname(databasePath);
  return path.join(dataDir, 'api-token');
}

export const GENERATED_TOKEN_NAME = 'generated-operator';

/**
 * Secure by default: reuses the generated operator token file, or creates it (mode 0600, exclusive create,
 * so two starting processes never overwrite each other's token). Returns whether it was created.
 */
export function ensureGeneratedToken(file: string): { tokens: ApiToken[]; created: boolean; warning?: string } {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  let created = false;
  try {
    const fd = openSync(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    try {
      const token = randomBytes(32).toString('base64url');
      writeSync(
        fd,
        '# Generated by ec2-creator because neither API_TOKENS nor API_TOKENS_FILE was set.\n' +
          '# Send it as: Authorization: Bearer <the part after the second colon>\n' +
          `${GENERATED_TOKEN_NAME}:operator:${token}\n`,
      );
    } finally {
      closeSync(fd);
    }
    chmodSync(file, 0o600); // in case the umask or the filesystem widened it
    created = true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
      const code = (error as NodeJS.ErrnoException).code ?? 'error';
      throw new ConfigError('DATABASE_URL', `cannot create the API token file ${file} (${code}); set API_TOKENS or API_TOKENS_FILE`);
    }
  }
  const { tokens, warning } = readTokenFile(file, 'API_TOKENS_FILE');
  return { tokens, created, ...(warning ? { warning } : {}) };
}

/** The plain token of a generated file (for `npm run sandbox`, which prints it for the user). */
export function readGeneratedTokenValue(file: string): string | undefined {
  try {
    if (!statSync(file).isFile()) return undefined;
    for (const line of readFileSync(file, 'utf8').split(/\r?\n/)) {
      const text = line.trim();
      if (text === '' || text.startsWith('#')) continue;
      const parts = text.split(':');
      if (parts.length >= 3) return parts.slice(2).join(':');
    }
  } catch {
    // not there
  }
  return undefined;
}

/** 127.0.0.0/8, ::1 (and ::ffff:127.x.y.z) and localhost: the only hosts AUTH_DISABLED may listen on. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h);
  const address = mapped?.[1] ?? h;
  const family = isIP(address);
  if (family === 0) return false;
  const loopback = new BlockList();
  loopback.addSubnet('127.0.0.0', 8, 'ipv4');
  loopback.addAddress('::1', 'ipv6');
  return loopback.check(address, family === 4 ? 'ipv4' : 'ipv6');
}
