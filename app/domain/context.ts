import type { RunContext } from '../ec2/runner.js';

/** Who asked for an operation and how to follow it: passed from the HTTP layer through the domain. */
export interface OpContext {
  requestId?: string | undefined;
  /** The authenticated caller: the API token's name, never the token (audit trail). */
  actor?: string | undefined;
  /** The client's address as Express sees it (audit trail). */
  clientAddress?: string | undefined;
  /** Told the process group of each script run on behalf of the operation (null once it ended): see RunContext. */
  onScript?: ((pgid: number | null) => void) | undefined;
}

/** A script run on behalf of `ctx`, held to `timeoutMs`. */
export function runContextOf(ctx: OpContext | undefined, timeoutMs: number): RunContext {
  return { requestId: ctx?.requestId, timeoutMs, onProcessGroup: ctx?.onScript };
}
