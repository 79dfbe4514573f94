/**
 * Wraps a command so that the kernel ends it when the process that spawned it dies, SIGKILL included
 * (prctl PR_SET_PDEATHSIG, which survives exec). Without it a killed test run or sandbox leaves its
 * emulator and servers running. Linux only; elsewhere the command runs as it is.
 */
const PR_SET_PDEATHSIG = 1;

const PYTHON_PROGRAM = [
  'import ctypes, os, signal, sys',
  `ctypes.CDLL(None, use_errno=True).prctl(${PR_SET_PDEATHSIG}, signal.SIGTERM)`,
  // The parent may have died before prctl took effect: then nobody would ever end us.
  'if os.getppid() != int(sys.argv[1]): sys.exit(1)',
  'os.execvp(sys.argv[2], sys.argv[2:])',
].join('\n');

export function dieWithParent(command: string, args: readonly string[]): [string, string[]] {
  if (process.platform !== 'linux') return [command, [...args]];
  return ['python3', ['-c', PYTHON_PROGRAM, String(process.pid), command, ...args]];
}
