/**
 * Reading environment variables for configuration: one set of rules for every part (core, email,
 * security), so each variable is trimmed, defaulted and refused the same way, and a bad value is always
 * a ConfigError naming the variable.
 */

export type Env = Record<string, string | undefined>;

export class ConfigError extends Error {
  constructor(readonly variable: string, message: string) {
    super(`${variable}: ${message}`);
    this.name = 'ConfigError';
  }
}

/** The trimmed value, or undefined when the variable is unset or blank. */
export function readVariable(env: Env, name: string): string | undefined {
  const value = env[name]?.trim();
  return value === undefined || value === '' ? undefined : value;
}

export function wholeNumber(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = readVariable(env, name);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(name, `must be a whole number, got ${JSON.stringify(raw)}`);
  const value = Number(raw);
  if (value < min || value > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${value}`);
  return value;
}

export function booleanVariable(env: Env, name: string, fallback: boolean): boolean {
  const raw = readVariable(env, name);
  if (raw === undefined) return fallback;
  const value = raw.toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(value)) return true;
  if (['false', '0', 'no', 'off'].includes(value)) return false;
  throw new ConfigError(name, `must be true or false, got ${JSON.stringify(raw)}`);
}

/** A comma-separated list of instance types (blanks dropped, duplicates once), each matching `pattern`. */
export function instanceTypeList(env: Env, name: string, fallback: string, pattern: string): string[] {
  const types = (readVariable(env, name) ?? fallback).split(',').map((t) => t.trim()).filter((t) => t !== '');
  if (types.length === 0) throw new ConfigError(name, 'must list at least one instance type');
  const shape = new RegExp(pattern);
  for (const t of types) {
    if (!shape.test(t)) throw new ConfigError(name, `${JSON.stringify(t)} is not an instance type like t3.micro`);
  }
  return [...new Set(types)];
}
