/**
 * Benchmark: does listing instances slow down as history grows?
 *
 * Records are never deleted: terminated instances stay, hidden from the default list. A team that has
 * launched and terminated instances for years has a table that is mostly history. This measures, in one
 * run, GET /instances (the default page, live instances only, and a page that includes history) on two
 * databases that differ only in HISTORY_ROWS terminated rows. The target is a ratio: the default list
 * on the large database may cost at most MAX_MEDIAN_RATIO times what it costs on the small one.
 *
 *   npx tsx bench/list-vs-history.ts     (needs nothing but Node: no script runs for a list)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { startServer } from '../app/server.js';
import { openStore } from '../app/store/index.js';

const LIVE_ROWS = 100;
const HISTORY_ROWS = 50_000;
const SAMPLES = 200;
const MAX_MEDIAN_RATIO = 2;

function hex17(n: number): string {
  return n.toString(16).padStart(17, '0');
}

function fill(file: string, history: number): void {
  const store = openStore(file);
  const write = store.db.transaction(() => {
    for (let i = 0; i < history + LIVE_ROWS; i += 1) {
      // History first, so live instances are the newest rows as in real life.
      const instanceId = `i-${hex17(i)}`;
      const clientToken = `bench-${i}`;
      store.instances.insertLaunch({
        clientToken, name: `bench-${i}`, ami: 'ami-1e749f67', instanceType: 't3.micro', storageGb: 8,
        keyName: 'bench-key', securityGroupId: null, loginUser: 'ubuntu',
      });
      store.instances.completeLaunch(clientToken, {
        instanceId, name: `bench-${i}`, state: 'running', publicIp: '54.0.0.1', privateIp: '10.0.0.1',
        storageGb: 8, keyName: 'bench-key', securityGroupId: null, launchTime: new Date(0).toISOString(),
      });
      if (i < history) store.instances.markTerminated(instanceId, null);
    }
  });
  write();
  store.close();
}

async function medianMs(url: string): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < SAMPLES; i += 1) {
    const started = performance.now();
    const response = await fetch(url);
    const body = (await response.json()) as { instances: unknown[] };
    if (!response.ok || body.instances.length === 0) throw new Error(`${url} answered ${response.status}`);
    times.push(performance.now() - started);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)] ?? Number.NaN;
}

async function measure(file: string): Promise<{ live: number; withHistory: number }> {
  const server = await startServer({
    ...process.env, PORT: '0', HOST: '127.0.0.1', DATABASE_URL: file, AUTH_DISABLED: 'true', LOG_LEVEL: 'error',
  });
  try {
    return {
      live: await medianMs(`${server.url}/instances?limit=100`),
      withHistory: await medianMs(`${server.url}/instances?limit=100&include_terminated=true`),
    };
  } finally {
    await server.close();
  }
}

async function main(): Promise<void> {
  const work = mkdtempSync(path.join(tmpdir(), 'ec2-creator-bench-list-'));
  try {
    const small = path.join(work, 'small.db');
    const large = path.join(work, 'large.db');
    fill(small, 0);
    fill(large, HISTORY_ROWS);
    const smallMs = await measure(small);
    const largeMs = await measure(large);
    const ratio = largeMs.live / smallMs.live;
    const result = {
      live_rows: LIVE_ROWS,
      history_rows: HISTORY_ROWS,
      samples: SAMPLES,
      default_list_median_ms: { small: +smallMs.live.toFixed(3), large: +largeMs.live.toFixed(3) },
      list_with_history_median_ms: { small: +smallMs.withHistory.toFixed(3), large: +largeMs.withHistory.toFixed(3) },
      median_ratio: +ratio.toFixed(2),
      target: `default list median ratio <= ${MAX_MEDIAN_RATIO}`,
      met: ratio <= MAX_MEDIAN_RATIO,
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    if (!result.met) process.exitCode = 1;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
