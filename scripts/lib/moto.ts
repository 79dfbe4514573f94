import { spawn, type ChildProcess } from 'node:child_process';
import { dieWithParent } from './die-with-parent.js';
import { freeLoopbackPort } from './ports.js';

/**
 * The moto EC2 emulator on a free loopback port: for the tests, the sandbox and the benchmarks, so
 * nothing they do can reach AWS.
 */
export interface MotoServer {
  endpoint: string;
  /** Settles when moto_server exits, with its exit code (null when killed by a signal). */
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

const STARTUP_LIMIT_MS = 30_000;
const MOTO_MISSING =
  'moto_server is not on PATH. The integration tests need the moto EC2 emulator ' +
  '(pip install "moto[server]"); it ships with the development image.';

async function waitUntilAnswering(endpoint: string, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + STARTUP_LIMIT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      if (/FileNotFoundError/.test(output())) throw new Error(MOTO_MISSING);
      throw new Error(`moto_server exited with code ${child.exitCode} before answering:\n${output()}`);
    }
    try {
      const response = await fetch(`${endpoint}/moto-api/`);
      if (response.status < 500) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`moto_server did not answer within ${STARTUP_LIMIT_MS} ms:\n${output()}`);
}

/** Starts the real EC2 emulator on a free loopback port. */
export async function startMoto(options: { holdsProcessOpen?: boolean } = {}): Promise<MotoServer> {
  const port = await freeLoopbackPort();
  const endpoint = `http://127.0.0.1:${port}`;
  let output = '';
  const [command, args] = dieWithParent('moto_server', ['-H', '127.0.0.1', '-p', String(port)]);
  const child = spawn(command, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const spawnFailure = new Promise<never>((_, reject) => {
    child.once('error', (error: NodeJS.ErrnoException) => {
      reject(
        error.code === 'ENOENT'
          ? new Error(MOTO_MISSING)
          : error,
      );
    });
  });
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  await Promise.race([waitUntilAnswering(endpoint, child, () => output), spawnFailure]);

  if (options.holdsProcessOpen === false) {
    // The emulator dies with this process anyway (dieWithParent); it must not keep it running.
    child.unref();
    for (const stream of [child.stdout, child.stderr]) (stream as unknown as { unref?: () => void } | null)?.unref?.();
  }
  const exited = new Promise<number | null>((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    else child.once('exit', (code) => resolve(code));
  });
  return {
    endpoint,
    exited,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
