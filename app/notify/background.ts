/**
 * Deliveries that run after the caller's response has gone out and never fail it: each is started on the
 * next turn, a failure that escapes it is logged, and `idle()` tells when all handed over have ended.
 */
import type { Logger } from '../logger.js';

export interface Background {
  run(work: () => Promise<void>): void;
  idle(): Promise<void>;
}

export function createBackground(logger: Logger, failure: string): Background {
  const inFlight = new Set<Promise<void>>();
  return {
    run(work) {
      // setImmediate: the delivery starts after the caller's response has gone out.
      const delivery = new Promise<void>((resolve) => setImmediate(resolve))
        .then(work)
        .catch((error: unknown) => {
          logger.error(failure, { error: error instanceof Error ? error.message : String(error) });
        })
        .finally(() => inFlight.delete(delivery));
      inFlight.add(delivery);
    },
    async idle() {
      while (inFlight.size > 0) await Promise.all([...inFlight]);
    },
  };
}
