/**
 * Goal 3, first half: what the service adds to a stop. A stop through the API against the same script run
 * directly with the very arguments the service gave it (read from the call log, so the comparison follows
 * whatever the service passes), each on an instance of its own: the service's (recorded before it
 * starts) and ones it never sees. The two are measured in adjacent pairs, in alternating order, and the
 * figure is the median of the pairs' ratios, so a machine that gets busier during the run shifts both
 * sides of a pair alike.
 */
import path from 'node:path';
import { startBenchServer, type BenchContext, type BenchServer } from '../lib/context.js';
import { runScriptDirectly } from '../lib/direct-script.js';
import { launchInstances, recordInstances } from '../lib/fleet.js';
import { figure } from '../lib/report.js';
import { median, round } from '../lib/stats.js';

const MAX_RATIO = 1.05;

/** The arguments the service ran `script` with for `instanceId`, retargeted at `otherId`. */
function argumentsFor(bench: BenchServer, script: string, instanceId: string, otherId: string): string[] {
  const run = bench.shim.calls().find((call) => call.script === script && call.scriptArgs.includes(instanceId));
  if (!run) throw new Error(`the counting aws saw no call from ${script} for ${instanceId}, so the service's arguments are unknown`);
  return run.scriptArgs.map((arg) => (arg === instanceId ? otherId : arg));
}

export async function measureStopOverhead(ctx: BenchContext): Promise<void> {
  const pairs = ctx.quick ? 3 : 9;
  const managed = launchInstances(ctx.realAws, pairs, 'bench-api', { managed: true });
  // Untagged: no sync would import them, and the service never sees them.
  const unseen = launchInstances(ctx.realAws, pairs, 'bench-direct', { managed: false });
  const database = path.join(ctx.workspace.dir, 'stop.db');
  recordInstances(database, { instances: managed });
  const bench = await startBenchServer(ctx, 'stop', { databaseFile: database });
  try {
    // The first request of a server compiles what every later one reuses; no stop should pay for that.
    await bench.api.call('GET', '/instances');
    let stopArgs: string[] | undefined;
    const scriptMs: number[] = [];
    const apiStop = async (pair: number): Promise<number> => {
      const id = managed[pair]?.id as string;
      bench.shim.clear();
      const since = new Date();
      const { ms } = await bench.api.timed('POST', `/instances/${id}/stop`);
      scriptMs.push(...bench.server.scriptRuns(since).map((run) => run.duration_ms));
      stopArgs ??= argumentsFor(bench, 'stop_instance.sh', id, '{id}');
      return ms;
    };
    const directStop = async (pair: number): Promise<number> => {
      if (!stopArgs) throw new Error('the API stop runs first: it tells the direct run its arguments');
      const id = unseen[pair]?.id as string;
      return runScriptDirectly(ctx.workspace, 'stop_instance.sh', stopArgs.map((arg) => (arg === '{id}' ? id : arg)), bench.scriptEnv);
    };

    const apiMs: number[] = [];
    const directMs: number[] = [];
    const ratios: number[] = [];
    for (let pair = 0; pair < pairs; pair += 1) {
      ctx.progress(`stop via the API vs the script run directly: pair ${pair + 1} of ${pairs}`);
      let api: number;
      let script: number;
      if (pair % 2 === 0) {
        api = await apiStop(pair);
        script = await directStop(pair);
      } else {
        script = await directStop(pair);
        api = await apiStop(pair);
      }
      apiMs.push(round(api, 1));
      directMs.push(round(script, 1));
      ratios.push(api / script);
    }
    const ratio = round(median(ratios), 3);
    // The service logs how long its own script run took: what the API adds beyond it is measured on the
    // same stop, free of the difference between two runs that the ratio carries.
    const beyondScript = apiMs.map((ms, i) => ms - (scriptMs[i] ?? Number.NaN));
    ctx.record(figure({
      id: 'stop.api_vs_direct',
      goalNumber: 3,
      label: `stop via the API / the same script run directly (median of ${pairs} pairs)`,
      value: ratio,
      unit: 'ratio',
      shown: `${ratio} (${Math.round(median(apiMs))} vs ${Math.round(median(directMs))} ms)`,
      goal: { compare: '<=', limit: MAX_RATIO },
      detail: {
        api_ms: apiMs, direct_ms: directMs, ratios: ratios.map((r) => round(r, 3)), script_args: stopArgs,
        // The service's own measure of its script runs: the API time beyond it is the service's.
        api_script_ms: scriptMs,
      },
    }));
    ctx.record(figure({
      id: 'stop.service_beyond_script_ms',
      goalNumber: 3,
      label: 'stop via the API: time beyond its script run, as the service logs it (median)',
      value: round(median(beyondScript), 1),
      unit: 'ms',
      goal: null,
      detail: { ms: beyondScript.map((ms) => round(ms, 1)) },
    }));
  } finally {
    await bench.server.stop();
  }
}
