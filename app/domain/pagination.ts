/**
 * Keyset pagination shared by every list: pages run newest first by row id, and the cursor is an opaque
 * token for "rows older than this one", so a page costs the same however deep it is.
 */
import { ValidationError } from './errors.js';

export function encodeCursor(rowId: number): string {
  return Buffer.from(`v1:${rowId}`, 'utf8').toString('base64url');
}

export function decodeCursor(cursor: string): number {
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  const match = /^v1:([1-9]\d{0,15})$/.exec(text);
  if (!match) throw new ValidationError('The cursor is not one this service issued', [{ field: 'cursor', message: 'is not a valid cursor' }]);
  return Number(match[1]);
}

/**
 * One page from rows fetched with limit + 1: the extra row only tells whether another page follows.
 */
export function pageOf<Row extends { row_id: number }, Item>(
  rows: readonly Row[],
  limit: number,
  toItem: (row: Row) => Item,
): { items: Item[]; next_cursor: string | null } {
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  return { items: page.map(toItem), next_cursor: rows.length > limit && last ? encodeCursor(last.row_id) : null };
}
