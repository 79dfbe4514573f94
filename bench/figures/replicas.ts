/**
 * The store beyond one machine, next to the embedded default: list throughput and create/stop latency of
 * one server on SQLite, one server on PostgreSQL, and two replicas sharing one PostgreSQL, all on this
 * machine in one run, printed as ratios to SQLite. No goal: the figures say what PostgreSQL and a second
 * replica cost or bring here (on one 2-core machine two replicas share its cores with the database).
 * The setups are measured in turns, round after round, so a machine that gets busier slows them alike.
 */
import { performance } from 'node:perf_hooks';
import { startPostgres } from '../../scripts/lib/postgres.js';
import type { Api } from '../lib/api.js';
import { startBenchServer, type BenchContext, type BenchServer } from '../lib/context.js';
import { BENCH_AMI } from '../lib/fleet.js';
import { figure } from '../lib/report.js';
import { median, round } from '../lib/stats.js';

const CONCURRENCY = 8;

interface Setup {
  id: 'sqlite' | 'pg1' | 'pg2';
  label: string;
  servers: BenchServer[];
  listMs: number;
  lists: number;
  createMs: number[];
  stopMs: number[];
  created: string[];
}

/** `count` GET /instances, CONCURRENCY at a time, spread over the setup's servers; the wall time in ms. */
async function listBurst(apis: Api[], count: number): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < count) {
      const i = next;
      next += 1;
      await (apis[i % apis.length] as Api).call('GET', '/instances');
    }
  }));
  return performance.now() - started;
}

export async function measureReplicas(ctx: BenchContext): Promise<void> {
  const rounds = ctx.quick ? 2 : 4;
  const listsPerRound = ctx.quick ? 100 : 400;
  ctx.progress('replicas: starting a throwaway PostgreSQL');
  const postgres = await startPostgres({ holdsProcessOpen: false });
  ctx.workspace.onCleanup(() => postgres.stop());
  const [oneReplica, twoReplicas] = [await postgres.createDatabase('bench_one'), await postgres.createDatabase('bench_two')];
  const setups: Setup[] = [
    { id: 'sqlite', label: 'SQLite, one server', servers: [await startBenchServer(ctx, 'replicas-sqlite')] },
    { id: 'pg1', label: 'PostgreSQL, one server', servers: [await startBenchServer(ctx, 'replicas-pg1', { databaseUrl: oneReplica })] },
    {
      id: 'pg2',
      label: 'PostgreSQL, two replicas',
      servers: [
        await startBenchServer(ctx, 'replicas-pg2a', { databaseUrl: twoReplicas }),
        await startBenchServer(ctx, 'replicas-pg2b', { databaseUrl: twoReplicas }),
      ],
    },
  ].map((setup) => ({ ...setup, listMs: 0, lists: 0, createMs: [], stopMs: [], created: [] })) as Setup[];

  // The first requests of a server compile and cache what later ones reuse.
  for (const setup of setups) for (const { api } of setup.servers) await listBurst([api], 20);
  for (let round = 0; round < rounds; round += 1) {
    ctx.progress(`replicas: round ${round + 1} of ${rounds}: a create, ${listsPerRound} lists, a stop in each setup`);
    for (const setup of setups) {
      const api = (setup.servers[round % setup.servers.length] as BenchServer).api;
      const created = await api.timed<{ id: string }>('POST', '/instances', {
        body: { name: `bench-${setup.id}-${round}`, ami: BENCH_AMI, instance_type: 't3.micro', storage_gb: 8 },
      });
      setup.createMs.push(created.ms);
      setup.created.push(created.body.id);
    }
    for (const setup of setups) {
      setup.listMs += await listBurst(setup.servers.map((s) => s.api), listsPerRound);
      setup.lists += listsPerRound;
    }
    for (const setup of setups) {
      // The other replica stops what this round's create made: any replica takes any request.
      const api = (setup.servers[(round + 1) % setup.servers.length] as BenchServer).api;
      setup.stopMs.push((await api.timed('POST', `/instances/${setup.created[round]}/stop`)).ms);
    }
  }
  for (const setup of setups) for (const id of setup.created) await (setup.servers[0] as BenchServer).api.call('DELETE', `/instances/${id}`, { expect: 204 });

  const [sqlite] = setups as [Setup];
  const perSecond = (setup: Setup): number => setup.lists / (setup.listMs / 1000);
  const detail = Object.fromEntries(setups.map((setup) => [setup.id, {
    label: setup.label,
    list_per_s: round(perSecond(setup), 1),
    create_median_ms: round(median(setup.createMs), 1),
    stop_median_ms: round(median(setup.stopMs), 1),
  }]));
  for (const setup of setups.slice(1)) {
    const throughput = perSecond(setup) / perSecond(sqlite);
    ctx.record(figure({
      id: `replicas.${setup.id}.list_throughput_ratio`,
      goalNumber: 0,
      label: `GET /instances per second, ${setup.label} / SQLite (${CONCURRENCY} at a time)`,
      value: round(throughput, 2),
      unit: 'ratio',
      shown: `${round(throughput, 2)} (${round(perSecond(setup), 0)} vs ${round(perSecond(sqlite), 0)} /s)`,
      goal: null,
      detail,
    }));
    for (const [kind, own, base] of [['create', setup.createMs, sqlite.createMs], ['stop', setup.stopMs, sqlite.stopMs]] as const) {
      const ratio = median(own) / median(base);
      ctx.record(figure({
        id: `replicas.${setup.id}.${kind}_latency_ratio`,
        goalNumber: 0,
        label: `${kind} median latency, ${setup.label} / SQLite`,
        value: round(ratio, 2),
        unit: 'ratio',
        shown: `${round(ratio, 2)} (${round(median(own), 0)} vs ${round(median(base), 0)} ms)`,
        goal: null,
      }));
    }
  }
}
