/**
 * Operations: every mutating request and every reconciliation is recorded as one, and clients
 * follow them with GET /operations/{id}. Single source for ajv, the OpenAPI document and the types.
 */
import type { FromSchema } from 'json-schema-to-ts';
import { INSTANCE_ID_PATTERN } from './common.js';
import { MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE } from './requests.js';

export const OPERATION_KINDS = ['create', 'start', 'stop', 'terminate', 'sync'] as const;
export const OPERATION_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'interrupted'] as const;
export const OPERATION_ID_PATTERN = '^op-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';

const nullableString = { type: ['string', 'null'] } as const;

export const syncResultSchema = {
  title: 'SyncResult',
  type: 'object',
  additionalProperties: false,
  required: ['updated', 'imported', 'vanished', 'unconfirmed'],
  properties: {
    updated: { type: 'integer', minimum: 0, description: 'Records whose state or addresses changed.' },
    imported: {
      type: 'integer',
      minimum: 0,
      description: 'Instances tagged ManagedBy=ec2-creator that had no record (or whose launch record was unresolved).',
    },
    vanished: { type: 'integer', minimum: 0, description: 'Records whose instance EC2 no longer knows, now terminated.' },
    unconfirmed: {
      type: 'integer',
      minimum: 0,
      description: 'Records and launches EC2 did not show, left as they are because they were launched within the last five minutes (EC2 reads lag behind a launch): later syncs look again.',
    },
    operation_id: { type: 'string', pattern: OPERATION_ID_PATTERN },
  },
} as const;
export type SyncResult = FromSchema<typeof syncResultSchema>;

export const operationSchema = {
  title: 'Operation',
  type: 'object',
  additionalProperties: false,
  required: [
    'id', 'kind', 'status', 'instance_id', 'client_token', 'idempotency_key', 'exit_code', 'error_code',
    'error_message', 'stderr_tail', 'note', 'result', 'request_id', 'actor', 'client_address', 'created_at',
    'started_at', 'finished_at', 'duration_ms',
  ],
  properties: {
    id: { type: 'string', pattern: OPERATION_ID_PATTERN, examples: ['op-0f8b8a9e-6b1d-4c55-9a43-0d3c3f1e2a10'] },
    kind: { type: 'string', enum: OPERATION_KINDS },
    status: {
      type: 'string',
      enum: OPERATION_STATUSES,
      description: 'queued → running → succeeded | failed; interrupted when the server stopped while it ran.',
    },
    instance_id: { ...nullableString, description: 'Null for a launch until EC2 has given the instance an id, and for sync.' },
    client_token: { ...nullableString, description: 'The EC2 ClientToken of a launch (also tagged ec2-creator:client-token).' },
    idempotency_key: nullableString,
    exit_code: { type: ['integer', 'null'], description: "The failing script's exit code." },
    error_code: {
      ...nullableString,
      description: 'Why it failed: the failure class (timeout, wait-timeout, throttled, conflict, not-found, launch-policy, …).',
    },
    error_message: nullableString,
    stderr_tail: { ...nullableString, description: 'The end of the failing script\'s stderr.' },
    note: { ...nullableString, description: 'What happened besides (interrupted, reconciled, adopted by client token).' },
    result: {
      type: ['object', 'null'],
      description: 'On success: the instance (create, start, stop, terminate) or the counts (sync).',
    },
    request_id: nullableString,
    actor: { ...nullableString, description: 'The authenticated caller (token name) when there is one.' },
    client_address: nullableString,
    created_at: { type: 'string', format: 'date-time' },
    started_at: { type: ['string', 'null'], format: 'date-time' },
    finished_at: { type: ['string', 'null'], format: 'date-time' },
    duration_ms: { type: ['integer', 'null'] },
  },
} as const;
export type Operation = FromSchema<typeof operationSchema>;

export const operationListSchema = {
  title: 'OperationList',
  type: 'object',
  additionalProperties: false,
  required: ['operations', 'next_cursor'],
  properties: {
    operations: { type: 'array', items: operationSchema },
    next_cursor: { type: ['string', 'null'], description: 'Pass as `cursor` to get the next page; null on the last page.' },
  },
} as const;
export type OperationList = FromSchema<typeof operationListSchema>;

export const listOperationsQuerySchema = {
  title: 'ListOperationsQuery',
  type: 'object',
  additionalProperties: false,
  properties: {
    instance_id: { type: 'string', pattern: INSTANCE_ID_PATTERN },
    status: { type: 'string', enum: OPERATION_STATUSES },
    kind: { type: 'string', enum: OPERATION_KINDS },
    actor: { type: 'string', minLength: 1, maxLength: 128 },
    client_address: { type: 'string', minLength: 1, maxLength: 64 },
    limit: { type: 'integer', minimum: 1, maximum: MAX_PAGE_SIZE, default: DEFAULT_PAGE_SIZE },
    cursor: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$', description: 'Opaque; from next_cursor.' },
  },
} as const;
export type ListOperationsQuery = FromSchema<typeof listOperationsQuerySchema>;

export const operationIdParamsSchema = {
  title: 'OperationIdParams',
  type: 'object',
  additionalProperties: false,
  required: ['id'],
  properties: { id: { type: 'string', pattern: OPERATION_ID_PATTERN } },
} as const;
export type OperationIdParams = FromSchema<typeof operationIdParamsSchema>;

/** Idempotency-Key: 1–255 printable ASCII characters (quotes of a structured-field string are removed). */
export const IDEMPOTENCY_KEY_PATTERN = '^[\\x20-\\x7e]{1,255}$';
