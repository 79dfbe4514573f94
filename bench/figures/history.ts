/**
 * The earlier benchmark's target, kept: does listing slow down as history grows? Records are never
 * deleted, so a team's table is mostly terminated instances. The default list (live instances only) on a
 * database with HISTORY_ROWS terminated rows may cost at most MAX_MEDIAN_RATIO times what it costs
 * without them; the page that includes history is reported beside it.
 */
import path from 'node:path';
import type { Api } from '../lib/api.js';
import { startBenchServer, type BenchContext } from '../lib/context.js';
import { recordInstances } from '../lib/fleet.js';
import { figure } from '../lib/report.js';
import { median, round } from '../lib/stats.js';

const LIVE_ROWS = 100;
const HISTORY_ROWS = 50_000;
const MAX_MEDIAN_RATIO = 2;
const WARM_UP = 20;

/** One timed GET of the list, in ms; an empty list means the records were not arranged. */
async function timedList(api: Api, pathAndQuery: string): Promise<number> {
  const { body, ms } = await api.timed<{ instances: unknown[] }>('GET', pathAndQuery);
  if (!body.instances.length) throw new Error(`GET ${pathAndQuery} listed nothing`);
  return ms;
}

export async function measureHistory(ctx: BenchContext): Promise<void> {
  const samples = ctx.quick ? 50 : 200;
  ctx.progress(`history: ${LIVE_ROWS} live instances, and as many with ${HISTORY_ROWS.toLocaleString('en-US')} terminated`);
  const apis: Partial<Record<'small' | 'large', Api>> = {};
  const page = `/instances?limit=${LIVE_ROWS}`;
  const servers = [];
  // Both servers run at once and are asked in turn, so a machine that gets busier meanwhile slows both alike.
  const times = { small: [] as number[], large: [] as number[], smallHistory: [] as number[], largeHistory: [] as number[] };
  try {
    for (const [name, history] of [['small', 0], ['large', HISTORY_ROWS]] as const) {
      const database = path.join(ctx.workspace.dir, `history-${name}.db`);
      recordInstances(database, { terminated: history, invented: LIVE_ROWS });
      const bench = await startBenchServer(ctx, `history-${name}`, { databaseFile: database });
      servers.push(bench);
      apis[name] = bench.api;
    }
    for (let i = 0; i < samples + WARM_UP; i += 1) {
      const [small, large] = [apis.small as Api, apis.large as Api];
      const sample = {
        small: await timedList(small, page),
        large: await timedList(large, page),
        smallHistory: await timedList(small, `${page}&include_terminated=true`),
        largeHistory: await timedList(large, `${page}&include_terminated=true`),
      };
      // The first requests of a server compile and cache what later ones reuse.
      if (i < WARM_UP) continue;
      for (const key of Object.keys(sample) as Array<keyof typeof sample>) times[key].push(sample[key]);
    }
  } finally {
    for (const bench of servers) await bench.server.stop();
  }
  const small = { live: median(times.small), withHistory: median(times.smallHistory) };
  const large = { live: median(times.large), withHistory: median(times.largeHistory) };
  const ratio = large.live / small.live;
  ctx.record(figure({
    id: 'history.list_median_ratio',
    goalNumber: 0,
    label: `GET /instances median, ${HISTORY_ROWS.toLocaleString('en-US')} terminated rows / none (earlier target)`,
    value: round(ratio, 2),
    unit: 'ratio',
    shown: `${round(ratio, 2)} (${round(large.live, 2)} vs ${round(small.live, 2)} ms)`,
    goal: { compare: '<=', limit: MAX_MEDIAN_RATIO },
    detail: {
      live_rows: LIVE_ROWS,
      history_rows: HISTORY_ROWS,
      samples,
      default_list_median_ms: { small: round(small.live, 3), large: round(large.live, 3) },
      list_with_history_median_ms: { small: round(small.withHistory, 3), large: round(large.withHistory, 3) },
    },
  }));
}
