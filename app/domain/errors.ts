/**
 * The domain's named, HTTP-agnostic errors (app/errors.ts lists every kind; app/http/problems.ts maps
 * them to statuses in exactly one place). The EC2 layer's and the store's own errors are re-exported, so
 * the domain and the HTTP layer name every failure from here.
 */
import { AppError } from '../errors.js';

export { AppError, type ErrorKind, type FieldError } from '../errors.js';
export { ScriptError, type ScriptFailure } from '../ec2/errors.js';
export { StorageUnavailableError } from '../store/errors.js';
import type { FieldError } from '../errors.js';

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

/**
 * EC2 refused the change because of the instance's state at that moment (IncorrectInstanceState: stopping a
 * pending instance, starting a stopping one). Unlike a conflict, it passes: the transition ends.
 */
export class IncorrectStateError extends AppError {
  readonly kind = 'incorrect-state';
}

/** Well-formed, but refused by the launch policy (type not allowed, storage cap, AMI/architecture). */
export class PolicyError extends AppError {
  readonly kind = 'launch-policy';
  constructor(message: string, readonly errors: FieldError[] = []) {
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
export class OperationInFlightError extends AppError {
  readonly kind = 'operation-in-flight';
  constructor(message: string, readonly operationId: string) {
    super(message);
  }
}

/** An Idempotency-Key was reused with a different request. */
export class IdempotencyMismatchError extends AppError {
  readonly kind = 'idempotency-key-reused';
}

/** The operation was interrupted (shutdown killed it) before it finished. */
export class InterruptedError extends AppError {
  readonly kind = 'interrupted';
}

/** Launching would exceed the quota of live managed instances (MAX_INSTANCES). */
export class QuotaExceededError extends AppError {
  readonly kind = 'quota-exceeded';
  constructor(message: string, readonly quota: string, readonly limit: number) {
    super(message);
  }
}

/** A figure the free-tier meter projects for the month, past its allowance. */
export interface Overage {
  field: 'instance_hours' | 'ebs_gb_months' | 'public_ipv4_hours';
  projected: number;
  allowance: number;
}

/** A create or start whose projection would pass a free-tier allowance, under FREE_TIER_GUARD=refuse. */
export class FreeTierExceededError extends AppError {
  readonly kind = 'free-tier-exceeded';
  constructor(message: string, readonly overages: Overage[]) {
    super(message);
  }
}
