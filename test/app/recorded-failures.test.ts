/**
 * A client is not always answered by the server that ran its operation (replicas take each other's queued
 * work): the failure read back from the record must answer exactly as the error itself would have.
 */
import assert from 'node:assert/strict';
import {
  ConflictError, InterruptedError, NotFoundError, OperationInFlightError, PolicyError, QuotaExceededError, ScriptError,
  StorageUnavailableError, UnavailableError, ValidationError,
} from '../../app/domain/errors.js';
import { describeFailure, failureOf } from '../../app/domain/recorded-failures.js';
import { problemFor } from '../../app/http/problems.js';
import type { OperationRow } from '../../app/store/operations-repo.js';

function recorded(error: unknown, status: OperationRow['status'] = 'failed'): OperationRow {
  const failure = describeFailure(error);
  return {
    row_id: 1, id: 'op-1', kind: 'create', instance_id: null, client_token: null, idempotency_key: null, status,
    exit_code: failure.exitCode, error_code: failure.errorCode, error_message: failure.errorMessage,
    stderr_tail: failure.stderrTail, note: null, result: null, request_id: 'req-1', actor: null, client_address: null,
    created_at: '2026-11-23T10:00:00.000Z', started_at: null, finished_at: null, duration_ms: null, script_pgid: null,
    owner: 'replica-b', request: null,
    error_details: failure.errorDetails === undefined ? null : JSON.stringify(failure.errorDetails),
  };
}

describe('failures read back from an operation record', () => {
  const errors: Array<[string, Error]> = [
    ['a launch-policy refusal with its failing field', new PolicyError('The AMI does not exist', [{ field: 'ami', message: 'ami-1 does not exist' }])],
    ['a validation error', new ValidationError('bad', [{ field: 'name', message: 'too long' }])],
    ['the quota', new QuotaExceededError('quota of 3 live instances reached', 'MAX_INSTANCES', 3)],
    ['a conflict', new ConflictError('Instance i-1 cannot stop in its current state')],
    ['a missing instance', new NotFoundError('No instance i-1')],
    ['an operation in flight', new OperationInFlightError('busy', 'op-9')],
    ['throttling, with its Retry-After', new ScriptError('throttled', 'create_instance.sh', 'Rate exceeded', { exitCode: 5, code: 'RequestLimitExceeded', stderrTail: 'slow down' })],
    ['an argument the client gave', new ScriptError('invalid-argument', 'create_instance.sh', 'bad name', { exitCode: 2, clientInput: true })],
    ['a script timeout', new ScriptError('timeout', 'stop_instance.sh', 'killed after 300000 ms')],
    ['something EC2 does not have', new ScriptError('not-found', 'describe_image.sh', 'no such image', { exitCode: 3 })],
    ['an unavailable server', new UnavailableError('queue full', 7)],
    ['an unavailable store', new StorageUnavailableError('disk full', 11)],
  ];
  for (const [what, error] of errors) {
    it(`when ${what} is read back, then it answers with the same status, headers and problem`, () => {
      const rebuilt = failureOf(recorded(error));
      assert.deepEqual(problemFor(rebuilt), problemFor(error));
      assert.equal(rebuilt.constructor, error.constructor);
    });
  }

  it('when an interrupted operation is read back, then its client is told it was interrupted, with the note', () => {
    const row = { ...recorded(new Error('x'), 'interrupted'), note: 'interrupted: the server running it stopped renewing its lease' };
    const rebuilt = failureOf(row);
    assert.ok(rebuilt instanceof InterruptedError);
    assert.equal(rebuilt.message, row.note);
    assert.equal(problemFor(rebuilt)?.status, 503);
  });

  it('when an unexpected error is read back, then it stays an internal error (500) with its message', () => {
    const rebuilt = failureOf(recorded(new TypeError('boom')));
    assert.equal(problemFor(rebuilt), undefined);
    assert.equal(rebuilt.message, 'boom');
  });
});
