/** The only code that reads or writes the sessions table: who signed in to the dashboard, until when. */
import type { Db } from './db.js';

export interface SessionRow {
  /** SHA-256 (hex) of the session id the cookie carries. */
  id_digest: string;
  /** The API token's name and role the session was opened with. */
  name: string;
  role: string;
  created_at: string;
  expires_at: string;
}

export interface SessionsRepository {
  create(row: SessionRow): void;
  /** The session, unless it has expired by `now` (ISO time). */
  find(idDigest: string, now: string): SessionRow | undefined;
  remove(idDigest: string): void;
  /** Deletes sessions expired by `now`; returns how many. */
  purgeExpired(now: string): number;
}

export const SESSION_SQL = {
  create: `INSERT INTO sessions (id_digest, name, role, created_at, expires_at)
           VALUES (@idDigest, @name, @role, @createdAt, @expiresAt)`,
  find: 'SELECT * FROM sessions WHERE id_digest = @idDigest AND expires_at > @now',
  remove: 'DELETE FROM sessions WHERE id_digest = @idDigest',
  purge: 'DELETE FROM sessions WHERE expires_at <= @now',
} as const;

/** The row as the statements' named parameters (camelCase: PostgreSQL's placeholders take no underscore). */
export function sessionParams(row: SessionRow): Record<string, string> {
  return { idDigest: row.id_digest, name: row.name, role: row.role, createdAt: row.created_at, expiresAt: row.expires_at };
}

export function createSessionsRepository(db: Db): SessionsRepository {
  const createStmt = db.prepare(SESSION_SQL.create);
  const findStmt = db.prepare<[{ idDigest: string; now: string }], SessionRow>(SESSION_SQL.find);
  const removeStmt = db.prepare(SESSION_SQL.remove);
  const purgeStmt = db.prepare(SESSION_SQL.purge);
  return {
    create: (row) => {
      createStmt.run(sessionParams(row));
    },
    find: (idDigest, now) => findStmt.get({ idDigest, now }),
    remove: (idDigest) => {
      removeStmt.run({ idDigest });
    },
    purgeExpired: (now) => purgeStmt.run({ now }).changes,
  };
}
