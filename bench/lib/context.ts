/** What every part of the suite is handed: the run's workspace and settings, and the service it starts. */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { apiClient, type Api } from './api.js';
import { awsShim, type AwsShim } from './aws-shim.js';
import { BENCH_KEY_NAME } from './fleet.js';
import { startServerProcess, type ServerProcess } from './server-process.js';
import type { Figure } from './report.js';
import type { Workspace } from './workspace.js';

export interface BenchContext {
  workspace: Workspace;
  realAws: string;
  quick: boolean;
  /** An operator token the servers are configured with: authentication stays on, as by default. */
  token: string;
  progress(message: string): void;
  /** Adds a measured figure to the run's results (as soon as it is known: a later failure keeps it). */
  record(figure: Figure): void;
}

export function newToken(): string {
  return randomBytes(24).toString('base64url');
}

export interface BenchServer {
  server: ServerProcess;
  api: Api;
  shim: AwsShim;
  /** What the server's scripts see beyond the caller's environment (a script run directly gets the same). */
  scriptEnv: Record<string, string>;
}

/**
 * A server on its own database with the counting aws in front of moto; `delayS` slows every aws call.
 * Rate limiting is off: a run makes more changing requests a minute than the default allows, and the
 * limiter's cost is not what any figure is about. Nothing else is set, COALESCE_WINDOW_MS included:
 * the service's defaults (or the caller's environment) are what is measured.
 */
export async function startBenchServer(
  ctx: BenchContext,
  name: string,
  options: { databaseFile?: string; databaseUrl?: string; delayS?: number } = {},
): Promise<BenchServer> {
  const dir = ctx.workspace.dir;
  const shim = awsShim(path.join(dir, `${name}-aws-calls.log`), ctx.realAws);
  const scriptEnv = { ...ctx.workspace.awsEnv, ...shim.env({ delayS: options.delayS ?? 0 }), KEY_NAME: BENCH_KEY_NAME };
  const server = await startServerProcess(ctx.workspace, name, {
    ...scriptEnv,
    DATABASE_URL: options.databaseUrl ?? options.databaseFile ?? path.join(dir, `${name}.db`),
    API_TOKENS: `bench:operator:${ctx.token}`,
    RATE_LIMIT_PER_MINUTE: '0',
  });
  return { server, api: apiClient(server.url, ctx.token), shim, scriptEnv };
}
