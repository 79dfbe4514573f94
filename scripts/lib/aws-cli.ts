/**
 * Where the aws program itself is. pyenv's shim for `aws` is a shell script that works the Python
 * version out again on every call, about a quarter of what a CLI call costs; the tests and benchmarks,
 * which make hundreds, call the program the shim leads to instead (the same CLI, found once).
 */
import { execFileSync } from 'node:child_process';
import { accessSync, closeSync, constants, openSync, readSync, statSync } from 'node:fs';
import path from 'node:path';

/** The first executable `command` on PATH, leaving out the folders in `skip`; undefined when there is none. */
export function firstOnPath(command: string, skip: readonly string[] = []): string | undefined {
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
  return undefined;
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
 * The program the first `command` on PATH (outside `skip`) runs: that file itself, or, when it is
 * pyenv's shim, the program pyenv resolves it to (the shim when pyenv cannot say; it still works, only
 * slower). Undefined when `command` is not on PATH. A wrapper that must be kept must not contain "pyenv".
 */
export function realProgram(command: string, skip: readonly string[] = []): string | undefined {
  const first = firstOnPath(command, skip);
  if (!first || !startOf(first).includes('pyenv')) return first;
  try {
    return execFileSync('pyenv', ['which', command], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return first;
  }
}

/** The aws program itself (see realProgram). */
export function realAwsCli(skip: readonly string[] = []): string | undefined {
  return realProgram('aws', skip);
}
