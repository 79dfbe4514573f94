/**
 * Runs the Jenkins job scripts (scripts/jenkins/*.sh) as Jenkins would: parameters and credentials as
 * environment variables, WORKSPACE set to a temp folder. Also a recording HTTP stand-in for the API,
 * for what must (or must not) be sent.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { repoRoot, run, type Run } from './ops-manager.js';

export type JobScript =
  | 'create_instance.sh' | 'list_instances.sh' | 'start_instance.sh' | 'stop_instance.sh' | 'destroy_instance.sh';

export interface JobRun extends Run {
  workspace: string;
  /** The archived answer ($WORKSPACE/results/NAME.json), parsed; undefined when the file is missing. */
  result(name: string): any;
}

const workspaces: string[] = [];

/** Removes the workspaces runJob made (call from an after hook). */
export function removeJobWorkspaces(): void {
  for (const dir of workspaces.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/** One Jenkins build: a fresh workspace and the given environment. */
export async function runJob(script: JobScript, env: Record<string, string | undefined>): Promise<JobRun> {
  const workspace = mkdtempSync(path.join(tmpdir(), 'ec2-creator-ws-'));
  workspaces.push(workspace);
  const result = await run('bash', [path.join(repoRoot, 'scripts', 'jenkins', script)], {
    WORKSPACE: workspace,
    ...env,
  }, { cwd: workspace, timeoutMs: 180_000 });
  return {
    ...result,
    workspace,
    result(name: string) {
      const file = path.join(workspace, 'results', `${name}.json`);
      return existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : undefined;
    },
  };
}

export interface RecordedRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface Answer {
  status: number;
  contentType: string;
  body: string;
}

export interface Recorder {
  url: string;
  requests: RecordedRequest[];
  /** What the next requests are answered (a function sees the requests so far, this one last). */
  answer: Answer | ((requests: RecordedRequest[]) => Answer);
  close(): Promise<void>;
}

/** An HTTP server on a free loopback port that records every request and answers `answer`. */
export async function startRecorder(): Promise<Recorder> {
  const requests: RecordedRequest[] = [];
  const recorder = {
    url: '',
    requests,
    answer: { status: 200, contentType: 'application/json', body: '{}' },
  } as Recorder;
  const server: Server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      const answer = typeof recorder.answer === 'function' ? recorder.answer(requests) : recorder.answer;
      res.writeHead(answer.status, { 'Content-Type': answer.contentType, 'X-Request-Id': 'rec-1' });
      res.end(answer.body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('recorder has no port');
  recorder.url = `http://127.0.0.1:${address.port}`;
  recorder.close = async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  };
  return recorder;
}
