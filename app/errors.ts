/**
 * The base of the service's named, HTTP-agnostic errors. Each layer names its own (app/domain/errors.ts,
 * app/ec2/errors.ts, app/store/errors.ts); every kind is listed here, so the one map from kind to HTTP
 * status (app/http/problems.ts) is checked by the compiler, and the kind is also the stable code an
 * operation record shows (`error_code`) and the problem type's last part.
 */
export type ErrorKind =
  | 'validation'
  | 'not-found'
  | 'conflict'
  | 'incorrect-state'
  | 'operation-in-flight'
  | 'launch-policy'
  | 'quota-exceeded'
  | 'free-tier-exceeded'
  | 'idempotency-key-reused'
  | 'interrupted'
  | 'unavailable'
  | 'storage-unavailable'
  | 'script';

export interface FieldError {
  field: string;
  message: string;
}

export abstract class AppError extends Error {
  abstract readonly kind: ErrorKind;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }

  /** What an operation record shows as its error_code (a script error names its failure class). */
  get code(): string {
    return this.kind;
  }
}
