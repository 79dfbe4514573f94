/**
 * Runs the Jenkins job scripts (scripts/jenkins/*.sh) as Jenkins would: parameters and credentials as
 * environment variables, WORKSPACE set to a temp folder (WORKSPACE_TMP beside it, not created, BUILD_TAG
 * naming the build). runPipeline runs a whole instance job: the stage scripts its Jenkinsfile names, in
 * order, then the post steps of jenkins/lib/instanceJob.groovy. Also a recording HTTP stand-in for the API,
 * for what must (or must not) be sent.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { repoRoot, run, type Run } from './ops-manager.js';

export type JobScript =
  | 'create_instance.sh' | 'list_instances.sh' | 'start_instance.sh' | 'stop_instance.sh' | 'destroy_instance.sh'
  | 'launch_policy.sh' | 'destroy_check.sh' | 'build_description.sh' | 'report_problem.sh';

/** The jobs of jenkins/aws_cli_jobs/, by the suffix of their Jenkinsfile. */
export type InstanceJob = 'create' | 'list' | 'start' | 'stop' | 'destroy';

export const instanceJobs: readonly InstanceJob[] = ['create', 'list', 'start', 'stop', 'destroy'];

/** What the post steps of jenkins/lib/instanceJob.groovy run: finish() always, reportFailure() on failure. */
export const POST_ALWAYS: JobScript = 'build_description.sh';
export const POST_FAILURE: JobScript = 'report_problem.sh';

export interface JobRun extends Run {
  workspace: string;
  /** The archived answer ($WORKSPACE/results/NAME.json), parsed; undefined when the file is missing. */
  result(name: string): any;
}

const workspaces: string[] = [];
let builds = 0;

/** Removes the workspaces runJob made (call from an after hook). */
export function removeJobWorkspaces(): void {
  for (const dir of workspaces.splice(0)) {
    rmSync(dir, { recursive: true, force: true });
    rmSync(`${dir}@tmp`, { recursive: true, force: true });
  }
}

/** A fresh, empty workspace, removed by removeJobWorkspaces. */
export function newWorkspace(): string {
  const workspace = mkdtempSync(path.join(tmpdir(), 'ec2-creator-ws-'));
  workspaces.push(workspace);
  return workspace;
}

/** A build's BUILD_TAG, as Jenkins makes it (jenkins-JOB-NUMBER). */
export function newBuildTag(): string {
  builds += 1;
  return `jenkins-ec2-creator-${process.pid}-${builds}`;
}

function readResult(workspace: string, name: string): any {
  const file = path.join(workspace, 'results', `${name}.json`);
  return existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : undefined;
}

/** One script as one sh step of a build: in the workspace (a fresh one unless given), with the given environment. */
export async function runJob(
  script: JobScript,
  env: Record<string, string | undefined>,
  options: { workspace?: string; buildTag?: string } = {},
): Promise<JobRun> {
  const workspace = options.workspace ?? newWorkspace();
  const result = await run('bash', [path.join(repoRoot, 'scripts', 'jenkins', script)], {
    WORKSPACE: workspace,
    WORKSPACE_TMP: `${workspace}@tmp`,
    BUILD_TAG: options.buildTag ?? newBuildTag(),
    ...env,
  }, { cwd: workspace, timeoutMs: 180_000 });
  return { ...result, workspace, result: (name: string) => readResult(workspace, name) };
}

/** The scripts the stages of jenkins/aws_cli_jobs/Jenkinsfile.JOB run, in the order the Jenkinsfile names them. */
export function stageScripts(job: InstanceJob): JobScript[] {
  const text = readFileSync(path.join(repoRoot, 'jenkins', 'aws_cli_jobs', `Jenkinsfile.${job}`), 'utf8');
  return [...text.matchAll(/\binstanceJob\.runStage\('([a-z_]+\.sh)'\)/g)].map((match) => match[1] as JobScript);
}

export interface PipelineRun {
  workspace: string;
  /** The stages that ran, in order; the last one failed when exitCode is not 0. */
  stages: Array<JobRun & { script: JobScript }>;
  /** 0 when every stage passed, else the failed stage's exit code. */
  exitCode: number;
  /** currentBuild.description as the post step sets it ('' leaves it unset). */
  description: string;
  /** What the failure post step printed; undefined when the build passed. */
  failureReport?: string;
  result(name: string): any;
  /** Every stage's and post step's output, for assertion messages. */
  output: string;
}

/**
 * One build of an instance job, as Jenkins runs it: the Jenkinsfile's stage scripts in order, in one
 * workspace, each with the parameters and the API credential bound as withCredentials binds it; the first
 * failing stage ends the build. Then the post steps, which run without the credential: the description
 * always, the problem report on failure. The destroy job's approval (an input step) is taken as given.
 */
export async function runPipeline(
  job: InstanceJob,
  options: { params?: Record<string, string>; credentials: { API_URL: string; API_TOKEN?: string }; workspace?: string },
): Promise<PipelineRun> {
  const workspace = options.workspace ?? newWorkspace();
  const buildTag = newBuildTag();
  const params = options.params ?? {};
  const stages: PipelineRun['stages'] = [];
  let exitCode = 0;
  for (const script of stageScripts(job)) {
    const stage = await runJob(script, { ...params, ...options.credentials }, { workspace, buildTag });
    stages.push({ ...stage, script });
    exitCode = stage.exitCode;
    if (exitCode !== 0) break;
  }
  const description = await runJob(POST_ALWAYS, params, { workspace, buildTag });
  const report = exitCode === 0 ? undefined : await runJob(POST_FAILURE, params, { workspace, buildTag });
  const output = [
    ...stages.map((stage) => `--- stage ${stage.script} (exit ${stage.exitCode})\n${stage.output}`),
    `--- post ${POST_ALWAYS}\n${description.output}`,
    ...(report ? [`--- post ${POST_FAILURE}\n${report.output}`] : []),
  ].join('\n');
  if (description.exitCode !== 0 || (report && report.exitCode !== 0)) {
    throw new Error(`a post step failed, which would fail the build's post section:\n${output}`);
  }
  return {
    workspace,
    stages,
    exitCode,
    description: description.stdout.trim(),
    ...(report ? { failureReport: report.stdout } : {}),
    result: (name: string) => readResult(workspace, name),
    output,
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
