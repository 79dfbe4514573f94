/**
 * Goal 5: GET /instances (the default page, as a client asks for it) with 20 and with 1,000 recorded
 * instances, under load from 10 connections, with a real bearer token so its check is part of the cost.
 * The load comes from autocannon in the bench process and the server runs in its own, each with a core
 * on a 2-core machine. The records are written into the database before the server starts: a list runs
 * no script, so EC2 has no part in this figure.
 */
import path from 'node:path';
import autocannon from 'autocannon';
import { startBenchServer, type BenchContext } from '../lib/context.js';
import { recordInstances } from '../lib/fleet.js';
import { figure } from '../lib/report.js';
import { round } from '../lib/stats.js';

const CONNECTIONS = 10;
const MIN_REQUESTS_PER_S = 3_000;
const MAX_P99_MS = 10;

export async function measureReads(ctx: BenchContext): Promise<void> {
  for (const records of [20, 1_000]) {
    const database = path.join(ctx.workspace.dir, `reads-${records}.db`);
    recordInstances(database, { invented: records });
    const bench = await startBenchServer(ctx, `reads-${records}`, { databaseFile: database });
    try {
      ctx.progress(`reads: GET /instances with ${records.toLocaleString('en-US')} records, ${CONNECTIONS} connections`);
      const result = await autocannon({
        url: `${bench.server.url}/instances`,
        connections: CONNECTIONS,
        duration: ctx.quick ? 3 : 10,
        warmup: { connections: CONNECTIONS, duration: ctx.quick ? 1 : 3 },
        headers: { authorization: `Bearer ${ctx.token}` },
      });
      const requestsPerS = result.requests.total / result.duration;
      const answeredOk = result.non2xx === 0 && result.errors === 0 && result.requests.total > 0;
      const valid = { ok: answeredOk, why: `${result.non2xx} non-2xx answers, ${result.errors} errors` };
      const detail = {
        requests: result.requests.total,
        duration_s: result.duration,
        latency_ms: { p50: result.latency.p50, p90: result.latency.p90, p99: result.latency.p99, max: result.latency.max },
        bytes_per_response: result.requests.total ? Math.round(result.throughput.total / result.requests.total) : 0,
        status_codes: result.statusCodeStats,
      };
      const label = `GET /instances with ${records.toLocaleString('en-US')} records, ${CONNECTIONS} connections`;
      ctx.record(figure({
        id: `reads.list_${records}.requests_per_s`,
        goalNumber: 5,
        label: `${label}: throughput`,
        value: Math.round(requestsPerS),
        unit: 'req/s',
        goal: { compare: '>=', limit: MIN_REQUESTS_PER_S },
        valid,
        detail,
      }));
      ctx.record(figure({
        id: `reads.list_${records}.p99_ms`,
        goalNumber: 5,
        label: `${label}: p99 latency`,
        value: round(result.latency.p99, 2),
        unit: 'ms',
        goal: { compare: '<', limit: MAX_P99_MS },
        valid,
      }));
    } finally {
      await bench.server.stop();
    }
  }
}
