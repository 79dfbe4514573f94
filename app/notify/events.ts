/**
 * Lifecycle events: what the domain announces after it has recorded a change. Subscribers (email,
 * webhooks) are told after the fact and can never delay or fail the operation that caused the event.
 * (The event stream, GET /events, reads the events the database records instead: app/domain/event-stream.ts.)
 */
import type { Instance } from '../schemas/instance.js';

/** `expiring`: the warning ahead of an instance's expiry (EXPIRY_WARNING_MINUTES before it). */
export const INSTANCE_EVENT_TYPES = ['created', 'started', 'stopped', 'terminated', 'expiring'] as const;
export type InstanceEventType = (typeof INSTANCE_EVENT_TYPES)[number];

export interface InstanceEvent {
  type: InstanceEventType;
  instance: Instance;
  requestId?: string | undefined;
  /** When the change was recorded, ISO 8601 UTC. */
  at: string;
}

export interface Notifier {
  /** Hands the event over and returns at once; failures are the notifier's to log, never the caller's. */
  notify(event: InstanceEvent): void;
  /** Resolves when every event handed over so far has been delivered or given up on. */
  idle(): Promise<void>;
}

export const silentNotifier: Notifier = {
  notify() {},
  idle: async () => {},
};
