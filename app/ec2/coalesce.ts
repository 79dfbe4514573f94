/**
 * Changes of one kind that arrive close together run as one script run: the CLI's start-up, not EC2, is
 * what each run costs, so eight stops in one run cost about what one does. Each caller still gets its own
 * instance or its own error.
 */
import type { RunContext } from './runner.js';

export interface CoalesceOptions<T> {
  /** How long the first change waits for others to join it; 0 runs every change on its own. */
  windowMs: number;
  /** A batch this large runs at once, without waiting out the window. */
  maxBatch: number;
  one(id: string, ctx: RunContext): Promise<T>;
  /** Every id's outcome; a rejection is the whole run's failure, shared by every caller in it. */
  many(ids: string[], ctx: RunContext): Promise<Map<string, T | Error>>;
}

interface Waiting<T> {
  id: string;
  ctx: RunContext;
  resolve(value: T): void;
  reject(error: unknown): void;
}

/** One run on behalf of several callers: the longest time bound, and every caller told the process group. */
export function sharedRunContext(contexts: readonly RunContext[]): RunContext {
  const requestIds = [...new Set(contexts.map((ctx) => ctx.requestId).filter((id): id is string => Boolean(id)))];
  const bounds = contexts.map((ctx) => ctx.timeoutMs).filter((ms): ms is number => ms !== undefined);
  return {
    requestId: requestIds.length > 0 ? requestIds.join(',') : undefined,
    timeoutMs: bounds.length > 0 ? Math.max(...bounds) : undefined,
    clientInput: contexts.some((ctx) => ctx.clientInput),
    onProcessGroup: (pgid) => {
      for (const ctx of contexts) ctx.onProcessGroup?.(pgid);
    },
  };
}

export function coalesce<T>(options: CoalesceOptions<T>): (id: string, ctx?: RunContext) => Promise<T> {
  let gathering: Array<Waiting<T>> = [];
  let timer: NodeJS.Timeout | undefined;

  function flush(): void {
    if (timer) clearTimeout(timer);
    timer = undefined;
    const batch = gathering;
    gathering = [];
    if (batch.length === 1) {
      const [only] = batch as [Waiting<T>];
      options.one(only.id, only.ctx).then(only.resolve, only.reject);
    } else if (batch.length > 1) {
      runMany(batch);
    }
  }

  function runMany(batch: Array<Waiting<T>>): void {
    options.many(batch.map((waiting) => waiting.id), sharedRunContext(batch.map((waiting) => waiting.ctx))).then(
      (outcomes) => {
        for (const waiting of batch) {
          const outcome = outcomes.get(waiting.id);
          if (outcome === undefined) waiting.reject(new Error(`the batch run reported nothing for ${waiting.id}`));
          else if (outcome instanceof Error) waiting.reject(outcome);
          else waiting.resolve(outcome);
        }
      },
      (error: unknown) => {
        for (const waiting of batch) waiting.reject(error);
      },
    );
  }

  return (id, ctx = {}) => {
    if (options.windowMs <= 0) return options.one(id, ctx);
    return new Promise<T>((resolve, reject) => {
      // One run names an id once; a second change of the same id (the engine allows none) gets a run of its own.
      if (gathering.some((waiting) => waiting.id === id)) flush();
      gathering.push({ id, ctx, resolve, reject });
      if (gathering.length >= options.maxBatch) flush();
      else timer ??= setTimeout(flush, options.windowMs);
    });
  };
}
