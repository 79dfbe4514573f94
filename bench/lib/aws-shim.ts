/**
 * The counting (and, on request, slow) aws CLI the benchmarks put in front of the real one
 * (bench/aws-shim/aws): the environment that makes a server's scripts use it, and its call log read back.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { realAwsCli as findRealAwsCli } from '../../scripts/lib/aws-cli.js';

const shimDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'aws-shim');

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

/** The aws program itself (not pyenv's shim, whose own work would be measured as the service's time). */
export function realAwsCli(): string {
  const real = findRealAwsCli([shimDir]);
  if (!real) throw new Error('aws is not on PATH (the benchmarks run the real AWS CLI against moto_server)');
  return real;
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
