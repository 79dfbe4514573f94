/**
 * The named, HTTP-agnostic errors of the service. Each carries what went wrong in domain terms;
 * app/http/errors.ts maps the classes to statuses in exactly one place.
 */
export interface FieldError {
  field: string;
  message: string;
}

export abstract class AppError extends Error {
  abstract readonly kind: string;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The request itself is malformed (shape, types, unknown fields, ids). */
export class ValidationError extends AppError {
  readonly kind = 'validation';
  constructor(message: string, readonly errors: FieldError[] = []) {
    super(message);
  }
}

/** No record (or EC2 resource) with that id. */
export class NotFoundError extends AppError {
  readonly kind = 'not-found';
}

/** The resource's current state does not allow the operation. */
export class ConflictError extends AppError {
  readonly kind = 'conflict';
}

/** Well-formed, but refused by the launch policy (type not allowed, storage cap, AMI/architecture). */
export class PolicyError extends AppError {
  readonly kind = 'policy';
  constructor(message: string, readonly errors: FieldError[] = []) {
    super(message);
  }
}

/**
 * Why a script (the EC2 layer) failed, from its exit code class:
 * 1 other · 2 invalid-argument · 3 not-found · 4 conflict · 5 throttled · 6 credentials · 7 wait-timeout ·
 * 8 missing-dependency; `timeout` when our runner killed it; `bad-output` when stdout broke the contract;
 * `spawn` when it could not be started at all; `signal` when something else killed it.
 */
export type ScriptFailure =
  | 'other'
  | 'invalid-argument'
  | 'not-found'
  | 'conflict'
  | 'throttled'
  | 'credentials'
  | 'wait-timeout'
  | 'missing-dependency'
  | 'timeout'
  | 'bad-output'
  | 'spawn'
  | 'signal';

export class ScriptError extends AppError {
  readonly kind = 'script';
  constructor(
    readonly failure: ScriptFailure,
    readonly script: string,
    message: string,
    readonly details: {
      exitCode?: number | undefined;
      signal?: string | undefined;
      /** The error code the script reported (AWS error code or the script's own). */
      code?: string | undefined;
      /** Whether the failing arguments came from the client (an invalid-argument then means a 400). */
      clientInput?: boolean | undefined;
      /** The last part of what the script wrote on stderr (recorded on the operation). */
      stderrTail?: string | undefined;
    } = {},
  ) {
    super(message);
  }
}

/** Service is shutting down or otherwise unable to accept work right now. */
export class UnavailableError extends AppError {
  readonly kind = 'unavailable';
  constructor(message: string, readonly retryAfterSeconds = 5) {
    super(message);
  }
}

/** Another mutating operation on the same instance (or with the same Idempotency-Key) is in flight. */
export class OperationInFlightError extends ConflictError {
  constructor(message: string, readonly operationId: string) {
    super(message);
  }
}

/** An Idempotency-Key was reused with a different request. */
export class IdempotencyMismatchError extends AppError {
  readonly kind = 'idempotency-mismatch';
}

/** The operation was interrupted (shutdown killed it) before it finished. */
export class InterruptedError extends AppError {
  readonly kind = 'interrupted';
}

// --- security (issue 6) ---
/** Launching would exceed the quota of live managed instances (MAX_INSTANCES). */
export class QuotaExceededError extends AppError {
  readonly kind = 'quota-exceeded';
  constructor(message: string, readonly quota: string, readonly limit: number) {
    super(message);
  }
}
