/**
 * The only place that spawns processes. Each script runs from an argument array (never a shell) as the
 * leader of its own process group (`detached`), so a timeout can signal the whole group: the script, the
 * `aws` CLI it started and anything they spawned. execa's own `timeout` would signal only the direct
 * child and leave `aws` running (`killDescendants` would not SIGKILL what an exited script left behind in
 * its group), so we keep our own timer.
 *
 * The result is the parsed stdout document validated against the script's schema, or a ScriptError whose
 * `failure` says which class of problem happened (from the exit code contract of aws_cli_bash_scripts/).
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { ScriptError, type ScriptFailure } from './errors.js';
import { redactText } from '../redact.js';
import type { Logger } from '../logger.js';
import type { ScriptProgress } from '../schemas/script-outputs.js';
import { describeAjvErrors, validateScriptError, validateScriptProgress, type ValidateFunction } from '../schemas/validators.js';

export interface RunContext {
  requestId?: string | undefined;
  /** Overrides the runner's default timeout for this run. */
  timeoutMs?: number | undefined;
  /** Whether the arguments came from the client (so an invalid-argument exit is the client's 400). */
  clientInput?: boolean | undefined;
  /**
   * Told each progress line the script writes on its progress descriptor (PROGRESS_FD), as it comes: given
   * only to a script that takes --progress-fd. Lines that are not a valid progress document are logged, never
   * passed on.
   */
  onProgress?: ((progress: ScriptProgress) => void) | undefined;
  /**
   * Told the script's process group as soon as it is spawned, and null once nothing of it runs any more.
   * A script outlives a server that is killed (it leads its own group), so its operation records the group
   * for start-up to find.
   */
  onProcessGroup?: ((pgid: number | null) => void) | undefined;
}

export interface ScriptRunner {
  run<T>(script: string, args: readonly string[], validate: ValidateFunction<T>, ctx?: RunContext): Promise<T>;
  /** Default per-script timeout (adapters derive the scripts' own --wait-timeout from it). */
  readonly timeoutMs: number;
  /**
   * Kills every running script's process group (shutdown): SIGTERM, then SIGKILL after the grace time;
   * with `force`, SIGKILL at once (the process is about to exit and could not send the second signal).
   */
  killAll(options?: { force?: boolean }): void;
}

export interface RunnerOptions {
  scriptsDir: string;
  timeoutMs: number;
  logger: Logger;
  /** Extra environment for the scripts, merged over process.env (e.g. PATH with a fake aws in tests). */
  env?: Record<string, string | undefined>;
  /** Time between SIGTERM and SIGKILL to the process group after a timeout. */
  killGraceMs?: number;
  /** Largest stdout/stderr accepted. */
  maxBufferBytes?: number;
}

const EXIT_FAILURES: Record<number, ScriptFailure> = {
  1: 'other',
  2: 'invalid-argument',
  3: 'not-found',
  4: 'conflict',
  5: 'throttled',
  6: 'credentials',
  7: 'wait-timeout',
  8: 'missing-dependency',
  10: 'incorrect-state',
};

/** The descriptor a script writes its progress lines to, when the run asks for them (onProgress). */
export const PROGRESS_FD = 4;

/**
 * A run given several ids ended with some of them failed: its document still holds every id's outcome,
 * so it is read like a success (the adapter turns each failed id into that id's own ScriptError).
 */
export const EXIT_SOME_FAILED = 9;

const SCRIPT_NAME = /^[a-z][a-z0-9_]*\.sh$/;

/** The class of failure a script's exit code names (see aws_cli_bash_scripts/README.md). */
export function failureOfExitCode(exitCode: number): ScriptFailure {
  return EXIT_FAILURES[exitCode] ?? 'other';
}

function signalGroup(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    return false; // ESRCH: the group is already gone
  }
}

function tail(text: string, max = 500): string {
  const trimmed = text.trim();
  return trimmed.length > max ? `…${trimmed.slice(-max)}` : trimmed;
}

export function createScriptRunner(options: RunnerOptions): ScriptRunner {
  const { scriptsDir, logger } = options;
  const killGraceMs = options.killGraceMs ?? 5_000;
  const maxBuffer = options.maxBufferBytes ?? 10 * 1024 * 1024;
  const running = new Set<number>();

  async function run<T>(
    script: string,
    args: readonly string[],
    validate: ValidateFunction<T>,
    ctx: RunContext = {},
  ): Promise<T> {
    if (!SCRIPT_NAME.test(script)) throw new Error(`not a script name: ${script}`);
    const file = path.join(scriptsDir, script);
    const timeoutMs = ctx.timeoutMs ?? options.timeoutMs;
    const started = performance.now();

    const child = execa(file, [...args], {
      detached: true,
      cleanup: false,
      reject: false,
      // fd 3 stays closed: the scripts keep their own there (the result's stdout, reachable from subshells).
      stdio: ctx.onProgress ? ['ignore', 'pipe', 'pipe', 'ignore', 'pipe'] : ['ignore', 'pipe', 'pipe'],
      stripFinalNewline: true,
      maxBuffer,
      env: options.env ?? {},
      extendEnv: true,
      cwd: scriptsDir,
      forceKillAfterDelay: false,
    });

    const pid = child.pid;
    if (ctx.onProgress) readProgress(child.stdio[PROGRESS_FD] as NodeJS.ReadableStream | null, script, ctx);
    let timedOut = false;
    let killTimer: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      if (pid === undefined) return;
      timedOut = true;
      signalGroup(pid, 'SIGTERM');
      killTimer = setTimeout(() => signalGroup(pid, 'SIGKILL'), killGraceMs);
    }, timeoutMs);
    const report = (pgid: number | null): void => {
      try {
        ctx.onProcessGroup?.(pgid);
      } catch (error) {
        logger.warn('could not record the process group of a script', {
          request_id: ctx.requestId, script, process_group: pgid, error: error instanceof Error ? error.message : String(error),
        });
      }
    };
    if (pid !== undefined) {
      running.add(pid);
      report(pid);
    }

    const result = await child;
    clearTimeout(timer);
    if (pid !== undefined) {
      running.delete(pid);
      if (killTimer) clearTimeout(killTimer);
      // The leader is gone; nothing it left behind in its group may outlive it (a no-op when the group is empty).
      signalGroup(pid, 'SIGKILL');
      report(null);
    }

    const durationMs = Math.round(performance.now() - started);
    const exitCode = result.exitCode;
    const signal = result.signal;
    const stdout = typeof result.stdout === 'string' ? result.stdout : '';
    const stderr = typeof result.stderr === 'string' ? result.stderr : '';

    // Script output is untrusted and may echo secrets (AWS keys, tokens); the message and
    // stderr tail travel on into logs, operation records and problem details, so they are redacted here.
    const fail = (failure: ScriptFailure, message: string, code?: string, instanceId?: string): ScriptError =>
      new ScriptError(failure, script, redactText(message), {
        exitCode, signal, code, clientInput: ctx.clientInput, stderrTail: stderr ? redactText(tail(stderr, 2000)) : undefined, instanceId,
      });

    let outcome: { ok: true; value: T } | { ok: false; error: ScriptError };
    let parsed: unknown;
    let parseOk = false;
    try {
      parsed = JSON.parse(stdout);
      parseOk = true;
    } catch {
      parsed = undefined;
    }

    if (timedOut) {
      outcome = { ok: false, error: fail('timeout', `${script} did not finish within ${timeoutMs} ms and was killed`) };
    } else if (result.failed && exitCode === undefined && signal === undefined) {
      // Could not spawn (ENOENT, EACCES) or output too large.
      outcome = { ok: false, error: fail('spawn', `${script} could not be run: ${result.shortMessage ?? result.message}`) };
    } else if (exitCode === 0 || (exitCode === EXIT_SOME_FAILED && parseOk && !validateScriptError(parsed))) {
      if (!parseOk) {
        outcome = { ok: false, error: fail('bad-output', `${script} printed output that is not one JSON document`) };
      } else if (!validate(parsed)) {
        const why = describeAjvErrors(validate.errors)
          .slice(0, 5)
          .map((e) => `${e.field} ${e.message}`)
          .join('; ');
        outcome = { ok: false, error: fail('bad-output', `${script} printed JSON of the wrong shape: ${why}`) };
      } else {
        outcome = { ok: true, value: parsed };
      }
    } else {
      const failure: ScriptFailure =
        exitCode === undefined ? 'signal' : failureOfExitCode(exitCode);
      let code: string | undefined;
      let message: string;
      let instanceId: string | undefined;
      if (parseOk && validateScriptError(parsed)) {
        code = parsed.error.code;
        message = parsed.error.message;
        instanceId = parsed.error.instance_id;
      } else if (exitCode === undefined) {
        message = `${script} was killed by ${signal ?? 'a signal'}`;
      } else {
        message = `${script} exited with code ${exitCode}${stderr ? `: ${tail(stderr)}` : ''}`;
      }
      outcome = { ok: false, error: fail(failure, message, code, instanceId) };
    }

    const line = {
      request_id: ctx.requestId,
      script,
      args,
      exit_code: exitCode ?? null,
      signal: signal ?? null,
      duration_ms: durationMs,
      timed_out: timedOut,
      outcome: outcome.ok ? (exitCode === EXIT_SOME_FAILED ? 'some-failed' : 'ok') : outcome.error.failure,
      ...(outcome.ok ? {} : { error_code: outcome.error.details.code, error: outcome.error.message }),
      ...(outcome.ok || !stderr ? {} : { stderr: tail(stderr, 2000) }),
    };
    if (outcome.ok) logger.info('script run', line);
    else logger.warn('script run', line);

    if (!outcome.ok) throw outcome.error;
    return outcome.value;
  }

  /** Hands each valid progress line to ctx.onProgress as it arrives; a broken one is logged and skipped. */
  function readProgress(stream: NodeJS.ReadableStream | null, script: string, ctx: RunContext): void {
    if (!stream) return;
    let pending = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      pending += chunk;
      let newline: number;
      while ((newline = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        let progress: unknown;
        try {
          progress = JSON.parse(line);
        } catch {
          progress = undefined;
        }
        if (!validateScriptProgress(progress)) {
          logger.warn('a script wrote a progress line that is not a progress document', {
            request_id: ctx.requestId, script, line: redactText(line.slice(0, 500)),
          });
          continue;
        }
        try {
          ctx.onProgress?.(progress);
        } catch (error) {
          logger.warn('a progress line could not be handled', {
            request_id: ctx.requestId, script, error: error instanceof Error ? error.message : String(error),
          });
        }
      }
    });
  }

  return {
    run,
    timeoutMs: options.timeoutMs,
    killAll(killOptions = {}) {
      for (const pid of running) {
        if (killOptions.force) {
          signalGroup(pid, 'SIGKILL');
          continue;
        }
        signalGroup(pid, 'SIGTERM');
        setTimeout(() => signalGroup(pid, 'SIGKILL'), killGraceMs).unref();
      }
    },
  };
}

// --- Scripts that outlived the server that started them --------------------------------------------------
// After a crash, a script (the leader of its own process group) may still run. Start-up finds it from the
// process group its operation recorded, makes sure that group is still that script (the id may have been
// reused), and waits for it or stops it as the runner would have. Linux only: it reads /proc; elsewhere no
// orphan is ever found.

/** A script left running by an earlier server process. */
export interface OrphanScript {
  pgid: number;
  /** The script's file name, e.g. create_instance.sh. */
  script: string;
  /** When it started, in ms since the epoch (from /proc, to within a few clock ticks). */
  startedAtMs: number;
  /** Its start time in clock ticks since boot: tells it apart from a later process given the same id. */
  startTicks: number;
}

export type OrphanOutcome = 'finished' | 'killed' | 'unstoppable';

export interface OrphanScripts {
  /** The live script leading process group `pgid`, if it is one of ours started no earlier than `notBeforeMs`. */
  find(pgid: number, notBeforeMs: number): OrphanScript | undefined;
  /** Waits for it to end until `deadlineMs`; then SIGTERM to the group, SIGKILL after the grace time. */
  settle(orphan: OrphanScript, deadlineMs: number): Promise<OrphanOutcome>;
}

/** /proc reports times in USER_HZ, which Linux fixes at 100 for user space. */
const CLOCK_TICKS_PER_SECOND = 100;
/** /proc/uptime and the wall clock are read at slightly different moments; a start time is judged with this slack. */
const START_TIME_SLACK_MS = 1_000;

function procStat(pid: number): { state: string; pgrp: number; startTicks: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: fields are counted after its last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0] ?? '', pgrp: Number(fields[2]), startTicks: Number(fields[19]) };
  } catch {
    return undefined; // no such process (or no /proc)
  }
}

/** Live (not zombie) members of process group `pgid`. */
function liveMembers(pgid: number): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  return entries
    .filter((entry) => /^\d+$/.test(entry))
    .map(Number)
    .filter((pid) => {
      const stat = procStat(pid);
      return stat !== undefined && stat.pgrp === pgid && stat.state !== 'Z';
    });
}

export function orphanScripts(options: { scriptsDir: string; killGraceMs?: number; pollMs?: number }): OrphanScripts {
  const scriptsDir = path.resolve(options.scriptsDir);
  const graceMs = options.killGraceMs ?? 5_000;
  const pollMs = options.pollMs ?? 200;

  /** Whether nothing of the orphan's group runs any more (a new leader under the same id is not the orphan). */
  function gone(orphan: OrphanScript): boolean {
    const leader = procStat(orphan.pgid);
    if (leader && leader.startTicks !== orphan.startTicks) return true;
    return liveMembers(orphan.pgid).length === 0;
  }

  async function goneBy(orphan: OrphanScript, deadlineMs: number): Promise<boolean> {
    while (!gone(orphan)) {
      const left = deadlineMs - Date.now();
      if (left <= 0) return false;
      await sleep(Math.min(pollMs, left));
    }
    return true;
  }

  return {
    find(pgid, notBeforeMs) {
      const stat = procStat(pgid);
      if (!stat || stat.state === 'Z' || stat.pgrp !== pgid) return undefined;
      let argv: string[];
      let uptime: number;
      try {
        argv = readFileSync(`/proc/${pgid}/cmdline`, 'utf8').split('\0');
        uptime = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
      } catch {
        return undefined;
      }
      // `#!/usr/bin/env bash` runs as `bash /abs/scripts/name.sh …`: the script's path is among the first words.
      const file = argv.slice(0, 3).find(
        (word) => path.isAbsolute(word) && path.dirname(word) === scriptsDir && SCRIPT_NAME.test(path.basename(word)),
      );
      if (!file) return undefined;
      const startedAtMs = Date.now() - (uptime - stat.startTicks / CLOCK_TICKS_PER_SECOND) * 1000;
      if (startedAtMs < notBeforeMs - START_TIME_SLACK_MS) return undefined; // older than the operation: not its script
      return { pgid, script: path.basename(file), startedAtMs, startTicks: stat.startTicks };
    },

    async settle(orphan, deadlineMs) {
      if (await goneBy(orphan, deadlineMs)) return 'finished';
      if (!gone(orphan)) signalGroup(orphan.pgid, 'SIGTERM');
      if (await goneBy(orphan, Date.now() + graceMs)) return 'killed';
      if (!gone(orphan)) signalGroup(orphan.pgid, 'SIGKILL');
      return (await goneBy(orphan, Date.now() + graceMs)) ? 'killed' : 'unstoppable';
    },
  };
}
