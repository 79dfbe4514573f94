/** The only code that reads or writes the replicas table: the servers sharing a database, and their leases. */
import type { Db } from './db.js';

export interface ReplicaRow {
  id: string;
  host: string;
  pid: number;
  url: string | null;
  started_at: string;
  /** When it last renewed its lease (ISO time, the database's clock). */
  heartbeat_at: string;
  /** How long ago that was, by the database's clock (servers' clocks may disagree; the database's is one). */
  heartbeat_age_ms: number;
}

export interface ReplicasRepository {
  register(replica: { id: string; host: string; pid: number; url: string | null }): ReplicaRow;
  /** Renews the lease; false when the row is gone (another server took this one for dead). */
  heartbeat(id: string): boolean;
  setUrl(id: string, url: string): void;
  list(): ReplicaRow[];
  remove(id: string): void;
}

const NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";
const WITH_AGE = "*, CAST(ROUND((julianday('now') - julianday(heartbeat_at)) * 86400000) AS INTEGER) AS heartbeat_age_ms";

export function createReplicasRepository(db: Db): ReplicasRepository {
  const insert = db.prepare(
    `INSERT INTO replicas (id, host, pid, url, started_at, heartbeat_at) VALUES (@id, @host, @pid, @url, ${NOW}, ${NOW})`,
  );
  const byId = db.prepare<[string], ReplicaRow>(`SELECT ${WITH_AGE} FROM replicas WHERE id = ?`);
  const beat = db.prepare(`UPDATE replicas SET heartbeat_at = ${NOW} WHERE id = @id`);
  const url = db.prepare('UPDATE replicas SET url = @url WHERE id = @id');
  const all = db.prepare<[], ReplicaRow>(`SELECT ${WITH_AGE} FROM replicas ORDER BY started_at, id`);
  const remove = db.prepare('DELETE FROM replicas WHERE id = ?');
  return {
    register(replica) {
      insert.run(replica);
      return byId.get(replica.id) as ReplicaRow;
    },
    heartbeat: (id) => beat.run({ id }).changes === 1,
    setUrl(id, value) {
      url.run({ id, url: value });
    },
    list: () => all.all(),
    remove(id) {
      remove.run(id);
    },
  };
}
