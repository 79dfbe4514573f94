/**
 * The user's tags on an instance: checked like EC2 checks them (the request schema), minus the keys the
 * service itself writes, which a user may not set: the name, the owner, the managed mark, and anything under
 * ec2-creator: or aws:.
 */
import { ValidationError, type FieldError } from '../domain/errors.js';

const RESERVED = /^(?:Name|Owner|ManagedBy)$|^ec2-creator:|^aws:/i;

export function isReservedTagKey(key: string): boolean {
  return RESERVED.test(key);
}

/** Refuses reserved keys (ValidationError, one entry per key). */
export function checkUserTags(tags: Record<string, string> | undefined): void {
  if (tags === undefined) return;
  const errors: FieldError[] = Object.keys(tags).filter(isReservedTagKey).map((key) => ({
    field: `tags.${key}`,
    message: 'is reserved for the service (Name, Owner, ManagedBy, ec2-creator:* and aws:* cannot be set)',
  }));
  if (errors.length > 0) throw new ValidationError('The request body is invalid', errors);
}

/** The user's tags among all of an instance's EC2 tags (what sync records). */
export function userTagsOf(all: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(all).filter(([key]) => !isReservedTagKey(key)).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** Parses `?tag=` filters: KEY=VALUE, KEY:VALUE (split at the first = or else the first :) or KEY alone. */
export function tagFilterOf(text: string): { key: string; value?: string } {
  const at = text.includes('=') ? text.indexOf('=') : text.indexOf(':');
  if (at < 0) return { key: text };
  return { key: text.slice(0, at), value: text.slice(at + 1) };
}
