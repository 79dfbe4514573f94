/**
 * The one place where errors become HTTP: every failure is answered as application/problem+json
 * (RFC 9457: type, title, status, detail; `errors` lists failing fields). Unknown errors are logged and
 * answered 500 without internals; everything the service expects has a named class and a status here.
 */
import type { ErrorRequestHandler, Request, RequestHandler, Response } from 'express';
import {
  AppError, FreeTierExceededError, OperationInFlightError, PolicyError, QuotaExceededError, ScriptError,
  StorageUnavailableError, UnavailableError, ValidationError, type ErrorKind, type FieldError, type ScriptFailure,
} from '../domain/errors.js';
import type { Logger } from '../logger.js';
import { requestId } from './context.js';

export const PROBLEM_BASE = 'urn:ec2-creator:problem:';

export interface ProblemSpec {
  status: number;
  slug: string;
  title: string;
  detail: string;
  errors?: FieldError[];
  headers?: Record<string, string>;
  /** Extension members (RFC 9457 §3.2), e.g. operation_id. */
  extensions?: Record<string, unknown>;
}

/** Seconds a client should wait after AWS throttled us (503). */
export const RETRY_AFTER_SECONDS = 30;

const SCRIPT_STATUS: Record<ScriptFailure, { status: number; slug: string; title: string }> = {
  'not-found': { status: 404, slug: 'not-found', title: 'Not found in EC2' },
  conflict: { status: 409, slug: 'conflict', title: 'Conflicting state in EC2' },
  'incorrect-state': { status: 409, slug: 'incorrect-state', title: "The instance's state in EC2 does not allow it" },
  throttled: { status: 503, slug: 'aws-unavailable', title: 'AWS is throttling or unavailable' },
  'wait-timeout': { status: 504, slug: 'aws-timeout', title: 'EC2 did not reach the expected state in time' },
  timeout: { status: 504, slug: 'aws-timeout', title: 'The EC2 operation timed out' },
  'invalid-argument': { status: 502, slug: 'aws-error', title: 'The EC2 layer refused an argument' },
  credentials: { status: 502, slug: 'aws-credentials', title: 'AWS refused our credentials or permissions' },
  'missing-dependency': { status: 502, slug: 'ec2-layer-broken', title: 'The EC2 layer is missing a dependency' },
  'bad-output': { status: 502, slug: 'ec2-layer-broken', title: 'The EC2 layer answered something unexpected' },
  spawn: { status: 502, slug: 'ec2-layer-broken', title: 'The EC2 layer could not be run' },
  signal: { status: 502, slug: 'aws-error', title: 'The EC2 operation was interrupted' },
  other: { status: 502, slug: 'aws-error', title: 'EC2 operation failed' },
};

function fromScriptError(error: ScriptError): ProblemSpec {
  if (error.failure === 'invalid-argument' && error.details.clientInput) {
    return { status: 400, slug: 'validation', title: 'Invalid request', detail: error.message };
  }
  const spec = SCRIPT_STATUS[error.failure];
  return {
    ...spec,
    detail: error.message,
    ...(spec.status === 503 ? { headers: { 'Retry-After': String(RETRY_AFTER_SECONDS) } } : {}),
  };
}

/** zlib and brotli name their failures with these codes when a body does not decode. */
const DECOMPRESSION_FAILURE = /^(?:Z_|ERR_BROTLI|ERR__ERROR_FORMAT|ERR_ZLIB)/;

/** Errors from routing and body parsing: body-parser's carry `type` and `status`. */
function fromBodyParser(error: { type?: unknown; status?: unknown; message?: unknown; code?: unknown }): ProblemSpec | undefined {
  if (error instanceof URIError) {
    return { status: 400, slug: 'malformed-url', title: 'Malformed URL', detail: 'The path holds a malformed percent-encoding' };
  }
  if (typeof error.code === 'string' && DECOMPRESSION_FAILURE.test(error.code)) {
    return {
      status: 400, slug: 'malformed-body', title: 'Malformed body',
      detail: 'The request body does not decode with the Content-Encoding it names',
    };
  }
  switch (error.type) {
    case 'entity.parse.failed':
      return { status: 400, slug: 'malformed-json', title: 'Malformed JSON', detail: 'The request body is not valid JSON' };
    case 'entity.too.large':
      return { status: 413, slug: 'body-too-large', title: 'Request body too large', detail: 'The request body exceeds 16 kB' };
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return { status: 415, slug: 'unsupported-media-type', title: 'Unsupported encoding', detail: String(error.message) };
    case 'request.aborted':
      return { status: 400, slug: 'aborted', title: 'Request aborted', detail: 'The client aborted the request' };
    default:
      if (typeof error.status === 'number' && error.status >= 400 && error.status < 500 && typeof error.type === 'string') {
        return { status: error.status, slug: 'bad-request', title: 'Bad request', detail: String(error.message) };
      }
      return undefined;
  }
}

/**
 * Every kind of named error, its status and title: the compiler refuses a kind without an entry. The
 * kind is the problem type's last part and the error_code an operation record shows.
 */
const PROBLEMS: Record<Exclude<ErrorKind, 'script'>, { status: number; title: string }> = {
  validation: { status: 400, title: 'Invalid request' },
  'not-found': { status: 404, title: 'Not found' },
  conflict: { status: 409, title: 'Conflict' },
  'incorrect-state': { status: 409, title: "The instance's state in EC2 does not allow it" },
  'operation-in-flight': { status: 409, title: 'Another operation is in flight' },
  'quota-exceeded': { status: 409, title: 'Quota exceeded' },
  'launch-policy': { status: 422, title: 'Refused by the launch policy' },
  'free-tier-exceeded': { status: 422, title: 'The free tier would be exceeded' },
  'idempotency-key-reused': { status: 422, title: 'Idempotency-Key reused with a different request' },
  interrupted: { status: 503, title: 'Interrupted by a shutdown' },
  unavailable: { status: 503, title: 'Service unavailable' },
  'storage-unavailable': { status: 503, title: 'Storage unavailable' },
};

/** Seconds a client is told to wait after a shutdown interrupted its operation. */
const INTERRUPTED_RETRY_AFTER_SECONDS = 5;

/** What the error class adds beyond its kind: failing fields, a Retry-After, the operation to follow. */
function specifics(error: AppError): Partial<Pick<ProblemSpec, 'errors' | 'headers' | 'extensions' | 'title'>> {
  if (error instanceof ValidationError || error instanceof PolicyError) return { errors: error.errors };
  if (error instanceof QuotaExceededError) return { title: `Quota ${error.quota} exceeded` };
  if (error instanceof FreeTierExceededError) return { extensions: { overages: error.overages } };
  if (error instanceof OperationInFlightError) {
    return { headers: { Location: `/operations/${error.operationId}` }, extensions: { operation_id: error.operationId } };
  }
  if (error instanceof UnavailableError || error instanceof StorageUnavailableError) {
    return { headers: { 'Retry-After': String(error.retryAfterSeconds) } };
  }
  if (error.kind === 'interrupted') return { headers: { 'Retry-After': String(INTERRUPTED_RETRY_AFTER_SECONDS) } };
  return {};
}

export function problemFor(error: unknown): ProblemSpec | undefined {
  if (error instanceof ScriptError) return fromScriptError(error);
  if (error instanceof AppError) {
    const kind = error.kind as Exclude<ErrorKind, 'script'>;
    return { ...PROBLEMS[kind], slug: kind, detail: error.message, ...specifics(error) };
  }
  if (typeof error === 'object' && error !== null) return fromBodyParser(error);
  return undefined;
}

/** The problem document (also what an Idempotency-Key replay answers). */
export function problemBody(req: Request, res: Response, spec: ProblemSpec): Record<string, unknown> {
  return problemDocument(req.originalUrl.split('?')[0] ?? '', requestId(res), spec);
}

/** The problem document for a request to `path` (its `instance`) under `requestId`. */
export function problemDocument(path: string, requestIdOf: string, spec: ProblemSpec): Record<string, unknown> {
  return {
    type: `${PROBLEM_BASE}${spec.slug}`,
    title: spec.title,
    status: spec.status,
    detail: spec.detail,
    instance: path,
    request_id: requestIdOf,
    ...(spec.errors && spec.errors.length > 0 ? { errors: spec.errors } : {}),
    ...spec.extensions,
  };
}

export function sendProblem(req: Request, res: Response, spec: ProblemSpec): void {
  for (const [name, value] of Object.entries(spec.headers ?? {})) res.setHeader(name, value);
  res
    .status(spec.status)
    .type('application/problem+json')
    .send(JSON.stringify(problemBody(req, res, spec)));
}

export function notFoundHandler(): RequestHandler {
  return (req, res) => {
    sendProblem(req, res, { status: 404, slug: 'not-found', title: 'Not found', detail: `No route for ${req.method} ${req.path}` });
  };
}

export function methodNotAllowed(allowed: string): RequestHandler {
  return (req, res) => {
    sendProblem(req, res, {
      status: 405,
      slug: 'method-not-allowed',
      title: 'Method not allowed',
      detail: `${req.method} is not supported here; use ${allowed}`,
      headers: { Allow: allowed },
    });
  };
}

export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (error: unknown, req, res, next) => {
    if (res.headersSent) {
      next(error);
      return;
    }
    const spec = problemFor(error);
    if (spec) {
      const level = spec.status >= 500 ? 'warn' : 'info';
      logger.log(level, 'request failed', {
        request_id: requestId(res),
        status: spec.status,
        problem: spec.slug,
        error: error instanceof Error ? error.message : String(error),
      });
      sendProblem(req, res, spec);
      return;
    }
    logger.error('unexpected error', { request_id: requestId(res), error });
    sendProblem(req, res, {
      status: 500,
      slug: 'internal',
      title: 'Internal error',
      detail: `Unexpected error; quote request id ${requestId(res)} when reporting it`,
    });
  };
}
