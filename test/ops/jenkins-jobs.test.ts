import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { resetMoto } from '../support/global-fixture.js';
import {
  POST_ALWAYS, POST_FAILURE, instanceJobs, newWorkspace, removeJobWorkspaces, runJob, runPipeline, stageScripts, startRecorder,
  type Recorder,
} from '../support/ops-jobs.js';
import { createServerSandbox, ensureBuilt, repoRoot, run, type ServerSandbox } from '../support/ops-manager.js';
import { allEc2Instances, ec2InstanceById, UBUNTU_X86_AMI } from '../support/ec2-reader.js';

const KEY_NAME = 'ec2c-ops-jenkins-key';

describe('Jenkins job scripts against the running service', function () {
  this.timeout(180_000);
  let sandbox: ServerSandbox;
  let keyDir: string;
  let api: Record<string, string>;
  let credentials: { API_URL: string; API_TOKEN: string };

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
    sandbox = await createServerSandbox({
      KEY_NAME, API_TOKENS: `jenkins-ci:operator:${token}`, ALLOWED_INSTANCE_TYPES: 't3.micro,t4g.micro', MAX_STORAGE_GB: '30',
    });
    const started = await sandbox.manage(['start']);
    assert.equal(started.exitCode, 0, started.output);
    api = { API_URL: `${sandbox.baseUrl}/`, API_TOKEN: token };
    credentials = { API_URL: `${sandbox.baseUrl}/`, API_TOKEN: token };
  });

  after(async () => {
    removeJobWorkspaces();
    await sandbox?.cleanup();
    if (keyDir) rmSync(keyDir, { recursive: true, force: true });
  });

  it('when the jobs run create, list, stop, start and destroy stage by stage, then each archives the answer, prints a summary, names the build and EC2 follows', async () => {
    const create = await runPipeline('create', {
      credentials,
      params: { INSTANCE_NAME: 'ci web/1', AMI_ID: UBUNTU_X86_AMI, INSTANCE_TYPE: 't3.micro', STORAGE_GB: ' 8 ', CREATE_SECURITY_GROUP: 'false' },
    });
    assert.equal(create.exitCode, 0, create.output);
    assert.deepEqual(create.stages.map((stage) => stage.script), ['launch_policy.sh', 'create_instance.sh']);
    const [policy, launch] = create.stages;
    assert.match(policy!.stdout, /instance types t3\.micro, t4g\.micro; storage at most 30 GiB/);
    assert.match(policy!.stdout, /INSTANCE_TYPE t3\.micro is allowed/);
    const created = create.result('instance-create');
    assert.match(created.id, /^i-[0-9a-f]+$/);
    assert.equal(created.name, 'ci web/1');
    assert.equal(created.storage_gb, 8);
    assert.match(launch!.stdout, new RegExp(`Created instance ${created.id}`));
    assert.match(launch!.stdout, /name:\s+ci web\/1/);
    assert.match(launch!.stdout, /type:\s+t3\.micro/);
    assert.match(launch!.stdout, /results\/instance-create\.json/);
    assert.equal(create.description, `${created.id} (ci web/1)`);
    assert.equal(create.failureReport, undefined);
    const launched = await ec2InstanceById(created.id);
    assert.equal(launched.State.Name, 'running');
    assert.equal(launched.InstanceType, 't3.micro');
    assert.equal(launched.KeyName, KEY_NAME);
    assert.deepEqual(launched.Tags.find((tag: any) => tag.Key === 'Name')?.Value, 'ci web/1');

    const list = await runPipeline('list', { credentials, params: { STATE: 'any', NAME_FILTER: 'ci web/1', INCLUDE_TERMINATED: 'false' } });
    assert.equal(list.exitCode, 0, list.output);
    assert.deepEqual(list.result('instance-list').instances.map((i: any) => i.id), [created.id]);
    assert.match(list.stages[0]!.stdout, new RegExp(`${created.id}\\s+${created.state}\\s+t3\\.micro\\s+\\S+\\s+ci web/1`));
    assert.match(list.stages[0]!.stdout, /1 instance\(s\) named "ci web\/1"/);
    assert.equal(list.description, '', 'a list touches no one instance');
    const stoppedList = await runJob('list_instances.sh', { ...api, STATE: 'stopped' });
    assert.equal(stoppedList.exitCode, 0, stoppedList.output);
    assert.deepEqual(stoppedList.result('instance-list'), { instances: [] });
    assert.match(stoppedList.stdout, /No instances\./);

    const stop = await runPipeline('stop', { credentials, params: { INSTANCE_ID: created.id } });
    assert.equal(stop.exitCode, 0, stop.output);
    assert.equal(stop.result('instance-stop').state, 'stopped');
    assert.match(stop.stages[0]!.stdout, new RegExp(`Instance ${created.id} is stopped`));
    assert.equal(stop.description, `${created.id} (ci web/1)`);
    assert.equal((await ec2InstanceById(created.id)).State.Name, 'stopped');
    const listStopped = await runJob('list_instances.sh', { ...api, STATE: 'stopped' });
    assert.deepEqual(listStopped.result('instance-list').instances.map((i: any) => i.id), [created.id]);
    assert.match(listStopped.stdout, /1 instance\(s\) in state stopped/);

    const start = await runPipeline('start', { credentials, params: { INSTANCE_ID: created.id } });
    assert.equal(start.exitCode, 0, start.output);
    assert.equal(start.result('instance-start').state, 'running');
    assert.match(start.stages[0]!.stdout, new RegExp(`Instance ${created.id} is running`));
    assert.equal(start.description, `${created.id} (ci web/1)`);
    assert.equal((await ec2InstanceById(created.id)).State.Name, 'running');

    const destroy = await runPipeline('destroy', { credentials, params: { INSTANCE_ID: created.id, CONFIRM_DESTROY: 'true' } });
    assert.equal(destroy.exitCode, 0, destroy.output);
    assert.deepEqual(destroy.stages.map((stage) => stage.script), ['destroy_check.sh', 'destroy_instance.sh']);
    const [check, terminate] = destroy.stages;
    assert.match(check!.stdout, new RegExp(`Instance ${created.id} will be terminated once the destroy is approved`));
    assert.match(check!.stdout, /name:\s+ci web\/1/);
    assert.equal(destroy.result('instance-to-destroy').state, 'running');
    const destroyed = destroy.result('instance-destroy');
    assert.equal(destroyed.id, created.id);
    assert.equal(destroyed.destroyed, true);
    assert.equal(destroyed.instance.state, 'terminated');
    assert.match(terminate!.stdout, new RegExp(`Destroyed instance ${created.id}`));
    assert.equal(destroy.description, `${created.id} (ci web/1)`);
    assert.ok(['shutting-down', 'terminated'].includes((await ec2InstanceById(created.id)).State.Name));

    const again = await runPipeline('destroy', { credentials, params: { INSTANCE_ID: created.id, CONFIRM_DESTROY: 'true' } });
    assert.equal(again.exitCode, 1, again.output);
    assert.deepEqual(again.stages.map((stage) => stage.script), ['destroy_check.sh'], 'no approval is asked for');
    assert.match(again.stages[0]!.stderr, /already terminated: there is nothing to destroy/);
  });

  const refusedByPolicy: Array<{ why: string; params: Record<string, string>; message: RegExp }> = [
    {
      why: 'an instance type the server does not allow',
      params: { INSTANCE_TYPE: 'm5.large', STORAGE_GB: '8' },
      message: /INSTANCE_TYPE 'm5\.large' is not allowed by the server, which allows: t3\.micro, t4g\.micro\. The create job's INSTANCE_TYPE choices are refreshed from this list/,
    },
    {
      why: 'more storage than the server allows',
      params: { INSTANCE_TYPE: 't3.micro', STORAGE_GB: '31' },
      message: /STORAGE_GB 31 is above the server's limit of 30 GiB \(MAX_STORAGE_GB\)/,
    },
  ];
  for (const { why, params, message } of refusedByPolicy) {
    it(`when the create job is given ${why}, then its launch policy stage fails with a clear message before any instance is created`, async () => {
      const before = await allEc2Instances();
      const create = await runPipeline('create', {
        credentials, params: { INSTANCE_NAME: 'not-allowed', AMI_ID: UBUNTU_X86_AMI, CREATE_SECURITY_GROUP: 'false', ...params },
      });

      assert.equal(create.exitCode, 2, create.output);
      assert.deepEqual(create.stages.map((stage) => stage.script), ['launch_policy.sh'], 'the create stage never ran');
      assert.match(create.stages[0]!.stderr, message);
      assert.match(create.stages[0]!.stderr, /\(nothing was created\)/);
      assert.equal(create.result('instance-create'), undefined);
      assert.deepEqual(create.result('launch-policy'), { allowed_instance_types: ['t3.micro', 't4g.micro'], max_storage_gb: 30, max_instances: 5 });
      assert.match(create.failureReport ?? '', /No problem answer from the ec2-creator API was archived/);
      const after = await allEc2Instances();
      assert.equal(after.length, before.length, 'EC2 has no new instance');
      assert.ok(!after.some((instance: any) => instance.Tags?.some((tag: any) => tag.Value === 'not-allowed')));
    });
  }

  // Needs the API to accept `tags` and `ttl_hours` in POST /instances.
  it('when the create job is given TAGS and TTL_HOURS, then the instance carries the tags in EC2 and expires TTL_HOURS after its launch', async () => {
    const sent = Math.floor(Date.now() / 1000) * 1000;
    const create = await runPipeline('create', {
      credentials,
      params: {
        INSTANCE_NAME: 'ci tagged', AMI_ID: UBUNTU_X86_AMI, INSTANCE_TYPE: 't3.micro', STORAGE_GB: '8', CREATE_SECURITY_GROUP: 'false',
        TAGS: 'team=web\ncost-center = 4711, équipe=café', TTL_HOURS: '24',
      },
    });
    const answered = Date.now();
    assert.equal(create.exitCode, 0, create.output);
    const created = create.result('instance-create');
    try {
      assert.deepEqual(created.tags, { team: 'web', 'cost-center': '4711', équipe: 'café' });
      const tagLine = create.stages[1]!.stdout.split('\n').find((line) => /^\s*tags:/.test(line)) ?? '';
      for (const pair of ['team=web', 'cost-center=4711', 'équipe=café']) assert.ok(tagLine.includes(pair), `${pair} in "${tagLine}"`);
      assert.ok(create.stages[1]!.stdout.includes(`expires:        ${created.expires_at}`), create.stages[1]!.stdout);
      const hours24 = 24 * 3_600_000;
      const expires = Date.parse(created.expires_at);
      assert.ok(expires >= sent + hours24 && expires <= answered + hours24, `expires_at ${created.expires_at}`);

      const tags = Object.fromEntries((await ec2InstanceById(created.id)).Tags.map((tag: any) => [tag.Key, tag.Value]));
      assert.equal(tags.team, 'web');
      assert.equal(tags['cost-center'], '4711');
      assert.equal(tags['équipe'], 'café');
      assert.equal(tags.Name, 'ci tagged');
      // The tag may hold whole seconds where the answer holds milliseconds.
      assert.ok(Math.abs(Date.parse(tags['ec2-creator:expires-at']) - expires) < 1000, `tag ${tags['ec2-creator:expires-at']}`);
    } finally {
      await runJob('destroy_instance.sh', { ...api, INSTANCE_ID: created.id, CONFIRM_DESTROY: 'true' });
    }
  });

  it('when the create job runs before it has parameters (its first build), then the policy stage writes the server\'s types for the choice list and creates nothing', async () => {
    const before = (await allEc2Instances()).length;
    const policy = await runJob('launch_policy.sh', credentials);

    assert.equal(policy.exitCode, 0, policy.output);
    assert.equal(readFileSync(path.join(policy.workspace, 'results', 'instance-types.txt'), 'utf8'), 't3.micro\nt4g.micro\n');
    assert.match(policy.stdout, /instance types t3\.micro, t4g\.micro/);
    assert.doesNotMatch(policy.stdout, /INSTANCE_TYPE/);
    assert.equal((await allEc2Instances()).length, before);
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

  it('when the instance is unknown to the service, then the start job fails with the 404 problem detail, repeated at the end of the log', async () => {
    const start = await runPipeline('start', { credentials, params: { INSTANCE_ID: 'i-0123456789abcdef0' } });
    assert.equal(start.exitCode, 1, start.output);
    const problem = start.result('instance-start');
    assert.equal(problem.status, 404);
    const stage = start.stages[0]!;
    assert.ok(stage.stderr.includes(problem.detail), stage.stderr);
    assert.match(stage.stderr, /request id: \S+/);
    const report = start.failureReport ?? '';
    assert.ok(report.includes(`The ec2-creator API answered HTTP 404 ${problem.title}`), report);
    assert.ok(report.includes(`detail:     ${problem.detail}`), report);
    assert.ok(report.includes(`request id: ${problem.request_id}`), report);
    assert.match(report, /results\/instance-start\.json \(archived\)/);
    assert.equal(start.description, 'i-0123456789abcdef0');
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
  const elevenTags = Array.from({ length: 11 }, (_, i) => `k${i}=v`).join(',');
  const badParameters: Array<{ script: Parameters<typeof runJob>[0]; env: Record<string, string>; message: RegExp; shown?: string }> = [
    { script: 'create_instance.sh', env: { ...valid, INSTANCE_NAME: '' }, message: /INSTANCE_NAME is required/ },
    { script: 'create_instance.sh', env: { ...valid, INSTANCE_NAME: '-rf' }, message: /INSTANCE_NAME '-rf'/ },
    { script: 'create_instance.sh', env: { ...valid, INSTANCE_NAME: 'a"b' }, message: /INSTANCE_NAME/ },
    { script: 'create_instance.sh', env: { ...valid, AMI_ID: 'ubuntu' }, message: /AMI_ID 'ubuntu' is not an AMI id/ },
    { script: 'create_instance.sh', env: { ...valid, INSTANCE_TYPE: 'T3 micro' }, message: /INSTANCE_TYPE/ },
    { script: 'create_instance.sh', env: { ...valid, STORAGE_GB: 'eight' }, message: /STORAGE_GB 'eight'/ },
    { script: 'create_instance.sh', env: { ...valid, STORAGE_GB: '0' }, message: /STORAGE_GB '0'/ },
    { script: 'create_instance.sh', env: { ...valid, STORAGE_GB: '99999' }, message: /between 1 and 16384/ },
    { script: 'create_instance.sh', env: { ...valid, CREATE_SECURITY_GROUP: 'yes' }, message: /CREATE_SECURITY_GROUP must be true or false/ },
    { script: 'create_instance.sh', env: { ...valid, TAGS: 'team=web\nName=other' }, message: /TAGS: the key "Name" is reserved: give the name as INSTANCE_NAME/ },
    { script: 'create_instance.sh', env: { ...valid, TAGS: 'Owner=me' }, message: /TAGS: the key "Owner" is reserved/ },
    { script: 'create_instance.sh', env: { ...valid, TAGS: 'managedby=me' }, message: /TAGS: the key "managedby" is reserved/ },
    { script: 'create_instance.sh', env: { ...valid, TAGS: 'AWS:cloudformation:stack-name=x' }, message: /TAGS: the key "AWS:cloudformation:stack-name" is reserved: keys starting aws: belong to AWS/ },
    { script: 'create_instance.sh', env: { ...valid, TAGS: 'ec2-creator:expires-at=2030-01-01T00:00:00Z' }, message: /TAGS: the key "ec2-creator:expires-at" is reserved: .*TTL_HOURS/ },
    { script: 'create_instance.sh', env: { ...valid, TAGS: elevenTags }, message: /TAGS: 11 tags are given; at most 10 are allowed/, shown: '11 tags' },
    { script: 'create_instance.sh', env: { ...valid, TAGS: 'team=web, owner' }, message: /TAGS: "owner" is not KEY=VALUE/ },
    { script: 'create_instance.sh', env: { ...valid, TAGS: ' =web' }, message: /TAGS: the key "" must not be empty/ },
    { script: 'create_instance.sh', env: { ...valid, TAGS: 'team=web\nteam=ops' }, message: /TAGS: the key "team" is given 2 times/ },
    { script: 'create_instance.sh', env: { ...valid, TAGS: `${'k'.repeat(129)}=v` }, message: /TAGS: the key "k+" is 129 characters long; at most 128/, shown: 'a key of 129 characters' },
    { script: 'create_instance.sh', env: { ...valid, TAGS: `team=${'v'.repeat(257)}` }, message: /TAGS: the value of "team" is 257 characters long; at most 256/, shown: 'a value of 257 characters' },
    { script: 'create_instance.sh', env: { ...valid, TAGS: 'team=a;b' }, message: /TAGS: the value "a;b" of "team" may hold only letters, digits, spaces and _ \. : \/ = \+ - @/ },
    { script: 'create_instance.sh', env: { ...valid, TTL_HOURS: '0' }, message: /TTL_HOURS '0' must be a whole number of hours between 1 and 8760/ },
    { script: 'create_instance.sh', env: { ...valid, TTL_HOURS: '8761' }, message: /TTL_HOURS '8761'/ },
    { script: 'create_instance.sh', env: { ...valid, TTL_HOURS: '1.5' }, message: /TTL_HOURS '1\.5'/ },
    { script: 'create_instance.sh', env: { ...valid, TTL_HOURS: '-1' }, message: /TTL_HOURS '-1'/ },
    { script: 'create_instance.sh', env: { ...valid, TTL_HOURS: 'one day' }, message: /TTL_HOURS 'one day'/ },
    { script: 'list_instances.sh', env: { STATE: 'sleeping' }, message: /STATE 'sleeping' must be one of/ },
    { script: 'start_instance.sh', env: {}, message: /INSTANCE_ID is required/ },
    { script: 'stop_instance.sh', env: { INSTANCE_ID: 'i-123; rm -rf /' }, message: /is not an EC2 instance id/ },
    { script: 'destroy_instance.sh', env: { INSTANCE_ID: 'i-0123456789abcdef0' }, message: /CONFIRM_DESTROY is not true/ },
    { script: 'destroy_instance.sh', env: { INSTANCE_ID: 'I-0123456789ABCDEF0', CONFIRM_DESTROY: 'true' }, message: /INSTANCE_ID/ },
    { script: 'destroy_check.sh', env: { INSTANCE_ID: 'i-0123456789abcdef0' }, message: /CONFIRM_DESTROY is not true/ },
    { script: 'destroy_check.sh', env: { CONFIRM_DESTROY: 'true' }, message: /INSTANCE_ID is required/ },
  ];
  for (const { script, env, message, shown } of badParameters) {
    it(`when ${script} gets ${shown ?? JSON.stringify(env)}, then it exits 2 with a clear message and sends nothing`, async () => {
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

  const created = { id: 'i-0123456789abcdef0', name: 'web-1', state: 'running', instance_type: 't3.micro' };

  it('when TAGS and TTL_HOURS are given, then the body carries the tags as an object and ttl_hours as a number', async () => {
    recorder.answer = { status: 201, contentType: 'application/json', body: JSON.stringify(created) };
    // Lines and commas mixed, CRLF as a browser on Windows sends them, blanks around keys and values, a
    // value holding '=', an empty value and keys/values at their limits in characters (not bytes).
    const longKey = 'ü'.repeat(128);
    const longValue = 'é'.repeat(256);
    const job = await runJob('create_instance.sh', {
      API_URL: recorder.url, ...valid,
      TAGS: `team=web, cost-center = 4711\r\nquery=a=b+c\nnote=\n équipe=café du matin @9:30/2\n${longKey}=${longValue}\n`,
      TTL_HOURS: ' 24 ',
    });
    assert.equal(job.exitCode, 0, job.output);
    assert.equal(recorder.requests.length, 1);
    assert.deepEqual(JSON.parse(recorder.requests[0]!.body), {
      name: 'web-1', ami: 'ami-1e749f67', instance_type: 't3.micro', storage_gb: 8, create_security_group: false,
      tags: { team: 'web', 'cost-center': '4711', query: 'a=b+c', note: '', équipe: 'café du matin @9:30/2', [longKey]: longValue },
      ttl_hours: 24,
    });
    assert.match(job.stdout, /Tags: team=web, cost-center=4711, query=a=b\+c, note=, équipe=café du matin @9:30\/2, ü+=é+/);
    assert.match(job.stdout, /Time to live: 24 hours/);
  });

  it('when TAGS holds ten pairs and TTL_HOURS is 8760, then both are sent as given', async () => {
    recorder.answer = { status: 201, contentType: 'application/json', body: JSON.stringify(created) };
    const ten = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`k${i}`, `v${i}`]));
    const job = await runJob('create_instance.sh', {
      API_URL: recorder.url, ...valid,
      TAGS: Object.entries(ten).map(([key, value]) => `${key}=${value}`).join(','), TTL_HOURS: '8760',
    });
    assert.equal(job.exitCode, 0, job.output);
    const body = JSON.parse(recorder.requests[0]!.body);
    assert.deepEqual(body.tags, ten);
    assert.equal(body.ttl_hours, 8760);
  });

  it('when TAGS and TTL_HOURS are blank, then the body has neither field and the server\'s default expiry applies', async () => {
    recorder.answer = { status: 201, contentType: 'application/json', body: JSON.stringify(created) };
    const job = await runJob('create_instance.sh', { API_URL: recorder.url, ...valid, TAGS: ' \r\n , \n', TTL_HOURS: '  ' });
    assert.equal(job.exitCode, 0, job.output);
    assert.deepEqual(JSON.parse(recorder.requests[0]!.body), {
      name: 'web-1', ami: 'ami-1e749f67', instance_type: 't3.micro', storage_gb: 8, create_security_group: false,
    });
    assert.doesNotMatch(job.stdout, /Tags:/);
    assert.match(job.stdout, /Time to live: the server's default/);
  });

  const injections = [
    (canary: string) => `team=$(touch ${canary})`,
    (canary: string) => `$(touch ${canary})=web`,
    (canary: string) => `team=\`touch ${canary}\``,
    (canary: string) => `team=web; touch ${canary}`,
    (canary: string) => `team=web' ; touch ${canary} ; '`,
    (canary: string) => `team=web\ntouch ${canary}`,
  ];
  for (const injection of injections) {
    it(`when TAGS holds shell code (${JSON.stringify(injection('CANARY'))}), then it is refused as text, never run, and nothing is sent`, async () => {
      const dir = mkdtempSync(path.join(tmpdir(), 'ec2-creator-canary-'));
      const canary = path.join(dir, 'canary');
      try {
        const tags = injection(canary);
        const job = await runJob('create_instance.sh', { API_URL: recorder.url, ...valid, TAGS: tags });
        assert.equal(job.exitCode, 2, job.output);
        assert.match(job.stderr, /TAGS: /);
        assert.match(job.stderr, /no request was sent/);
        assert.ok(job.stderr.includes(`touch ${canary}`), `the code is quoted as text:\n${job.stderr}`);
        assert.equal(recorder.requests.length, 0);
        assert.ok(!existsSync(canary), 'the canary file was not created');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

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

  const policy = { allowed_instance_types: ['t3.micro', 't4g.micro'], max_storage_gb: 30, max_instances: 5 };

  it('when the launch policy stage runs, then it sends one GET /launch-policy with the bearer token and nothing else', async () => {
    recorder.answer = { status: 200, contentType: 'application/json', body: JSON.stringify(policy) };
    const job = await runJob('launch_policy.sh', {
      API_URL: recorder.url, API_TOKEN: 'jenkins.s3cret-token_0123456789', INSTANCE_TYPE: 't4g.micro', STORAGE_GB: '30',
    });
    assert.equal(job.exitCode, 0, job.output);
    assert.deepEqual(recorder.requests.map((r) => `${r.method} ${r.url}`), ['GET /launch-policy']);
    assert.equal(recorder.requests[0]!.headers.authorization, 'Bearer jenkins.s3cret-token_0123456789');
    assert.deepEqual(job.result('launch-policy'), policy);
  });

  it('when the server has no /launch-policy, then the policy stage fails with the API\'s problem detail', async () => {
    recorder.answer = {
      status: 404,
      contentType: 'application/problem+json',
      body: JSON.stringify({ type: 'urn:ec2-creator:problem:not-found', title: 'Not found', status: 404, detail: 'No route GET /launch-policy', request_id: 'rec-1' }),
    };
    const job = await runJob('launch_policy.sh', { API_URL: recorder.url, INSTANCE_TYPE: 't3.micro' });
    assert.equal(job.exitCode, 1, job.output);
    assert.match(job.stderr, /reading the launch policy failed: HTTP 404 Not found/);
    assert.match(job.stderr, /No route GET \/launch-policy/);
    assert.ok(!existsSync(path.join(job.workspace, 'results', 'instance-types.txt')), 'no choices from a failed read');
  });

  it('when the answer is not a launch policy, then the policy stage fails saying so and offers no choices', async () => {
    recorder.answer = { status: 200, contentType: 'application/json', body: JSON.stringify({ allowed_instance_types: [], max_storage_gb: 30 }) };
    const job = await runJob('launch_policy.sh', { API_URL: recorder.url, INSTANCE_TYPE: 't3.micro' });
    assert.equal(job.exitCode, 1, job.output);
    assert.match(job.stderr, /GET \/launch-policy answered something that is not a launch policy/);
    assert.ok(!existsSync(path.join(job.workspace, 'results', 'instance-types.txt')));
  });

  it('when a proxy answers HTML, then the failed build\'s report quotes it instead of a problem detail', async () => {
    recorder.answer = { status: 502, contentType: 'text/html', body: '<html>Bad Gateway from the proxy</html>' };
    const stop = await runPipeline('stop', { credentials: { API_URL: recorder.url }, params: { INSTANCE_ID: 'i-0123456789abcdef0' } });
    assert.equal(stop.exitCode, 1, stop.output);
    assert.match(stop.failureReport ?? '', /answered something that is not JSON, archived as results\/instance-stop\.json/);
    assert.match(stop.failureReport ?? '', /Bad Gateway from the proxy/);
  });

  it('when a workspace is reused by a later build, then nothing the earlier build left is archived, described or reported', async () => {
    const workspace = newWorkspace();
    recorder.answer = {
      status: 404,
      contentType: 'application/problem+json',
      body: JSON.stringify({ type: 'urn:ec2-creator:problem:not-found', title: 'Not found', status: 404, detail: 'No instance i-0123456789abcdef0', request_id: 'rec-1' }),
    };
    const failed = await runPipeline('start', { workspace, credentials: { API_URL: recorder.url }, params: { INSTANCE_ID: 'i-0123456789abcdef0' } });
    assert.equal(failed.exitCode, 1, failed.output);
    assert.equal(failed.description, 'i-0123456789abcdef0');

    recorder.answer = { status: 200, contentType: 'application/json', body: '{"instances":[],"next_cursor":null}' };
    const listed = await runPipeline('list', { workspace, credentials: { API_URL: recorder.url }, params: { STATE: 'any' } });
    assert.equal(listed.exitCode, 0, listed.output);
    assert.deepEqual(readdirSync(path.join(workspace, 'results')).filter((f) => !f.startsWith('.')), ['instance-list.json']);
    assert.equal(listed.description, '');

    recorder.answer = { status: 500, contentType: 'application/problem+json', body: '{"type":"urn:x","title":"Boom","status":500,"detail":"later"}' };
    const broken = await runPipeline('list', { workspace, credentials: { API_URL: recorder.url } });
    assert.equal(broken.exitCode, 1, broken.output);
    assert.doesNotMatch(broken.failureReport ?? '', /No instance i-0123456789abcdef0/, 'the earlier build\'s refusal is gone');
    assert.match(broken.failureReport ?? '', /HTTP 500 Boom/);
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

  const manage = (args: string[], env: Record<string, string | undefined>) =>
    run('bash', [path.join(repoRoot, 'scripts', 'jenkins', 'manage.sh'), ...args], {
      EC2_CREATOR_AWS_CREDENTIALS: undefined, SMTP_USER: undefined, WEBHOOK_URLS: undefined, ...env,
    });
  const bound = async (env: Record<string, string | undefined>) => {
    const ids: Record<string, string> = {};
    for (const secret of ['api-tokens', 'aws', 'smtp', 'webhook']) {
      const asked = await manage(['--credential', secret], env);
      assert.equal(asked.exitCode, 0, asked.output);
      ids[secret] = asked.stdout.trim();
    }
    return ids;
  };

  it('when the manage job starts the server, then it binds the API tokens, the AWS keys and, with an SMTP login or webhooks, their secrets', async () => {
    assert.deepEqual(await bound({ ACTION: 'start', SMTP_USER: 'mailer', WEBHOOK_URLS: 'https://hooks.example.com/x' }), {
      'api-tokens': 'ec2-creator-api-tokens', aws: 'ec2-creator-aws', smtp: 'ec2-creator-smtp', webhook: 'ec2-creator-webhook',
    });
    assert.deepEqual(await bound({ ACTION: 'restart', EC2_CREATOR_AWS_CREDENTIALS: 'aws-prod.keys' }), {
      'api-tokens': 'ec2-creator-api-tokens', aws: 'aws-prod.keys', smtp: '', webhook: '',
    });
    assert.deepEqual(await bound({ ACTION: 'start', EC2_CREATOR_AWS_CREDENTIALS: 'none' }), {
      'api-tokens': 'ec2-creator-api-tokens', aws: '', smtp: '', webhook: '',
    });
  });

  it('when the manage job only looks at or stops the server, then it binds no secret', async () => {
    for (const ACTION of ['status', 'stop']) {
      assert.deepEqual(await bound({ ACTION, SMTP_USER: 'mailer', WEBHOOK_URLS: 'https://hooks.example.com/x' }), { 'api-tokens': '', aws: '', smtp: '', webhook: '' });
    }
  });

  it('when EC2_CREATOR_AWS_CREDENTIALS is not a credential id, then asking for it exits 2 naming it', async () => {
    const asked = await manage(['--credential', 'aws'], { ACTION: 'start', EC2_CREATOR_AWS_CREDENTIALS: 'keys; rm -rf /' });
    assert.equal(asked.exitCode, 2, asked.output);
    assert.match(asked.stderr, /EC2_CREATOR_AWS_CREDENTIALS 'keys; rm -rf \/' is neither a credential id/);
  });

  it('when ACTION is unset, as in the job\'s first build, then it only reports the status', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ec2-creator-manage-job-'));
    try {
      const job = await run('bash', [path.join(repoRoot, 'scripts', 'jenkins', 'manage.sh')], {
        ACTION: undefined, PID_FILE: path.join(dir, 'server.pid'), LOG_DIR: dir,
      });
      assert.equal(job.exitCode, 3, job.output);
      assert.match(job.stdout, /not running/);
      assert.doesNotMatch(job.output, /npm ci|tsc/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
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

describe('Jenkins job definitions and their README', function () {
  const read = (file: string): string => readFileSync(path.join(repoRoot, file), 'utf8');
  const jenkinsfiles = [
    'jenkins/deployment/Jenkinsfile', 'jenkins/deployment/Jenkinsfile.manage',
    ...instanceJobs.map((job) => `jenkins/aws_cli_jobs/Jenkinsfile.${job}`),
  ];
  const library = 'jenkins/lib/instanceJob.groovy';

  it('when the instance jobs run, then their stages are the shared step around scripts that exist, the policy check first', () => {
    for (const job of instanceJobs) {
      const text = read(`jenkins/aws_cli_jobs/Jenkinsfile.${job}`);
      assert.match(text, new RegExp(`load '${library}'`), job);
      const scripts = stageScripts(job);
      assert.ok(scripts.length > 0, `${job} runs a script`);
      for (const script of scripts) assert.ok(existsSync(path.join(repoRoot, 'scripts', 'jenkins', script)), `${job}: ${script}`);
      assert.match(text, /failure \{\s*script \{ instanceJob\??\.reportFailure\(\) \}/, `${job} reports the API's problem on failure`);
    }
    assert.deepEqual(stageScripts('create'), ['launch_policy.sh', 'create_instance.sh']);
    assert.deepEqual(stageScripts('destroy'), ['destroy_check.sh', 'destroy_instance.sh']);
    const shared = read(library);
    for (const post of [POST_ALWAYS, POST_FAILURE]) assert.ok(shared.includes(`bash scripts/jenkins/${post}`), `${library} runs ${post}`);
  });

  it('when the create job declares its parameters, then they are the ones create_instance.sh reads, each in the README\'s table', () => {
    const declared = [...read('jenkins/aws_cli_jobs/Jenkinsfile.create').matchAll(/\b(string|text|choice|booleanParam)\(name: '([A-Z_]+)'/g)]
      .map((m) => `${m[1]} ${m[2]}`);
    assert.deepEqual(declared, [
      'string INSTANCE_NAME', 'string AMI_ID', 'choice INSTANCE_TYPE', 'string STORAGE_GB', 'booleanParam CREATE_SECURITY_GROUP',
      'text TAGS', 'string TTL_HOURS',
    ]);
    const row = read('jenkins/README.md').split('\n').find((line) => line.includes('`jenkins/aws_cli_jobs/Jenkinsfile.create`')) ?? '';
    for (const name of declared.map((d) => d.split(' ')[1])) assert.ok(row.includes(`\`${name}\``), `README names ${name}`);
  });

  it('when a destroy waits for approval, then it waits on no agent and only the approvers Jenkins is told of may answer', () => {
    const text = read('jenkins/aws_cli_jobs/Jenkinsfile.destroy');
    assert.match(text, /^pipeline \{\s*agent none/m);
    const approval = text.slice(text.indexOf("stage('Approval')"), text.indexOf("stage('Destroy instance')"));
    assert.doesNotMatch(approval, /\bagent\b|\bnode\b/);
    assert.match(approval, /input\(/);
    assert.match(approval, /submitter: approvers/);
    assert.match(approval, /env\.EC2_CREATOR_DESTROY_APPROVERS/);
  });

  it('when the jobs are scheduled, then none asks for "any" agent: the manage job for its server\'s, the rest for EC2_CREATOR_AGENT_LABEL', () => {
    for (const file of jenkinsfiles) {
      const text = read(file);
      assert.doesNotMatch(text, /agent any/, file);
      if (file.endsWith('Jenkinsfile.manage')) assert.match(text, /agent \{ label 'ec2-creator-server' \}/);
      else assert.match(text, /env\.EC2_CREATOR_AGENT_LABEL \?: 'ec2-creator'/, file);
    }
    const ci = read('jenkins/deployment/Jenkinsfile');
    assert.match(ci, /cleanup \{\s*cleanWs\(\)/);
    assert.match(ci, /junit testResults: 'test-results\/junit\.xml'/);
  });

  it('when an admin follows jenkins/README.md, then it names every script path, credential id, label, setting and plugin the jobs use', async () => {
    const readme = read('jenkins/README.md');
    const everything = [...jenkinsfiles, library].map(read).join('\n')
      + readdirSync(path.join(repoRoot, 'scripts', 'jenkins')).filter((f) => f.endsWith('.sh'))
        .map((f) => read(`scripts/jenkins/${f}`)).join('\n');

    for (const file of jenkinsfiles) assert.ok(readme.includes(`\`${file}\``), `Script Path ${file}`);
    const ids = new Set([...everything.matchAll(/credentialsId: '([^']+)'|return '(ec2-creator-[a-z-]+)'/g)].map((m) => m[1] ?? m[2]));
    for (const secret of ['api-tokens', 'aws', 'smtp', 'webhook']) {
      const asked = await run('bash', [path.join(repoRoot, 'scripts', 'jenkins', 'manage.sh'), '--credential', secret], {
        ACTION: 'start', SMTP_USER: 'mailer', WEBHOOK_URLS: 'https://hooks.example.com/x', EC2_CREATOR_AWS_CREDENTIALS: undefined,
      });
      ids.add(asked.stdout.trim());
    }
    assert.deepEqual([...ids].sort(), ['ec2-creator-api', 'ec2-creator-api-tokens', 'ec2-creator-aws', 'ec2-creator-smtp', 'ec2-creator-webhook']);
    for (const id of ids) assert.ok(readme.includes(`| \`${id}\` |`), `credential ${id} has a row`);
    for (const setting of new Set([...everything.matchAll(/\bEC2_CREATOR_[A-Z_]+\b/g)].map((m) => m[0]))) {
      assert.ok(readme.includes(`\`${setting}\``), `setting ${setting}`);
    }
    for (const label of ['ec2-creator', 'ec2-creator-server']) assert.ok(readme.includes(`\`${label}\``), `label ${label}`);
    const plugins: Array<[RegExp, string]> = [
      [/withCredentials/, 'Credentials Binding'], [/timestamps\(\)/, 'Timestamper'], [/\bjunit\b/, 'JUnit'],
      [/cleanWs\(\)/, 'Workspace Cleanup'], [/\binput\(|\bload '/, 'Pipeline'],
    ];
    for (const [use, plugin] of plugins) if (use.test(everything)) assert.ok(readme.includes(`| ${plugin} (`), plugin);
    assert.doesNotMatch(everything, /\breadJSON\b|\breadYaml\b|\breadProperties\b/, 'no step needs Pipeline Utility Steps');
  });
});
