/**
 * The one fake aws CLI (test/fixtures/fake-aws/aws): the environment that puts it first on PATH in front
 * of the real CLI, with the FAKE_AWS_* variables that choose its faults (see the fixture's header).
 */
import { accessSync, constants, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

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
