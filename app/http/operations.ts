/**
 * HTTP side of the lifecycle engine: `Prefer: respond-async` (RFC 7240), the Idempotency-Key
 * header (validation, request fingerprint, replay) and turning a Submission into a response.
 */
import { createHash } from 'node:crypto';
import type { Request, Response } from 'express';
import { OperationInFlightError, ValidationError } from '../domain/errors.js';
import type { StoredResponse, Submission } from '../domain/operations.js';
import type { Operation } from '../schemas/operation.js';
import { IDEMPOTENCY_KEY_PATTERN } from '../schemas/operation.js';
import { problemBody, problemFor } from './problems.js';

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

/** How the engine remembers this request's outcome: successes and 4xx problems; 5xx are retried instead. */
export function rememberFor<T>(req: Request, res: Response, success: (value: T) => StoredResponse) {
  return {
    success,
    failure(error: unknown): StoredResponse | undefined {
      const spec = problemFor(error);
      if (!spec || spec.status >= 500) return undefined;
      return { status: spec.status, body: problemBody(req, res, spec) };
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

/**
 * Answers a submission: a replay as first answered; asynchronously 202 + Location + the operation;
 * synchronously the outcome (or the error, which the error handler maps).
 */
export async function answer<T>(
  req: Request,
  res: Response,
  submission: Submission<T>,
  respond: (value: T) => void,
): Promise<void> {
  const isAsync = prefersAsync(req);
  if (submission.type === 'replay') {
    const { response } = submission;
    res.setHeader('Idempotent-Replayed', 'true');
    res.setHeader('Operation-Id', submission.operationId);
    if (response.location) res.location(response.location);
    res.status(response.status);
    if (response.status === 204 || response.body === null) {
      res.end();
    } else if (response.status >= 400) {
      res.type('application/problem+json').send(JSON.stringify(response.body));
    } else {
      res.json(response.body);
    }
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
  respond(await submission.done);
}
