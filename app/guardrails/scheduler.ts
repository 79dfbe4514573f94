/**
 * The scheduler: carries out expiries and off-hours schedules as ordinary operations (actor `scheduler`, in
 * /operations, emailed, on the event stream), and warns ahead of an expiry. What it has done is in the
 * records (expiry_warned_at, expiry_done_at, schedule_done_at), never in memory: a tick after a restart
 * finds an action that came due while no server ran and carries it out once; one already done is not
 * done again. An action counts as done once its operation has finished (or the instance is found in the
 * state it asks for already); an operation interrupted by a shutdown leaves it due, so the next tick, on
 * this server or after a restart, carries it out; so does one that failed on something passing (throttling,
 * a timeout), after a pause.
 */
import type { Logger } from '../logger.js';
import type { LifecycleService } from '../domain/lifecycle.js';
import { ConflictError, FreeTierExceededError, InterruptedError, NotFoundError, OperationInFlightError } from '../domain/errors.js';
import { toApiInstance } from '../domain/instances.js';
import type { KeyFiles } from '../domain/login-user.js';
import { latestScheduledEvent, type Schedule, type ScheduledAction } from '../domain/schedule.js';
import type { Notifier } from '../notify/events.js';
import type { LaunchedRow } from '../store/instances-repo.js';
import type { AsyncStore } from '../store/ports.js';
import { InstanceBusyError } from '../store/errors.js';
import type { GuardrailsConfig } from './config.js';

/** The actor the scheduler's operations record. */
export const SCHEDULER_ACTOR = 'scheduler';

export interface SchedulerDeps {
  store: Pick<AsyncStore, 'instances' | 'operations'>;
  lifecycle: Pick<LifecycleService, 'stop' | 'start' | 'destroy'>;
  config: Pick<GuardrailsConfig, 'expiryWarningMinutes'>;
  clock: () => Date;
  logger: Logger;
  notifier: Notifier;
  keyFiles?: KeyFiles | undefined;
}

/** What one look did; `settled` once every operation it started has finished and been recorded as done. */
export interface TickReport {
  warned: string[];
  /** Operations started, by instance: `stop`, `start` or `terminate`, and why. */
  started: { instanceId: string; action: 'stop' | 'start' | 'terminate'; reason: 'expiry' | 'schedule'; operationId: string }[];
  /** Actions found done already (the instance is in the state they ask for). */
  alreadyDone: { instanceId: string; reason: 'expiry' | 'schedule' }[];
  settled: Promise<void>;
}

export interface Scheduler {
  /** One look at every guarded instance; a look already under way is joined, not repeated. */
  tick(): Promise<TickReport>;
}

const STOPPED_OR_STOPPING = new Set(['stopped', 'stopping']);
/** How long an action whose operation failed waits before the next try (the scheduler's only memory). */
export const RETRY_AFTER_FAILURE_MS = 10 * 60_000;
const RUNNING_OR_STARTING = new Set(['running', 'pending']);

export function createScheduler(deps: SchedulerDeps): Scheduler {
  const { store, lifecycle, logger, notifier, clock } = deps;
  const { instances } = store;
  let current: Promise<TickReport> | undefined;
  /** Instances whose last action failed, and when to try again: not truth, only a brake on retries. */
  const retryAfter = new Map<string, number>();

  /** The instances with an unfinished operation, read once per look (and added to as the look starts some). */
  let busyNow = new Set<string>();
  const busy = (instanceId: string): boolean => busyNow.has(instanceId);

  /** Starts the operation; undefined when it cannot start now (another operation holds the instance). */
  async function submit(action: 'stop' | 'start' | 'terminate', row: LaunchedRow, reason: string) {
    const ctx = { actor: SCHEDULER_ACTOR, requestId: `scheduler-${reason}-${row.instance_id}-${clock().getTime()}` };
    try {
      const submission = action === 'terminate'
        ? await lifecycle.destroy(row.instance_id, ctx)
        : await lifecycle[action](row.instance_id, ctx);
      if (submission.type !== 'started') return undefined;
      busyNow.add(row.instance_id);
      return submission;
    } catch (error) {
      if (error instanceof OperationInFlightError || error instanceof InstanceBusyError) return undefined;
      throw error;
    }
  }

  /**
   * Records the action done once its operation succeeded, or failed for good (the instance is gone or in a
   * state that refuses it). Any other failure (a shutdown, throttling, a timeout, AWS unavailable) leaves it
   * due: the next look after RETRY_AFTER_FAILURE_MS tries again, so an expired instance is not left running.
   */
  function whenFinished(done: Promise<unknown>, record: () => Promise<unknown>, what: { instance_id: string } & Record<string, unknown>): Promise<void> {
    return done.then(
      () => record().then(() => undefined),
      async (error: unknown) => {
        if (error instanceof ConflictError || error instanceof NotFoundError) {
          logger.error('a scheduled action was refused; it is not tried again', { ...what, error: String(error) });
          await record();
          return;
        }
        retryAfter.set(what.instance_id, clock().getTime() + RETRY_AFTER_FAILURE_MS);
        const level = error instanceof InterruptedError ? 'warn' : 'error';
        logger[level]('a scheduled action did not finish; it stays due and is tried again', {
          ...what, retry_in_ms: RETRY_AFTER_FAILURE_MS, error: String(error),
        });
      },
    ).catch((error: unknown) => {
      logger.error('a scheduled action could not be recorded as done', { ...what, error: String(error) });
    });
  }

  async function expiry(row: LaunchedRow, now: Date, report: TickReport, waits: Promise<void>[]): Promise<boolean> {
    if (row.expires_at === null || row.expiry_done_at !== null) return false;
    const expiresAt = row.expires_at;
    const due = Date.parse(expiresAt);
    if (now.getTime() < due) {
      const warnFrom = due - deps.config.expiryWarningMinutes * 60_000;
      if (deps.config.expiryWarningMinutes > 0 && row.expiry_warned_at === null && now.getTime() >= warnFrom
          && await instances.markExpiryWarned(row.instance_id, expiresAt)) {
        const instance = toApiInstance((await instances.findByInstanceId(row.instance_id)) ?? row, deps.keyFiles);
        notifier.notify({ type: 'expiring', instance, at: now.toISOString(), requestId: `scheduler-warning-${row.instance_id}` });
        logger.info('instance expires soon: warned', { instance_id: row.instance_id, expires_at: expiresAt, on_expiry: row.on_expiry });
        report.warned.push(row.instance_id);
      }
      return false;
    }
    const action = row.on_expiry === 'terminate' ? 'terminate' : 'stop';
    if (action === 'stop' && STOPPED_OR_STOPPING.has(row.state) && !busy(row.instance_id)) {
      await instances.markExpiryDone(row.instance_id, expiresAt);
      report.alreadyDone.push({ instanceId: row.instance_id, reason: 'expiry' });
      return true;
    }
    const started = await submit(action, row, 'expiry');
    if (!started) return true; // another operation holds it: due again at the next look
    logger.info('instance expired: acting', { instance_id: row.instance_id, expires_at: expiresAt, action, operation_id: started.operation.id });
    report.started.push({ instanceId: row.instance_id, action, reason: 'expiry', operationId: started.operation.id });
    waits.push(whenFinished(started.done, () => instances.markExpiryDone(row.instance_id, expiresAt), {
      instance_id: row.instance_id, operation_id: started.operation.id, reason: 'expiry',
    }));
    return true;
  }

  async function schedule(row: LaunchedRow, now: Date, report: TickReport, waits: Promise<void>[]): Promise<void> {
    if (row.schedule === null) return;
    const event = latestScheduledEvent(JSON.parse(row.schedule) as Schedule, now);
    if (!event) return;
    const at = event.at.toISOString();
    // Only what came due since the schedule was set, or since the last one dealt with.
    if (row.schedule_done_at !== null && at <= row.schedule_done_at) return;
    const expired = row.expires_at !== null && Date.parse(row.expires_at) <= now.getTime();
    if (alreadyIn(event.action, row.state) || (event.action === 'start' && expired)) {
      // An expired instance stays stopped: its schedule does not bring it back.
      if (await instances.claimScheduledEvent(row.instance_id, at)) report.alreadyDone.push({ instanceId: row.instance_id, reason: 'schedule' });
      return;
    }
    if (busy(row.instance_id)) return;
    let started: Awaited<ReturnType<typeof submit>>;
    try {
      started = await submit(event.action, row, 'schedule');
    } catch (error) {
      if (!(error instanceof FreeTierExceededError)) throw error;
      // FREE_TIER_GUARD=refuse holds for the schedule as for a person: this start is skipped, not retried.
      await instances.claimScheduledEvent(row.instance_id, at);
      logger.warn('off-hours schedule: start refused by the free-tier guard', { instance_id: row.instance_id, scheduled_at: at, error: error.message });
      return;
    }
    if (!started) return;
    logger.info('off-hours schedule: acting', { instance_id: row.instance_id, action: event.action, scheduled_at: at, operation_id: started.operation.id });
    report.started.push({ instanceId: row.instance_id, action: event.action, reason: 'schedule', operationId: started.operation.id });
    waits.push(whenFinished(started.done, () => instances.claimScheduledEvent(row.instance_id, at), {
      instance_id: row.instance_id, operation_id: started.operation.id, reason: 'schedule',
    }));
  }

  function alreadyIn(action: ScheduledAction, state: string): boolean {
    return action === 'stop' ? STOPPED_OR_STOPPING.has(state) : RUNNING_OR_STARTING.has(state);
  }

  async function look(): Promise<TickReport> {
    const now = clock();
    const waits: Promise<void>[] = [];
    const report: TickReport = { warned: [], started: [], alreadyDone: [], settled: Promise.resolve() };
    busyNow = new Set((await store.operations.unfinished()).flatMap((op) => (op.instance_id === null ? [] : [op.instance_id])));
    for (const row of await instances.guarded()) {
      if ((retryAfter.get(row.instance_id) ?? 0) > now.getTime()) continue;
      retryAfter.delete(row.instance_id);
      try {
        // An expiry that acts now takes precedence over the schedule on this look.
        if (await expiry(row, now, report, waits)) continue;
        await schedule(row, now, report, waits);
      } catch (error) {
        if (error instanceof NotFoundError || error instanceof ConflictError) continue; // gone or terminated meanwhile
        logger.error('the scheduler could not act on an instance', { instance_id: row.instance_id, error: String(error) });
      }
    }
    report.settled = Promise.all(waits).then(() => undefined);
    return report;
  }

  return {
    tick() {
      if (current) return current;
      const started = look();
      current = started;
      const clear = () => {
        if (current === started) current = undefined;
      };
      started.then(clear, clear);
      return started;
    },
  };
}
