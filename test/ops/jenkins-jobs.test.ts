import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { resetMoto } from '../support/global-fixture.js';
import { removeJobWorkspaces, runJob, startRecorder, type Recorder } from '../support/ops-jobs.js';
import { createServerSandbox, ensureBuilt, repoRoot, run, type ServerSandbox } from '../support/ops-manager.js';
import { allEc2Instances, ec2InstanceById, UBUNTU_X86_AMI } from '../support/ec2-reader.js';

const KEY_NAME = 'ec2c-ops-jenkins-key';

describe('Jenkins job scripts against the running service', function () {
  this.timeout(180_000);
  let sandbox: ServerSandbox;
  let keyDir: string;
  let api: Record<string, string>;

  before(async function () {
    this.timeout(300_000);
    await ensureBuilt();
    await resetMoto();
    keyDir = mkdtempSync(path.join(tmpdir(), 'ec2-creator-ops-key-'));
    const key = await run('bash', [
      path.join(repoRoot, 'aws_cli_bash_scripts', 'ensure_key_pair.sh'), '--create',
      `--private-key-file=${path.join(keyDir, `${KEY_NAME}.pem`)}`, KEY_NAME,
    ], {});
    assert.equal(key.exitCode, 0, key.output);
    // The service accepts this operator token (API_TOKENS, name:role:token); the jobs send it as
    // withCredentials binds it, with the base URL (trailing slash and all, as people paste it).
    const token = randomBytes(24).toString('hex');
    sandbox = await createServerSandbox({ KEY_NAME, API_TOKENS: `jenkins-ci:operator:${token}` });
    const started = await sandbox.manage(['start']);
    assert.equal(started.exitCode, 0, started.output);
    api = { API_URL: `${sandbox.baseUrl}/`, API_TOKEN: token };
  });

  after(async () => {
    removeJobWorkspaces();
    await sandbox?.cleanup();
    if (keyDir) rmSync(keyDir, { recursive: true, force: true });
  });

  it('when the jobs run create, list, stop, start and destroy, then each archives the answer, prints a summary and EC2 follows', async () => {
    const create = await runJob('create_instance.sh', {
      ...api,
      INSTANCE_NAME: 'ci web/1',
      AMI_ID: UBUNTU_X86_AMI,
      INSTANCE_TYPE: 't3.micro',
      STORAGE_GB: ' 8 ',
      CREATE_SECURITY_GROUP: 'false',
    });
    assert.equal(create.exitCode, 0, create.output);
    const created = create.result('instance-create');
    assert.match(created.id, /^i-[0-9a-f]+$/);
    assert.equal(created.name, 'ci web/1');
    assert.equal(created.storage_gb, 8);
    assert.match(create.stdout, new RegExp(`Created instance ${created.id}`));
    assert.match(create.stdout, /name:\s+ci web\/1/);
    assert.match(create.stdout, /type:\s+t3\.micro/);
    assert.match(create.stdout, /results\/instance-create\.json/);
    const launched = await ec2InstanceById(created.id);
    assert.equal(launched.State.Name, 'running');
    assert.equal(launched.InstanceType, 't3.micro');
    assert.equal(launched.KeyName, KEY_NAME);
    assert.deepEqual(launched.Tags.find((tag: any) => tag.Key === 'Name')?.Value, 'ci web/1');

    const list = await runJob('list_instances.sh', { ...api, NAME_FILTER: 'ci web/1' });
    assert.equal(list.exitCode, 0, list.output);
    assert.deepEqual(list.result('instance-list').instances.map((i: any) => i.id), [created.id]);
    assert.match(list.stdout, new RegExp(`${created.id}\\s+${created.state}\\s+t3\\.micro\\s+\\S+\\s+ci web/1`));
    assert.match(list.stdout, /1 instance\(s\) named "ci web\/1"/);
    const stoppedList = await runJob('list_instances.sh', { ...api, STATE: 'stopped' });
    assert.equal(stoppedList.exitCode, 0, stoppedList.output);
    assert.deepEqual(stoppedList.result('instance-list'), { instances: [] });
    assert.match(stoppedList.stdout, /No instances\./);

    const stop = await runJob('stop_instance.sh', { ...api, INSTANCE_ID: created.id });
    assert.equal(stop.exitCode, 0, stop.output);
    assert.equal(stop.result('instance-stop').state, 'stopped');
    assert.match(stop.stdout, new RegExp(`Instance ${created.id} is stopped`));
    assert.equal((await ec2InstanceById(created.id)).State.Name, 'stopped');
    const listStopped = await runJob('list_instances.sh', { ...api, STATE: 'stopped' });
    assert.deepEqual(listStopped.result('instance-list').instances.map((i: any) => i.id), [created.id]);
    assert.match(listStopped.stdout, /1 instance\(s\) in state stopped/);

    const start = await runJob('start_instance.sh', { ...api, INSTANCE_ID: created.id });
    assert.equal(start.exitCode, 0, start.output);
    assert.equal(start.result('instance-start').state, 'running');
    assert.match(start.stdout, new RegExp(`Instance ${created.id} is running`));
    assert.equal((await ec2InstanceById(created.id)).State.Name, 'running');

    const destroy = await runJob('destroy_instance.sh', { ...api, INSTANCE_ID: created.id, CONFIRM_DESTROY: 'true' });
    assert.equal(destroy.exitCode, 0, destroy.output);
    const destroyed = destroy.result('instance-destroy');
    assert.equal(destroyed.id, created.id);
    assert.equal(destroyed.destroyed, true);
    assert.equal(destroyed.instance.state, 'terminated');
    assert.match(destroy.stdout, new RegExp(`Destroyed instance ${created.id}`));
    assert.ok(['shutting-down', 'terminated'].includes((await ec2InstanceById(created.id)).State.Name));
  });

  it('when the API refuses a create, then the job fails with the problem detail and archives the problem', async () => {
    const before = (await allEc2Instances()).length;
    const create = await runJob('create_instance.sh', {
      ...api, INSTANCE_NAME: 'too-big', AMI_ID: UBUNTU_X86_AMI, INSTANCE_TYPE: 't3.micro', STORAGE_GB: '500',
    });
    assert.equal(create.exitCode, 1, create.output);
    const problem = create.result('instance-create');
    assert.equal(problem.status, 422);
    assert.ok(problem.detail.length > 0);
    assert.ok(create.stderr.includes(problem.detail), `stderr carries the detail "${problem.detail}":\n${create.stderr}`);
    assert.match(create.stderr, /HTTP 422/);
    assert.match(create.stderr, /storage_gb/);
    assert.equal((await allEc2Instances()).length, before);
  });

  it('when the instance is unknown to the service, then start fails with the 404 problem detail', async () => {
    const start = await runJob('start_instance.sh', { ...api, INSTANCE_ID: 'i-0123456789abcdef0' });
    assert.equal(start.exitCode, 1, start.output);
    const problem = start.result('instance-start');
    assert.equal(problem.status, 404);
    assert.ok(start.stderr.includes(problem.detail), start.stderr);
    assert.match(start.stderr, /request id: \S+/);
  });
});

describe('Jenkins job scripts: parameters, credentials and transport', function () {
  this.timeout(60_000);
  let recorder: Recorder;

  beforeEach(async () => {
    recorder = await startRecorder();
  });

  afterEach(async () => {
    await recorder.close();
  });

  after(removeJobWorkspaces);

  const valid = { INSTANCE_NAME: 'web-1', AMI_ID: 'ami-1e749f67', INSTANCE_TYPE: 't3.micro', STORAGE_GB: '8' };
  const badParameters: Array<{ script: Parameters<typeof runJob>[0]; env: Record<string, string>; message: RegExp }> = [
    { script: 'create_instance.sh', env: { ...valid, INSTANCE_NAME: '' }, message: /INSTANCE_NAME is required/ },
    { script: 'create_instance.sh', env: { ...valid, INSTANCE_NAME: '-rf' }, message: /INSTANCE_NAME '-rf'/ },
    { script: 'create_instance.sh', env: { ...valid, INSTANCE_NAME: 'a"b' }, message: /INSTANCE_NAME/ },
    { script: 'create_instance.sh', env: { ...valid, AMI_ID: 'ubuntu' }, message: /AMI_ID 'ubuntu' is not an AMI id/ },
    { script: 'create_instance.sh', env: { ...valid, INSTANCE_TYPE: 'T3 micro' }, message: /INSTANCE_TYPE/ },
    { script: 'create_instance.sh', env: { ...valid, STORAGE_GB: 'eight' }, message: /STORAGE_GB 'eight'/ },
    { script: 'create_instance.sh', env: { ...valid, STORAGE_GB: '0' }, message: /STORAGE_GB '0'/ },
    { script: 'create_instance.sh', env: { ...valid, STORAGE_GB: '99999' }, message: /between 1 and 16384/ },
    { script: 'create_instance.sh', env: { ...valid, CREATE_SECURITY_GROUP: 'yes' }, message: /CREATE_SECURITY_GROUP must be true or false/ },
    { script: 'list_instances.sh', env: { STATE: 'sleeping' }, message: /STATE 'sleeping' must be one of/ },
    { script: 'start_instance.sh', env: {}, message: /INSTANCE_ID is required/ },
    { script: 'stop_instance.sh', env: { INSTANCE_ID: 'i-123; rm -rf /' }, message: /is not an EC2 instance id/ },
    { script: 'destroy_instance.sh', env: { INSTANCE_ID: 'i-0123456789abcdef0' }, message: /CONFIRM_DESTROY is not true/ },
    { script: 'destroy_instance.sh', env: { INSTANCE_ID: 'I-0123456789ABCDEF0', CONFIRM_DESTROY: 'true' }, message: /INSTANCE_ID/ },
  ];
  for (const { script, env, message } of badParameters) {
    it(`when ${script} gets ${JSON.stringify(env)}, then it exits 2 with a clear message and sends nothing`, async () => {
      const job = await runJob(script, { API_URL: recorder.url, ...env });
      assert.equal(job.exitCode, 2, job.output);
      assert.match(job.stderr, message);
      assert.match(job.stderr, /no request was sent/);
      assert.equal(recorder.requests.length, 0);
      assert.ok(!existsSync(path.join(job.workspace, 'results')), 'no result file is written');
    });
  }

  it('when parameters are valid, then the body is typed JSON built from them and the bearer token is sent', async () => {
    recorder.answer = {
      status: 201,
      contentType: 'application/json',
      body: JSON.stringify({ id: 'i-0123456789abcdef0', name: 'a b:c/d@e+f=g.h_i', state: 'running', instance_type: 't3.micro' }),
    };
    const job = await runJob('create_instance.sh', {
      API_URL: `${recorder.url}/`, API_TOKEN: 'jenkins.s3cret-token_0123456789',
      INSTANCE_NAME: '  a b:c/d@e+f=g.h_i ', AMI_ID: 'ami-1e749f67', INSTANCE_TYPE: 't3.micro', STORAGE_GB: '12',
      CREATE_SECURITY_GROUP: 'TRUE',
    });
    assert.equal(job.exitCode, 0, job.output);
    assert.equal(recorder.requests.length, 1);
    const [request] = recorder.requests;
    assert.equal(request!.method, 'POST');
    assert.equal(request!.url, '/instances');
    assert.equal(request!.headers.authorization, 'Bearer jenkins.s3cret-token_0123456789');
    assert.match(String(request!.headers['content-type']), /^application\/json/);
    assert.deepEqual(JSON.parse(request!.body), {
      name: 'a b:c/d@e+f=g.h_i', ami: 'ami-1e749f67', instance_type: 't3.micro', storage_gb: 12, create_security_group: true,
    });
    assert.equal(job.result('instance-create').id, 'i-0123456789abcdef0');
  });

  it('when no token is bound, then no Authorization header is sent', async () => {
    recorder.answer = { status: 200, contentType: 'application/json', body: '{"instances":[],"next_cursor":null}' };
    const job = await runJob('list_instances.sh', { API_URL: recorder.url, INCLUDE_TERMINATED: 'true' });
    assert.equal(job.exitCode, 0, job.output);
    assert.equal(recorder.requests[0]!.headers.authorization, undefined);
    assert.match(recorder.requests[0]!.url, /^\/instances\?include_terminated=true&limit=1000$/);
  });

  it('when the API answers a next_cursor, then the list job follows it and archives every page', async () => {
    const pages = [
      { instances: [{ id: 'i-00000001', name: 'one', state: 'running', instance_type: 't3.micro', public_ip: null }], next_cursor: 'abc_1' },
      { instances: [{ id: 'i-00000002', name: 'two', state: 'stopped', instance_type: 't3.micro', public_ip: '1.2.3.4' }], next_cursor: null },
    ];
    recorder.answer = (requests) => ({
      status: 200,
      contentType: 'application/json',
      body: JSON.stringify(pages[Math.min(requests.length - 1, 1)]),
    });
    const job = await runJob('list_instances.sh', { API_URL: recorder.url });
    assert.equal(job.exitCode, 0, job.output);
    assert.equal(recorder.requests.length, 2);
    assert.match(recorder.requests[1]!.url, /[?&]cursor=abc_1(&|$)/);
    assert.deepEqual(job.result('instance-list').instances.map((i: any) => i.id), ['i-00000001', 'i-00000002']);
    assert.match(job.stdout, /2 instance\(s\)/);
  });

  it('when the answer is not problem+json, then the job fails with the status and the start of the body', async () => {
    recorder.answer = { status: 502, contentType: 'text/html', body: '<html>Bad Gateway from the proxy</html>' };
    const job = await runJob('stop_instance.sh', { API_URL: recorder.url, INSTANCE_ID: 'i-0123456789abcdef0' });
    assert.equal(job.exitCode, 1, job.output);
    assert.match(job.stderr, /HTTP 502/);
    assert.match(job.stderr, /Bad Gateway from the proxy/);
  });

  it('when the API cannot be reached, then the job fails saying so', async () => {
    const url = recorder.url;
    await recorder.close();
    recorder = await startRecorder(); // for afterEach
    const job = await runJob('start_instance.sh', { API_URL: url, INSTANCE_ID: 'i-0123456789abcdef0' });
    assert.equal(job.exitCode, 1, job.output);
    assert.match(job.stderr, /could not reach the ec2-creator API/);
  });

  it('when API_URL is not bound, then the job exits 3 naming the credential and sends nothing', async () => {
    const job = await runJob('start_instance.sh', { API_URL: '', INSTANCE_ID: 'i-0123456789abcdef0' });
    assert.equal(job.exitCode, 3, job.output);
    assert.match(job.stderr, /ec2-creator-api/);
    assert.equal(recorder.requests.length, 0);
  });
});

describe('Jenkins manage job script', function () {
  this.timeout(30_000);

  it('when ACTION is not one of status, start, stop, restart, then it exits 2 and runs nothing', async () => {
    const job = await run('bash', [path.join(repoRoot, 'scripts', 'jenkins', 'manage.sh')], { ACTION: 'rm -rf' });
    assert.equal(job.exitCode, 2, job.output);
    assert.match(job.stderr, /ACTION must be one of status, start, stop, restart/);
  });

  it('when ACTION is status and nothing runs, then it passes on the manager\'s exit code 3', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ec2-creator-manage-job-'));
    try {
      const job = await run('bash', [path.join(repoRoot, 'scripts', 'jenkins', 'manage.sh')], {
        ACTION: 'status', PID_FILE: path.join(dir, 'server.pid'), LOG_DIR: dir,
      });
      assert.equal(job.exitCode, 3, job.output);
      assert.match(job.stdout, /not running/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
