/**
 * The only code that reads the events table. Events are written by the database itself (triggers, see
 * ./schema.ts, migration 8) in the transaction of the change they tell; here they are read in id order and
 * aged out.
 */
import type { Db } from './db.js';

export interface EventRow {
  /** The event's id: only grows, in the order the changes committed. */
  row_id: number;
  /** One of the names app/schemas/events.ts lists. */
  type: string;
  instance_id: string | null;
  operation_id: string | null;
  /** An instance's state before the change (instance.state_changed, instance.terminated). */
  old_state: string | null;
  /** JSON text: the instance's or the operation's row as the change left it. */
  data: string;
  created_at: string;
}

export interface EventFilter {
  instanceId?: string | undefined;
  types?: readonly string[] | undefined;
}

export interface EventsRepository {
  /** Events after `afterId`, oldest first, at most `limit`, narrowed by `filter`. */
  after(afterId: number, filter: EventFilter, limit: number): EventRow[];
  /** The oldest and the newest id kept (0 when there is none). */
  bounds(): { oldest: number; newest: number };
  /** Deletes events recorded before `cutoff` (ISO time), always keeping the newest; returns how many. */
  purgeOlderThan(cutoff: string): number;
}

/** The WHERE clause and parameters of a filtered read, written the same for both stores. */
export function eventsQuery(afterId: number, filter: EventFilter, limit: number): { sql: string; params: Record<string, string | number> } {
  const where = ['row_id > @afterId'];
  const params: Record<string, string | number> = { afterId, limit };
  if (filter.instanceId !== undefined) {
    where.push('instance_id = @instanceId');
    params.instanceId = filter.instanceId;
  }
  if (filter.types !== undefined) {
    const names = filter.types.map((type, index) => {
      params[`type${index}`] = type;
      return `@type${index}`;
    });
    where.push(names.length > 0 ? `type IN (${names.join(', ')})` : '1 = 0');
  }
  return { sql: `SELECT * FROM events WHERE ${where.join(' AND ')} ORDER BY row_id LIMIT @limit`, params };
}

export const EVENT_BOUNDS_SQL = 'SELECT COALESCE(MIN(row_id), 0) AS oldest, COALESCE(MAX(row_id), 0) AS newest FROM events';
export const EVENT_PURGE_SQL = 'DELETE FROM events WHERE created_at < @cutoff AND row_id < (SELECT MAX(row_id) FROM events)';

export function createEventsRepository(db: Db): EventsRepository {
  const boundsStmt = db.prepare<[], { oldest: number; newest: number }>(EVENT_BOUNDS_SQL);
  const purgeStmt = db.prepare(EVENT_PURGE_SQL);
  return {
    after(afterId, filter, limit) {
      const { sql, params } = eventsQuery(afterId, filter, limit);
      return db.prepare<[Record<string, string | number>], EventRow>(sql).all(params);
    },
    bounds: () => boundsStmt.get() as { oldest: number; newest: number },
    purgeOlderThan: (cutoff) => purgeStmt.run({ cutoff }).changes,
  };
}
