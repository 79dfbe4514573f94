/** The EC2 layer's one error: why a script run failed, classified from its exit code and output. */
import { AppError } from '../errors.js';

/**
 * Why a script (the EC2 layer) failed, from its exit code class:
 * 1 other · 2 invalid-argument · 3 not-found · 4 conflict · 5 throttled · 6 credentials · 7 wait-timeout ·
 * 8 missing-dependency · 10 incorrect-state (EC2's IncorrectInstanceState: the instance's state does not allow
 * it); `timeout` when our runner killed it; `bad-output` when stdout broke the contract;
 * `spawn` when it could not be started at all; `signal` when something else killed it.
 */
export const SCRIPT_FAILURES = [
  'other', 'invalid-argument', 'not-found', 'conflict', 'throttled', 'credentials', 'wait-timeout',
  'missing-dependency', 'incorrect-state', 'timeout', 'bad-output', 'spawn', 'signal',
] as const;
export type ScriptFailure = (typeof SCRIPT_FAILURES)[number];

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
      /** The instance a launch script had launched before it failed (its error document names it). */
      instanceId?: string | undefined;
    } = {},
  ) {
    super(message);
  }

  override get code(): string {
    return this.failure;
  }
}
