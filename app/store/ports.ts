/**
 * The repository interface every store offers, whichever database is behind it. SQLite answers at once;
 * PostgreSQL answers over the network; so every call returns a promise. The methods, their arguments and
 * their rows are those of the SQLite repositories (./instances-repo.ts, ./operations-repo.ts): a mapped
 * type derives them, so the two cannot drift apart.
 */
import type { StorageHealth } from './health.js';
import type { InstancesRepository } from './instances-repo.js';
import type { IdempotencyRepository, OperationsRepository } from './operations-repo.js';
import type { ReplicasRepository } from './replicas-repo.js';
import type { EventsRepository } from './events-repo.js';
import type { SessionsRepository } from './sessions-repo.js';

/** The same methods, answering with a promise. */
export type Async<T> = {
  [K in keyof T]: T[K] extends (...args: infer A) => infer R ? (...args: A) => Promise<Awaited<R>> : never;
};

export type InstancesStore = Async<InstancesRepository>;
export type OperationsStore = Async<OperationsRepository>;
export type IdempotencyStore = Async<IdempotencyRepository>;
export type ReplicasStore = Async<ReplicasRepository>;
export type EventsStore = Async<EventsRepository>;
export type SessionsStore = Async<SessionsRepository>;

/** The repositories, as seen inside one transaction or outside any. */
export interface Repositories {
  instances: InstancesStore;
  operations: OperationsStore;
  idempotency: IdempotencyStore;
  replicas: ReplicasStore;
  events: EventsStore;
  sessions: SessionsStore;
}

/** A named duty (periodic sync, purging old keys) held by one server at a time among those sharing a database. */
export interface Duty {
  readonly name: string;
  /** Settles when the duty is lost without being released (the connection that held it died). */
  readonly lost: Promise<void>;
  release(): Promise<void>;
}

/** The repositories inside one transaction. */
export interface Transaction extends Repositories {
  /**
   * Makes transactions on the same topic (e.g. the launch quota) run one after another, whichever server
   * runs them, until this one ends: what one counted cannot change before it has written.
   */
  serialize(topic: string): Promise<void>;
}

export interface AsyncStore extends Repositories {
  /** `sqlite` or `postgres`: for logs and the readiness answer, never for behaviour. */
  readonly dialect: 'sqlite' | 'postgres';
  /**
   * Runs `work` in one database transaction: everything it does through `tx` is committed together or not at
   * all, and no other writer sees any of it before the commit. A refused `work` (it throws) rolls it all back.
   */
  transaction<T>(work: (tx: Transaction) => Promise<T>): Promise<T>;
  /**
   * Takes the named duty unless another holder has it (then undefined). Whoever held it and died lets it go
   * with its connection, so another server takes it over at its next try.
   */
  tryDuty(name: string): Promise<Duty | undefined>;
  /**
   * Calls `listener` whenever another connection (another replica) may have recorded events, so that this
   * server's streams need not wait for their next look; returns how to stop. SQLite, with one server, has none.
   */
  onEventsRecorded?(listener: () => void): () => void;
  /** Whether the database can take writes now. */
  health(): Promise<StorageHealth>;
  close(): Promise<void>;
}
