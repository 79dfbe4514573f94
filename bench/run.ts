/**
 * `npm run bench`: every performance figure the service is held to, measured in one run, printed next to
 * its goal and written as JSON so that two runs (two commits, two machines) can be compared. Exits 1 when
 * a goal is missed or a figure could not be measured, 2 when the suite itself could not run.
 * Needs what the tests need: moto_server, the aws CLI and jq. See bench/README.md.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs, promisify } from 'node:util';
import { measureCalls } from './figures/calls.js';
import { measureHistory } from './figures/history.js';
import { measureReads } from './figures/reads.js';
import { measureReplicas } from './figures/replicas.js';
import { measureSlowChanges, OLD_SYSTEM_SLOW_STOP_S, SLOW_AWS_DELAY_S } from './figures/slow-changes.js';
import { measureStopOverhead } from './figures/stop-overhead.js';
import { realProgram } from '../scripts/lib/aws-cli.js';
import { realAwsCli } from './lib/aws-shim.js';
import { newToken, type BenchContext } from './lib/context.js';
import { createKeyPair } from './lib/fleet.js';
import { failedFigure, table, type Figure } from './lib/report.js';
import { SERVICE_VARIABLES_REPORTED } from './lib/server-process.js';
import { openWorkspace, repoRoot } from './lib/workspace.js';

const PARTS = ['calls', 'stop', 'slow', 'reads', 'history', 'replicas'] as const;
type Part = (typeof PARTS)[number];
const RESULTS_DIR = path.join(repoRoot, 'bench', 'results');
const RESULTS_FORMAT = 1;

const USAGE = `Usage: npm run bench -- [options]

  --quick            fewer samples and shorter loads (well under two minutes)
  --compare FILE     add a column with the figures of an earlier run's JSON
  --out FILE         where the JSON results go (default bench/results/<time>.json, and latest.json)
  --only PARTS       some of: ${PARTS.join(', ')} (comma-separated)
  --keep             keep the temporary folder (databases, server logs, aws call logs)
`;

const run = promisify(execFile);

interface Options {
  quick: boolean;
  out: string | undefined;
  compare: string | undefined;
  only: Set<Part>;
  keep: boolean;
}

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      out: { type: 'string' },
      compare: { type: 'string' },
      only: { type: 'string' },
      keep: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const only = new Set<Part>();
  for (const part of (values.only ?? PARTS.join(',')).split(',').map((p) => p.trim()).filter(Boolean)) {
    if (!(PARTS as readonly string[]).includes(part)) throw new Error(`--only: unknown part ${JSON.stringify(part)} (parts: ${PARTS.join(', ')})`);
    only.add(part as Part);
  }
  return { quick: values.quick ?? false, out: values.out, compare: values.compare, only, keep: values.keep ?? false };
}

async function firstLine(command: string, args: string[]): Promise<string> {
  try {
    const { stdout, stderr } = await run(command, args, { encoding: 'utf8', timeout: 30_000 });
    return (stdout.trim() || stderr.trim()).split('\n')[0] ?? '';
  } catch {
    return 'unknown';
  }
}

/** moto's version, asked of the Python that runs moto_server (its shebang), without importing moto. */
async function motoVersion(): Promise<string> {
  try {
    const server = realProgram('moto_server');
    if (!server) return 'unknown';
    const python = /^#!\s*(\S+)/.exec(readFileSync(server, 'utf8'))?.[1] ?? 'python3';
    return await firstLine(python, ['-c', 'import importlib.metadata as m; print(m.version("moto"))']);
  } catch {
    return 'unknown';
  }
}

/** Asked after the measurements: `aws --version` alone costs a CLI start. */
async function describeMachine(realAws: string): Promise<Record<string, unknown>> {
  const [awsVersion, moto, commit, changes] = await Promise.all([
    firstLine(realAws, ['--version']),
    motoVersion(),
    firstLine('git', ['-C', repoRoot, 'rev-parse', '--short', 'HEAD']),
    run('git', ['-C', repoRoot, 'status', '--porcelain'], { encoding: 'utf8' }).then((r) => r.stdout.trim() !== '', () => null),
  ]);
  return {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.availableParallelism(),
    memory_gb: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    aws_cli: awsVersion,
    moto,
    commit: changes ? `${commit} (with uncommitted changes)` : commit,
  };
}

function loadPrevious(file: string): Map<string, Figure> {
  const previous = JSON.parse(readFileSync(file, 'utf8')) as { figures?: Figure[] };
  return new Map((previous.figures ?? []).map((f) => [f.id, f]));
}

async function main(): Promise<void> {
  const options = parseOptions();
  const previous = options.compare ? loadPrevious(options.compare) : undefined;
  const began = performance.now();
  const startedAt = new Date().toISOString();
  const loadAverage = (): number[] => os.loadavg().map((load) => Math.round(load * 100) / 100);
  const loadAtStart = loadAverage();
  const elapsed = (): string => `${((performance.now() - began) / 1000).toFixed(1)} s`;
  const figures: Figure[] = [];
  const ctxBase = {
    quick: options.quick,
    token: newToken(),
    progress: (message: string) => process.stderr.write(`bench [${elapsed()}] ${message}\n`),
    record: (f: Figure) => {
      figures.push(f);
    },
  };

  ctxBase.progress(`starting moto_server${options.quick ? ' (quick run)' : ''}`);
  const workspace = await openWorkspace({ keep: options.keep });
  let machine: Record<string, unknown> = {};
  try {
    const realAws = realAwsCli();
    createKeyPair(realAws);
    const ctx: BenchContext = { ...ctxBase, workspace, realAws };

    const part = async (name: Part, goalNumber: number, label: string, measure: () => Promise<void>): Promise<void> => {
      if (!options.only.has(name)) return;
      try {
        await measure();
      } catch (error) {
        ctx.progress(`${name} failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}`);
        figures.push(failedFigure(`${name}.error`, goalNumber, label, error));
      }
    };

    await part('calls', 1, 'calls per operation', () => measureCalls(ctx));
    await part('stop', 3, 'stop via the API vs the script run directly', () => measureStopOverhead(ctx));
    await part('slow', 2, 'slow aws: one stop, eight concurrent stops, /health under load', () => measureSlowChanges(ctx));
    await part('reads', 5, 'GET /instances under load', () => measureReads(ctx));
    await part('history', 0, 'list with a long history', () => measureHistory(ctx));
    await part('replicas', 0, 'SQLite vs PostgreSQL, one server and two replicas', () => measureReplicas(ctx));
    const loadAtEnd = loadAverage();
    machine = { ...(await describeMachine(realAws)), load_average_at_start: loadAtStart, load_average_at_end: loadAtEnd };
  } finally {
    ctxBase.progress('stopping moto_server and the servers');
    await workspace.cleanup();
  }

  const coalesce = process.env.COALESCE_WINDOW_MS ?? null;
  const serviceEnv = Object.fromEntries(SERVICE_VARIABLES_REPORTED.filter((name) => process.env[name] !== undefined).map((name) => [name, process.env[name]]));
  const missed = figures.filter((f) => f.met === false);
  const results = {
    format: RESULTS_FORMAT,
    suite: 'ec2-creator npm run bench',
    mode: options.quick ? 'quick' : 'full',
    parts: [...options.only],
    started_at: startedAt,
    duration_s: Math.round((performance.now() - began) / 100) / 10,
    machine,
    settings: {
      coalesce_window_ms: coalesce ?? 'unset: the service default',
      service_variables_from_the_environment: serviceEnv,
      slow_aws_delay_s: SLOW_AWS_DELAY_S,
      old_system_slow_stop_s: OLD_SYSTEM_SLOW_STOP_S,
      rate_limit_per_minute: 0,
      auth: 'on, one operator bearer token',
      server: 'a process of its own (node --import tsx app/server.ts), default LOG_LEVEL, log to a file',
    },
    goals_met: missed.length === 0,
    figures,
  };

  const out = options.out ? path.resolve(options.out) : path.join(RESULTS_DIR, `${results.started_at.replace(/[:.]/g, '-')}${options.quick ? '-quick' : ''}.json`);
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
  if (!options.out) writeFileSync(path.join(RESULTS_DIR, 'latest.json'), `${JSON.stringify(results, null, 2)}\n`);

  const print = (text = ''): boolean => process.stdout.write(`${text}\n`);
  print();
  print(`ec2-creator benchmarks (${results.mode}), ${results.started_at}, ${results.duration_s} s`);
  print(`machine: ${String(machine.cpu)}, ${String(machine.cores)} cores, ${String(machine.memory_gb)} GB, ${String(machine.os)}, node ${process.version}, ` +
    `load ${JSON.stringify(machine.load_average_at_start)} → ${JSON.stringify(machine.load_average_at_end)}`);
  print(`tools: ${String(machine.aws_cli)}; moto ${String(machine.moto)}; commit ${String(machine.commit)}`);
  print(`COALESCE_WINDOW_MS: ${coalesce === null ? 'not set (the service default)' : coalesce}; ` +
    `slow aws: +${SLOW_AWS_DELAY_S} s a call; goal numbers are the issue's (- = an earlier benchmark's target)`);
  if (Object.keys(serviceEnv).length > 0) print(`service variables taken from your environment: ${JSON.stringify(serviceEnv)}`);
  print();
  print(table(figures, previous));
  print();
  if (figures.some((f) => f.id === 'slow.one_stop_s')) {
    print(`Goal 3's ${OLD_SYSTEM_SLOW_STOP_S} s is the old system's recorded figure, a constant: the old system does not run on this machine.`);
  }
  const callFigures = figures.filter((f) => f.id.startsWith('calls.') && Array.isArray(f.detail?.sequence));
  if (callFigures.length > 0) {
    print('CLI calls made, in order:');
    for (const f of callFigures) print(`  ${f.id.slice('calls.'.length)}: ${(f.detail?.sequence as string[]).join(', ') || '(none)'}`);
  }
  print();
  print(`results: ${path.relative(process.cwd(), out) || out}${previous ? `; compared with ${options.compare}` : ''}`);
  print(missed.length === 0 ? 'every goal met' : `${missed.length} of ${figures.filter((f) => f.met !== null).length} goals missed: ${missed.map((f) => f.id).join(', ')}`);
  process.exitCode = missed.length === 0 ? 0 : 1;
}

try {
  await main();
} catch (error) {
  process.stderr.write(`bench: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  process.exitCode = 2;
}
