/**
 * Benchmark: does a running script slow the rest of the API down?
 *
 * The system we replaced answered GET /health in 0.93 s instead of 1 ms while a stop ran, because the
 * script blocked its event loop. Here the same server, in one run, is measured idle and then while
 * CONCURRENT_STOPS stops are held inside a slow `aws` (a stand-in that sleeps before handing over to
 * the real CLI, in front of moto_server). The target is a ratio, not a time, so it holds on a slow
 * machine: the loaded median may be at most MAX_MEDIAN_RATIO times the idle one.
 *
 *   npm run bench            (needs moto_server and the aws CLI, like the tests)
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { startServer } from '../app/server.js';
import { startMoto } from '../scripts/lib/moto.js';

const SAMPLES = 400;
const CONCURRENT_STOPS = 4;
const STOP_DELAY_S = 30;
const MAX_MEDIAN_RATIO = 3;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

async function sampleHealth(url: string): Promise<{ p50: number; p95: number; max: number }> {
  const times: number[] = [];
  for (let i = 0; i < SAMPLES; i += 1) {
    const started = performance.now();
    const response = await fetch(`${url}/health/live`).catch(() => fetch(`${url}/health`));
    await response.arrayBuffer();
    if (!response.ok) throw new Error(`/health answered ${response.status}`);
    times.push(performance.now() - started);
  }
  times.sort((a, b) => a - b);
  return { p50: percentile(times, 50), p95: percentile(times, 95), max: times[times.length - 1] ?? Number.NaN };
}

async function main(): Promise<void> {
  const work = mkdtempSync(path.join(tmpdir(), 'ec2-creator-bench-'));
  const moto = await startMoto();
  const realAws = execFileSync('bash', ['-c', 'command -v aws'], { encoding: 'utf8' }).trim();
  const fakeDir = path.join(work, 'bin');
  const marker = path.join(work, 'stops-held');
  execFileSync('mkdir', ['-p', fakeDir]);
  writeFileSync(
    path.join(fakeDir, 'aws'),
    [
      '#!/usr/bin/env bash',
      'if [[ "${2:-}" == stop-instances ]]; then',
      `  echo held >> '${marker}'`,
      `  sleep ${STOP_DELAY_S}`,
      'fi',
      `exec '${realAws}' "$@"`,
      '',
    ].join('\n'),
  );
  chmodSync(path.join(fakeDir, 'aws'), 0o755);
  Object.assign(process.env, {
    PATH: `${fakeDir}:${process.env.PATH ?? ''}`,
    AWS_ENDPOINT_URL: moto.endpoint,
    AWS_ACCESS_KEY_ID: 'bench',
    AWS_SECRET_ACCESS_KEY: 'bench',
    AWS_DEFAULT_REGION: 'us-east-1',
    AWS_CONFIG_FILE: path.join(work, 'aws-config'),
    AWS_SHARED_CREDENTIALS_FILE: path.join(work, 'aws-credentials'),
  });
  execFileSync('aws', ['ec2', 'create-key-pair', '--key-name=bench-key', '--output=json']);

  const token = 'bench-operator-token-0123456789abcdef';
  const server = await startServer({
    ...process.env,
    PORT: '0',
    HOST: '127.0.0.1',
    DATABASE_URL: path.join(work, 'bench.db'),
    KEY_NAME: 'bench-key',
    LOG_LEVEL: 'error',
    API_TOKENS: `bench:operator:${token}`,
    MAX_CONCURRENT_SCRIPTS: String(CONCURRENT_STOPS * 2),
  });
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  try {
    const ids: string[] = [];
    for (let i = 0; i < CONCURRENT_STOPS; i += 1) {
      const response = await fetch(`${server.url}/instances`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ name: `bench-${i}`, ami: 'ami-1e749f67', instance_type: 't3.micro', storage_gb: 8 }),
      });
      if (response.status !== 201) throw new Error(`create answered ${response.status}: ${await response.text()}`);
      ids.push(((await response.json()) as { id: string }).id);
    }

    const idle = await sampleHealth(server.url);
    let stopsFinished = 0;
    const stops = ids.map((id) =>
      fetch(`${server.url}/instances/${id}/stop`, { method: 'POST', headers }).finally(() => {
        stopsFinished += 1;
      }));
    const deadline = Date.now() + 60_000;
    while (!existsSync(marker) || execFileSync('wc', ['-l', marker], { encoding: 'utf8' }).trim().split(' ')[0] !== String(CONCURRENT_STOPS)) {
      if (Date.now() > deadline) throw new Error('the stops never reached the slow aws');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const loaded = await sampleHealth(server.url);
    // The comparison only means something if every stop was still held while we sampled.
    const stillRunning = stopsFinished === 0;

    const ratio = loaded.p50 / idle.p50;
    const result = {
      samples: SAMPLES,
      concurrent_stops: CONCURRENT_STOPS,
      stops_still_running_after_sampling: stillRunning,
      idle_ms: { p50: +idle.p50.toFixed(3), p95: +idle.p95.toFixed(3), max: +idle.max.toFixed(3) },
      loaded_ms: { p50: +loaded.p50.toFixed(3), p95: +loaded.p95.toFixed(3), max: +loaded.max.toFixed(3) },
      median_ratio: +ratio.toFixed(2),
      target: `median ratio <= ${MAX_MEDIAN_RATIO}`,
      met: ratio <= MAX_MEDIAN_RATIO && stillRunning,
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    await Promise.allSettled(stops);
    if (!result.met) process.exitCode = 1;
  } finally {
    await server.close();
    await moto.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
