/** GET /events: the query that opens a stream of recorded changes. */
import type { FromSchema } from 'json-schema-to-ts';
import { INSTANCE_ID_PATTERN } from './common.js';
import { instanceSchema } from './instance.js';
import { operationSchema } from './operation.js';

export const EVENT_TYPE_NAMES = [
  'instance.created', 'instance.state_changed', 'instance.terminated', 'instance.updated', 'instance.expiring',
  'operation.queued', 'operation.started', 'operation.succeeded', 'operation.failed', 'operation.interrupted',
] as const;

/** `types` is a comma-separated list of these names. */
export const EVENT_TYPES_PATTERN = `^(${EVENT_TYPE_NAMES.map((t) => t.replace('.', '\\.')).join('|')})(,(${EVENT_TYPE_NAMES.map((t) => t.replace('.', '\\.')).join('|')}))*$`;

export const eventsQuerySchema = {
  title: 'EventsQuery',
  type: 'object',
  additionalProperties: false,
  properties: {
    last_event_id: {
      type: 'string', pattern: '^[0-9]{1,15}$',
      description: 'Resume after this event id (as the Last-Event-ID header does; the header wins).',
    },
    instance_id: { type: 'string', pattern: INSTANCE_ID_PATTERN },
    types: { type: 'string', pattern: EVENT_TYPES_PATTERN, description: `Comma-separated: ${EVENT_TYPE_NAMES.join(', ')}.` },
  },
} as const;
export type EventsQuery = FromSchema<typeof eventsQuerySchema>;

/** The `data:` of every change event (its `event:` line is `type`, its `id:` line is `id`). */
export const streamEventSchema = {
  title: 'StreamEvent',
  type: 'object',
  additionalProperties: false,
  required: ['id', 'type', 'at'],
  properties: {
    id: { type: 'integer', minimum: 1, description: 'Only grows; resume after it with Last-Event-ID.' },
    type: { type: 'string', enum: EVENT_TYPE_NAMES },
    at: { type: 'string', format: 'date-time', description: 'When the change was recorded.' },
    instance: { ...instanceSchema, description: 'instance.*: the instance as GET /instances/{id} shows it after the change.' },
    previous_state: { type: ['string', 'null'], description: 'instance.state_changed and instance.terminated: the state before.' },
    operation: { ...operationSchema, description: 'operation.*: the operation as GET /operations/{id} shows it after the change.' },
  },
} as const;
export type StreamEvent = FromSchema<typeof streamEventSchema>;

/**
 * The `data:` of `stream.reset`: the id asked for is no longer kept (older than EVENT_RETENTION_HOURS) or was
 * never recorded; the current state follows in place of the events missed, and the stream goes on after
 * `newest_event_id`.
 */
export const streamResetSchema = {
  title: 'StreamReset',
  type: 'object',
  additionalProperties: false,
  required: ['reason', 'oldest_event_id', 'newest_event_id', 'instances', 'operations'],
  properties: {
    reason: { type: 'string' },
    oldest_event_id: { type: 'integer', minimum: 0 },
    newest_event_id: { type: 'integer', minimum: 0 },
    instances: { type: 'array', items: instanceSchema, description: 'The live instances (of `instance_id` when filtered).' },
    operations: { type: 'array', items: operationSchema, description: 'The operations queued or running.' },
  },
} as const;
export type StreamReset = FromSchema<typeof streamResetSchema>;
