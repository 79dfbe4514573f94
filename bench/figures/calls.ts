/**
 * Goal 1: AWS CLI calls per operation through the API. Each CLI call costs about half a second of CPU
 * before it sends anything, so calls are the service's main cost. Every request is made alone and the
 * counting aws records each call with the script run (process group) that made it.
 *
 * A wait is the calls a script makes after its change (run-instances, start-instances, stop-instances);
 * each describe-instances among them begins a poll. moto settles an instance at once, so each wait here
 * takes one poll: the goal "one call per poll" is the wait's calls divided by its polls.
 */
import type { Api } from '../lib/api.js';
import type { AwsCall, AwsShim } from '../lib/aws-shim.js';
import { startBenchServer, type BenchContext } from '../lib/context.js';
import { BENCH_AMI } from '../lib/fleet.js';
import { figure } from '../lib/report.js';

const CHANGES = new Set(['run-instances', 'start-instances', 'stop-instances', 'terminate-instances']);
const POLL = 'describe-instances';

interface CallsBreakdown {
  total: number;
  /** Calls after the change in a script run that waits for the new state. */
  waitCalls: number;
  polls: number;
  beyondWait: number;
  /** `script:operation` in order, a wait's calls marked. */
  sequence: string[];
  scriptRuns: number;
}

/** Splits the calls of one request into the wait and the rest; only a kind that waits has a wait. */
function breakdown(calls: readonly AwsCall[], waits: boolean): CallsBreakdown {
  const changed = new Set<number>();
  let waitCalls = 0;
  let polls = 0;
  const sequence: string[] = [];
  for (const call of calls) {
    const inWait = waits && changed.has(call.group);
    if (inWait) {
      waitCalls += 1;
      if (call.operation === POLL) polls += 1;
    }
    if (CHANGES.has(call.operation)) changed.add(call.group);
    sequence.push(`${call.script}:${call.operation}${inWait ? ' (wait)' : ''}`);
  }
  return {
    total: calls.length, waitCalls, polls, beyondWait: calls.length - waitCalls, sequence,
    scriptRuns: new Set(calls.map((call) => call.group)).size,
  };
}

interface Step {
  id: string;
  label: string;
  waits: boolean;
  limit: number;
  request: () => Promise<unknown>;
}

export async function measureCalls(ctx: BenchContext): Promise<void> {
  const bench = await startBenchServer(ctx, 'calls');
  try {
    await countCalls(ctx, bench.api, bench.shim);
  } finally {
    await bench.server.stop();
  }
}

async function countCalls(ctx: BenchContext, api: Api, shim: AwsShim): Promise<void> {
  const launch = (name: string, securityGroup: boolean) => () =>
    api.call<{ id: string }>('POST', '/instances', {
      body: { name, ami: BENCH_AMI, instance_type: 't3.micro', storage_gb: 8, ...(securityGroup ? { create_security_group: true } : {}) },
    });
  const ids: Record<string, string> = {};
  const remember = (key: string, make: () => Promise<{ id: string }>) => async () => {
    ids[key] = (await make()).id;
  };
  const id = (key: string): string => ids[key] as string;

  const steps: Step[] = [
    { id: 'create_first', label: 'create, the first (image and key pair not yet known)', waits: true, limit: 2, request: remember('first', launch('bench-first', false)) },
    { id: 'create', label: 'create, again with the same key pair and AMI', waits: true, limit: 2, request: remember('second', launch('bench-second', false)) },
    { id: 'create_sg_new', label: 'create with create_security_group (group made)', waits: true, limit: 3, request: launch('bench-sg-new', true) },
    { id: 'create_sg', label: 'create with create_security_group (group exists)', waits: true, limit: 3, request: launch('bench-sg', true) },
    { id: 'stop', label: 'stop', waits: true, limit: 2, request: () => api.call('POST', `/instances/${id('second')}/stop`) },
    { id: 'start', label: 'start', waits: true, limit: 2, request: () => api.call('POST', `/instances/${id('second')}/start`) },
    { id: 'destroy', label: 'destroy (DELETE)', waits: false, limit: 2, request: () => api.call('DELETE', `/instances/${id('first')}`, { expect: 204 }) },
    { id: 'describe', label: 'describe (GET /instances/{id})', waits: false, limit: 1, request: () => api.call('GET', `/instances/${id('second')}`) },
    { id: 'list', label: 'list (GET /instances)', waits: false, limit: 1, request: () => api.call('GET', '/instances') },
    { id: 'sync', label: 'sync (POST /instances/sync)', waits: false, limit: 1, request: () => api.call('POST', '/instances/sync') },
  ];

  const waits: Array<{ step: string; calls: number; polls: number }> = [];
  for (const step of steps) {
    ctx.progress(`calls: ${step.label}`);
    shim.clear();
    await step.request();
    const counted = breakdown(shim.calls(), step.waits);
    // A change that made no aws call went around the counting aws: its zero would read as a goal met.
    if (step.waits && counted.total === 0) throw new Error(`${step.label} made no aws call the counting aws saw: is it first on the server's PATH?`);
    if (step.waits) waits.push({ step: step.id, calls: counted.waitCalls, polls: counted.polls });
    ctx.record(figure({
      id: `calls.${step.id}`,
      goalNumber: 1,
      label: `CLI calls: ${step.label}${step.waits ? ', beyond the wait' : ''}`,
      value: counted.beyondWait,
      unit: 'calls',
      shown: step.waits ? `${counted.beyondWait} (+${counted.waitCalls} wait)` : String(counted.beyondWait),
      goal: { compare: '<=', limit: step.limit },
      detail: { ...counted },
    }));
  }

  // A wait without a poll would be no wait at all; it is reported as such rather than divided by zero.
  const perPoll = waits.map((wait) => (wait.polls === 0 ? (wait.calls === 0 ? 0 : Number.POSITIVE_INFINITY) : wait.calls / wait.polls));
  const worst = Math.max(...perPoll);
  ctx.record(figure({
    id: 'calls.per_poll',
    goalNumber: 1,
    label: 'CLI calls per poll of a wait (worst of create, start, stop)',
    value: worst,
    unit: 'calls',
    shown: `${Number.isFinite(worst) ? worst : 'no poll'} (${waits.reduce((sum, wait) => sum + wait.polls, 0)} polls in ${waits.length} waits)`,
    goal: { compare: '<=', limit: 1 },
    detail: { waits },
  }));
}
