/**
 * A failure as an operation record keeps it, and back. The server that answers a client is not always the
 * one that ran its operation (replicas take each other's queued work), so the record carries, besides the
 * code and message everybody reads, the particulars the answer needs: failing fields, the quota, the script.
 */
import { SCRIPT_FAILURES } from '../ec2/errors.js';
import type { OperationRow } from '../store/operations-repo.js';
import {
  AppError, ConflictError, IdempotencyMismatchError, IncorrectStateError, InterruptedError, NotFoundError, OperationInFlightError, PolicyError,
  QuotaExceededError, ScriptError, StorageUnavailableError, UnavailableError, ValidationError,
  type FieldError, type ScriptFailure,
} from './errors.js';

export interface RecordedFailure {
  errorCode: string;
  errorMessage: string;
  exitCode: number | null;
  stderrTail: string | null;
  /** Stored as JSON in error_details. */
  errorDetails?: FailureDetails | undefined;
}

/** What error_details holds: only what the error class needs beyond its code and message. */
interface FailureDetails {
  message?: string;
  errors?: FieldError[];
  quota?: string;
  limit?: number;
  operation_id?: string;
  retry_after_seconds?: number;
  script?: string;
  exit_code?: number;
  signal?: string;
  code?: string;
  client_input?: boolean;
  stderr_tail?: string;
}

/** The failure as the operation record shows it. */
export function describeFailure(error: unknown): RecordedFailure {
  if (error instanceof ScriptError) {
    const { details } = error;
    return {
      errorCode: error.code,
      errorMessage: details.code ? `${error.message} (${details.code})` : error.message,
      exitCode: details.exitCode ?? null,
      stderrTail: details.stderrTail ?? null,
      errorDetails: {
        message: error.message, script: error.script, exit_code: details.exitCode, signal: details.signal,
        code: details.code, client_input: details.clientInput, stderr_tail: details.stderrTail,
      },
    };
  }
  if (error instanceof AppError) {
    return { errorCode: error.code, errorMessage: error.message, exitCode: null, stderrTail: null, errorDetails: particulars(error) };
  }
  return { errorCode: 'internal', errorMessage: error instanceof Error ? error.message : String(error), exitCode: null, stderrTail: null };
}

function particulars(error: AppError): FailureDetails | undefined {
  if (error instanceof ValidationError || error instanceof PolicyError) return { errors: error.errors };
  if (error instanceof QuotaExceededError) return { quota: error.quota, limit: error.limit };
  if (error instanceof OperationInFlightError) return { operation_id: error.operationId };
  if (error instanceof UnavailableError || error instanceof StorageUnavailableError) return { retry_after_seconds: error.retryAfterSeconds };
  return undefined;
}

const SCRIPT_FAILURE_CODES: ReadonlySet<string> = new Set(SCRIPT_FAILURES);

const DOMAIN_KINDS: ReadonlySet<string> = new Set(['not-found', 'conflict', 'incorrect-state']);

/** The error a finished, unsuccessful operation ended with, as its own server would have thrown it. */
export function failureOf(row: OperationRow): Error {
  const message = row.error_message ?? row.note ?? `Operation ${row.id} ${row.status}`;
  if (row.status === 'interrupted') return new InterruptedError(row.note ?? `Operation ${row.id} was interrupted`);
  let details: FailureDetails = {};
  try {
    details = row.error_details === null ? {} : (JSON.parse(row.error_details) as FailureDetails);
  } catch {
    details = {};
  }
  const code = row.error_code ?? 'internal';
  // 'not-found', 'conflict' and 'incorrect-state' name both a script's failure and the domain's own: the script
  // tells them apart.
  if (SCRIPT_FAILURE_CODES.has(code) && (details.script !== undefined || !DOMAIN_KINDS.has(code))) {
    return new ScriptError(code as ScriptFailure, details.script ?? 'unknown', details.message ?? message, {
      exitCode: details.exit_code ?? row.exit_code ?? undefined,
      signal: details.signal,
      code: details.code,
      clientInput: details.client_input,
      stderrTail: details.stderr_tail ?? row.stderr_tail ?? undefined,
    });
  }
  switch (code) {
    case 'validation': return new ValidationError(message, details.errors ?? []);
    case 'not-found': return new NotFoundError(message);
    case 'conflict': return new ConflictError(message);
    case 'incorrect-state': return new IncorrectStateError(message);
    case 'operation-in-flight': return new OperationInFlightError(message, details.operation_id ?? row.id);
    case 'launch-policy': return new PolicyError(message, details.errors ?? []);
    case 'quota-exceeded': return new QuotaExceededError(message, details.quota ?? 'instances', details.limit ?? 0);
    case 'idempotency-key-reused': return new IdempotencyMismatchError(message);
    case 'interrupted': return new InterruptedError(message);
    case 'unavailable': return new UnavailableError(message, details.retry_after_seconds);
    case 'storage-unavailable': return new StorageUnavailableError(message, details.retry_after_seconds ?? 5);
    default: return new Error(message);
  }
}
