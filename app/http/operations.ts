/**
 * HTTP side of the lifecycle engine: `Prefer: respond-async` (RFC 7240), the Idempotency-Key
 * header (validation, request fingerprint, replay) and turning a Submission into a response.
 */
import { createHash } from 'node:crypto';
import type { Request, Response } from 'express';
import { OperationInFlightError, ValidationError } from '../domain/errors.js';
import type { Remember, StoredResponse, Submission } from '../domain/operations.js';
import type { Instance } from '../schemas/instance.js';
import type { Operation } from '../schemas/operation.js';
import type { OperationKind, OperationRow } from '../store/operations-repo.js';
import { IDEMPOTENCY_KEY_PATTERN } from '../schemas/operation.js';
import { problemBody, problemDocument, problemFor, type ProblemSpec } from './problems.js';

const KEY = new RegExp(IDEMPOTENCY_KEY_PATTERN);

/** RFC 7240: `Prefer: respond-async` (possibly among other preferences, possibly with parameters). */
export function prefersAsync(req: Request): boolean {
  const header = req.get('prefer');
  if (!header) return false;
  return header
    .split(',')
    .some((preference) => (preference.split(';')[0] ?? '').trim().toLowerCase() === 'respond-async');
}

/** JSON with object keys sorted at every level, so equal bodies have equal fingerprints. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value ?? null);
}

/** The Idempotency-Key of a mutating request with its fingerprint (method, path, canonical validated body). */
export function idempotencyFrom(req: Request, body: unknown = null): { key: string; fingerprint: string } | undefined {
  const raw = req.get('idempotency-key');
  if (raw === undefined) return undefined;
  // A structured-field string ("…", draft-ietf-httpapi-idempotency-key-header) or a bare token.
  const key = raw.length >= 2 && raw.startsWith('"') && raw.endsWith('"') ? raw.slice(1, -1) : raw;
  if (!KEY.test(key)) {
    throw new ValidationError('The Idempotency-Key header is invalid', [
      { field: 'Idempotency-Key', message: 'must be 1 to 255 printable ASCII characters' },
    ]);
  }
  const path = req.originalUrl.split('?')[0] ?? '';
  const fingerprint = createHash('sha256').update(`${req.method} ${path}\n${canonicalJson(body)}`).digest('hex');
  return { key, fingerprint };
}

/** What each kind of change answers on success: also what a replay of it answers. */
export const ANSWERS: Record<Exclude<OperationKind, 'sync'>, (instance: Instance) => StoredResponse> = {
  create: (instance) => ({ status: 201, body: instance, location: `/instances/${instance.id}` }),
  start: (instance) => ({ status: 200, body: instance }),
  stop: (instance) => ({ status: 200, body: instance }),
  terminate: () => ({ status: 204, body: null }),
};

/** How the engine remembers this request's outcome: successes and 4xx problems; 5xx are retried instead. */
export function rememberFor(req: Request, res: Response, kind: keyof typeof ANSWERS): Remember<Instance> {
  return remembering(kind, (spec) => problemBody(req, res, spec));
}

/**
 * How the outcome of an operation run from its record (another server accepted it) is remembered: as the
 * request that asked for it would have been answered, its path and request id taken from the record.
 */
export function rememberRecorded(row: OperationRow): Remember<unknown> | undefined {
  if (row.kind === 'sync') return undefined;
  const path = row.kind === 'create' ? '/instances'
    : row.kind === 'terminate' ? `/instances/${row.instance_id}` : `/instances/${row.instance_id}/${row.kind}`;
  const answer = remembering(row.kind, (spec) => problemDocument(path, row.request_id ?? 'unknown', spec));
  return { success: (value) => answer.success(value as Instance), failure: answer.failure };
}

function remembering(kind: keyof typeof ANSWERS, body: (spec: ProblemSpec) => Record<string, unknown>): Remember<Instance> {
  return {
    success: ANSWERS[kind],
    failure(error: unknown): StoredResponse | undefined {
      const spec = problemFor(error);
      if (!spec || spec.status >= 500) return undefined;
      return { status: spec.status, body: body(spec) };
    },
  };
}

function accepted(res: Response, operation: Operation): void {
  res
    .status(202)
    .location(`/operations/${operation.id}`)
    .setHeader('Preference-Applied', 'respond-async')
    .json(operation);
}

/** Sends a stored (or just built) response: a problem as application/problem+json, nothing for 204. */
function send(res: Response, response: StoredResponse): void {
  if (response.location) res.location(response.location);
  res.status(response.status);
  if (response.status === 204 || response.body === null) {
    res.end();
  } else if (response.status >= 400) {
    res.type('application/problem+json').send(JSON.stringify(response.body));
  } else {
    res.json(response.body);
  }
}

/**
 * Answers a submission: a replay as first answered; asynchronously 202 + Location + the operation;
 * synchronously the outcome as ANSWERS says (or the error, which the error handler maps).
 */
export async function answer(
  req: Request,
  res: Response,
  submission: Submission<Instance>,
  kind: keyof typeof ANSWERS,
): Promise<void> {
  const isAsync = prefersAsync(req);
  if (submission.type === 'replay') {
    res.setHeader('Idempotent-Replayed', 'true');
    res.setHeader('Operation-Id', submission.operationId);
    send(res, submission.response);
    return;
  }
  if (submission.type === 'in-flight') {
    const { operation } = submission;
    res.setHeader('Operation-Id', operation.id);
    if (isAsync) {
      accepted(res, operation);
      return;
    }
    throw new OperationInFlightError(
      `The first request with this Idempotency-Key is still in flight as operation ${operation.id}`,
      operation.id,
    );
  }
  res.setHeader('Operation-Id', submission.operation.id);
  if (isAsync) {
    accepted(res, submission.operation);
    return;
  }
  send(res, ANSWERS[kind](await submission.done));
}
