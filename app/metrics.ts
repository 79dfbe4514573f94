/**
 * Prometheus metrics (prom-client), one registry per app so that servers in one process (tests) keep
 * theirs apart. What is counted as it happens (HTTP requests, script runs) is recorded here; what is a
 * state (queue, instances, operations, stream clients) is read when Prometheus scrapes, from `gauges`.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { ScriptError } from './ec2/errors.js';
import type { ScriptRunner } from './ec2/runner.js';

export interface MetricGauges {
  /** This server's script slots in use and operations waiting for one. */
  queue(): { running: number; queued: number };
  /** Live instances by state (the database: the same on every replica). */
  instancesByState(): Promise<Record<string, number>>;
  /** Operations recorded by kind and status (the database: the same on every replica). */
  operationsByKindAndStatus(): Promise<Array<{ kind: string; status: string; count: number }>>;
  /** Event streams open on this server. */
  eventClients(): number;
}

export interface Metrics {
  readonly registry: Registry;
  /** Records one answered HTTP request under its route template (never the raw path). */
  observeRequest(method: string, route: string, status: number, seconds: number): void;
  /** The runner, each script run counted and timed by script and outcome. */
  instrument(runner: ScriptRunner): ScriptRunner;
  /** Where the states come from (wired once the services exist). */
  readFrom(gauges: MetricGauges): void;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  let gauges: MetricGauges | undefined;

  const requests = new Histogram({
    name: 'ec2creator_http_request_duration_seconds',
    help: 'HTTP requests by method, route template and status, and how long they took to answer',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
    registers: [registry],
  });
  const scriptRuns = new Counter({
    name: 'ec2creator_script_runs_total',
    help: 'Script runs by script and outcome (ok, or the failure class: throttled, timeout, not-found, ...)',
    labelNames: ['script', 'outcome'] as const,
    registers: [registry],
  });
  const scriptSeconds = new Histogram({
    name: 'ec2creator_script_duration_seconds',
    help: 'How long script runs took, by script and outcome',
    labelNames: ['script', 'outcome'] as const,
    buckets: [0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600],
    registers: [registry],
  });
  new Gauge({
    name: 'ec2creator_operations_running',
    help: 'Changing operations running on this server (each holds a MAX_CONCURRENT_SCRIPTS slot)',
    registers: [registry],
    collect() {
      if (gauges) this.set(gauges.queue().running);
    },
  });
  new Gauge({
    name: 'ec2creator_operations_queued',
    help: 'Operations waiting on this server for a script slot',
    registers: [registry],
    collect() {
      if (gauges) this.set(gauges.queue().queued);
    },
  });
  new Gauge({
    name: 'ec2creator_event_stream_clients',
    help: 'GET /events streams open on this server',
    registers: [registry],
    collect() {
      if (gauges) this.set(gauges.eventClients());
    },
  });
  new Gauge({
    name: 'ec2creator_instances',
    help: 'Live managed instances by state, as recorded (the same on every replica)',
    labelNames: ['state'] as const,
    registers: [registry],
    async collect() {
      if (!gauges) return;
      this.reset();
      for (const [state, count] of Object.entries(await gauges.instancesByState())) this.set({ state }, count);
    },
  });
  new Gauge({
    name: 'ec2creator_operations',
    help: 'Operations recorded, by kind and status (the same on every replica)',
    labelNames: ['kind', 'status'] as const,
    registers: [registry],
    async collect() {
      if (!gauges) return;
      this.reset();
      for (const { kind, status, count } of await gauges.operationsByKindAndStatus()) this.set({ kind, status }, count);
    },
  });

  return {
    registry,
    observeRequest(method, route, status, seconds) {
      requests.observe({ method, route, status_code: String(status) }, seconds);
    },
    instrument(runner) {
      return {
        get timeoutMs() {
          return runner.timeoutMs;
        },
        killAll: (options) => runner.killAll(options),
        async run(script, args, validate, ctx) {
          const started = process.hrtime.bigint();
          let outcome = 'ok';
          try {
            return await runner.run(script, args, validate, ctx);
          } catch (error) {
            outcome = error instanceof ScriptError ? error.failure : 'error';
            throw error;
          } finally {
            const seconds = Number(process.hrtime.bigint() - started) / 1e9;
            scriptRuns.inc({ script, outcome });
            scriptSeconds.observe({ script, outcome }, seconds);
          }
        },
      };
    },
    readFrom(source) {
      gauges = source;
    },
  };
}
