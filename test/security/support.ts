/** Shared pieces of the security tests: tokens, an authenticated harness, OpenAPI route enumeration. */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseTokenList } from '../../app/auth/tokens.js';
import { createHarness, type Harness, type HarnessOptions } from '../support/app-harness.js';

export const securityFixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures');

/** Fresh random tokens per process: whatever the tests capture must never contain them. */
export const OPERATOR_TOKEN = `op_${randomBytes(24).toString('base64url')}`;
export const VIEWER_TOKEN = `vw_${randomBytes(24).toString('base64url')}`;
export const OTHER_OPERATOR_TOKEN = `op2_${randomBytes(24).toString('base64url')}`;
export const ALL_TOKENS = [OPERATOR_TOKEN, VIEWER_TOKEN, OTHER_OPERATOR_TOKEN];

export const tokens = parseTokenList(
  `alice:operator:${OPERATOR_TOKEN},victor:viewer:${VIEWER_TOKEN},bob:operator:${OTHER_OPERATOR_TOKEN}`,
);

export function securedHarness(options: HarnessOptions = {}): Harness {
  return createHarness({ auth: { mode: 'tokens', tokens }, ...options });
}

export const bearer = (token: string): string => `Bearer ${token}`;

export interface RouteOperation {
  /** OpenAPI path template, e.g. /instances/{id}/start */
  template: string;
  method: string;
  operation: Record<string, any>;
}

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'];

export function operationsOf(document: Record<string, any>): RouteOperation[] {
  const out: RouteOperation[] = [];
  for (const [template, item] of Object.entries<Record<string, any>>(document.paths ?? {})) {
    for (const method of METHODS) if (item[method]) out.push({ template, method, operation: item[method] });
  }
  return out;
}

/** A concrete path for a template, with a well-formed (unknown) instance id for {id}-like parameters. */
export function concretePath(template: string, id = 'i-0123456789abcdef0'): string {
  return template.replace(/\{[^}]+\}/g, id);
}

/** A body the create operation accepts, for mutating routes that take one. */
export const VALID_CREATE = { name: 'sec-1', ami: 'ami-1e749f67', instance_type: 't3.micro', storage_gb: 8 };

/** Every string the tests captured: log lines and every column of every row of every table. */
export function capturedText(h: Harness): string {
  const parts = [JSON.stringify(h.logs)];
  const tables = h.store.db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as Array<{ name: string }>;
  for (const { name } of tables) {
    parts.push(JSON.stringify(h.store.db.prepare(`SELECT * FROM "${name.replace(/"/g, '""')}"`).all()));
  }
  return parts.join('\n');
}
