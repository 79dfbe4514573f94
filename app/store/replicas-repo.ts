/** The only code that reads or writes the replicas table: the servers sharing a database, and their leases. */
import type { Db } from './db.js';

export interface ReplicaRow {
  id: string;
  host: string;
  pid: number;
  url: string | null;
  started_at: string;
  /** When it last renewed its lease (ISO time): it counts as alive until LEASE_TIMEOUT_S after that. */
  heartbeat_at: string;
}

export interface ReplicasRepository {
  register(replica: { id: string; host: string; pid: number; url: string | null }): ReplicaRow;
  /** Renews the lease; false when the row is gone (another server took this one for dead). */
  heartbeat(id: string): boolean;
  setUrl(id: string, url: string): void;
  list(): ReplicaRow[];
  remove(id: string): void;
}

const now = (): string => new Date().toISOString();

export function createReplicasRepository(db: Db): ReplicasRepository {
  const insert = db.prepare(
    `INSERT INTO replicas (id, host, pid, url, started_at, heartbeat_at) VALUES (@id, @host, @pid, @url, @now, @now)`,
  );
  const byId = db.prepare<[string], ReplicaRow>('SELECT * FROM replicas WHERE id = ?');
  const beat = db.prepare('UPDATE replicas SET heartbeat_at = @now WHERE id = @id');
  const url = db.prepare('UPDATE replicas SET url = @url WHERE id = @id');
  const all = db.prepare<[], ReplicaRow>('SELECT * FROM replicas ORDER BY started_at, id');
  const remove = db.prepare('DELETE FROM replicas WHERE id = ?');
  return {
    register(replica) {
      insert.run({ ...replica, now: now() });
      return byId.get(replica.id) as ReplicaRow;
    },
    heartbeat: (id) => beat.run({ id, now: now() }).changes === 1,
    setUrl(id, value) {
      url.run({ id, url: value });
    },
    list: () => all.all(),
    remove(id) {
      remove.run(id);
    },
  };
}
