/**
 * The one fake aws CLI (test/fixtures/fake-aws/aws): the environment that puts it first on PATH in front
 * of the real CLI, with the FAKE_AWS_* variables that choose its faults (see the fixture's header).
 */
import { accessSync, constants, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { testRunDir } from './global-fixture.js';

export const fakeAwsDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'fake-aws');

let realAws: string | undefined;

function findOnPath(command: string): string {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir || path.resolve(dir) === fakeAwsDir) continue;
    const candidate = path.join(dir, command);
    try {
      if (statSync(candidate).isFile()) {
        accessSync(candidate, constants.X_OK);
        return candidate;
      }
    } catch {
      // keep looking
    }
  }
  throw new Error(`${command} is not on PATH`);
}

export function fakeAwsEnv(vars: Record<string, string> = {}): Record<string, string> {
  realAws ??= findOnPath('aws');
  return { PATH: `${fakeAwsDir}${path.delimiter}${process.env.PATH ?? ''}`, FAKE_AWS_REAL: realAws, ...vars };
}

/**
 * The fake aws passing every call through to the real CLI, recording each call's operation: the
 * environment to run a script (or a runner) with, and the operations made so far, in order.
 */
export function recordAwsCalls(): { env: Record<string, string>; operations(): string[]; clear(): void } {
  const log = path.join(mkdtempSync(path.join(testRunDir(), 'aws-calls-')), 'calls.log');
  writeFileSync(log, '');
  return {
    env: fakeAwsEnv({ FAKE_AWS_LOG: log }),
    operations: () => readFileSync(log, 'utf8').split('\n').filter(Boolean).map((line) => line.split(' ')[0] as string),
    clear: () => writeFileSync(log, ''),
  };
}
