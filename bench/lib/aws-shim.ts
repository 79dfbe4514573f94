/**
 * The counting (and, on request, slow) aws CLI the benchmarks put in front of the real one
 * (bench/aws-shim/aws): the environment that makes a server's scripts use it, and its call log read back.
 */
import { execFileSync } from 'node:child_process';
import { accessSync, closeSync, constants, openSync, readFileSync, readSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const shimDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'aws-shim');

/** One aws call as the shim recorded it. */
export interface AwsCall {
  operation: string;
  /** The process group of the call: one script run (the service and the bench start each script as a group leader). */
  group: number;
  /** The script that made the call, or '-' when its group is not led by a script. */
  script: string;
  /** The script's own arguments (after its path). */
  scriptArgs: string[];
}

function firstOnPath(command: string, skip: string[]): string {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir || skip.includes(path.resolve(dir))) continue;
    const candidate = path.join(dir, command);
    try {
      if (!statSync(candidate).isFile()) continue;
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // keep looking
    }
  }
  throw new Error(`${command} is not on PATH (the benchmarks run the real AWS CLI against moto_server)`);
}

function startOf(file: string): string {
  const fd = openSync(file, 'r');
  try {
    const buffer = Buffer.alloc(2000);
    return buffer.toString('utf8', 0, readSync(fd, buffer, 0, buffer.length, 0));
  } finally {
    closeSync(fd);
  }
}

/**
 * The aws program itself. pyenv's shim works the Python version out again on every call (a quarter of
 * what a call costs), which would be measured as the service's time; the tests skip it the same way.
 */
export function realAwsCli(): string {
  const first = firstOnPath('aws', [shimDir]);
  if (!startOf(first).includes('pyenv')) return first;
  try {
    return execFileSync('pyenv', ['which', 'aws'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return first; // the shim still works, only slower
  }
}

export interface AwsShim {
  /** Variables that route a process's aws calls through the shim (merge over the rest of its environment). */
  env(options?: { delayS?: number }): Record<string, string>;
  calls(): AwsCall[];
  clear(): void;
}

/** A shim recording into `logFile` (each server gets its own log). */
export function awsShim(logFile: string, realAws: string): AwsShim {
  writeFileSync(logFile, '');
  return {
    env(options = {}) {
      return {
        PATH: `${shimDir}${path.delimiter}${process.env.PATH ?? ''}`,
        BENCH_AWS_REAL: realAws,
        BENCH_AWS_LOG: logFile,
        BENCH_AWS_DELAY_S: String(options.delayS ?? 0),
      };
    },
    calls() {
      return readFileSync(logFile, 'utf8').split('\n').filter(Boolean).map((line) => {
        const [operation = '', group = '0', script = '-', ...scriptArgs] = line.split('\t');
        return { operation, group: Number(group), script, scriptArgs };
      });
    },
    clear() {
      writeFileSync(logFile, '');
    },
  };
}
