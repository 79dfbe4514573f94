import { DescribeImagesCommand } from '@aws-sdk/client-ec2';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { freeLoopbackPort } from '../../scripts/lib/ports.js';
import {
  commandLine, exitOf, isAlive, killProcessesWithEnvironment, processesWithEnvironment, repoRoot, watchOutput, type WatchedOutput,
} from '../support/ops-manager.js';
import { ec2ClientFor } from '../support/ec2-reader.js';
import { until } from '../support/lifecycle.js';

const BANNER = /SANDBOX — not real AWS[\s\S]*Ctrl-C stops/;

/**
 * `npm run sandbox` runs scripts/sandbox.ts under tsx. The tests run it in one node process with tsx's
 * loader (the tsx command would add a parent that relays signals on a 30 ms clock) as the leader of its
 * own process group, so that a signal to the group is what Ctrl-C in a terminal sends.
 */
describe('npm run sandbox', function () {
  this.timeout(120_000);
  let base: string;
  let scratch: string;
  let marker: [string, string];
  let sandbox: ChildProcess | undefined;

  beforeEach(() => {
    base = mkdtempSync(path.join(tmpdir(), 'ec2-creator-sandbox-test-'));
    scratch = path.join(base, 'tmp');
    mkdirSync(scratch);
    marker = ['EC2_CREATOR_TEST_RUN', `sandbox-${randomBytes(8).toString('hex')}`];
  });

  afterEach(() => {
    if (sandbox?.pid !== undefined && sandbox.exitCode === null && sandbox.signalCode === null) {
      try {
        process.kill(-sandbox.pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    sandbox = undefined;
    killProcessesWithEnvironment(marker.join('='));
    rmSync(base, { recursive: true, force: true });
  });

  async function startSandbox(
    extraEnv: Record<string, string> = {},
    options: { viaNpm?: boolean; args?: string[] } = {},
  ): Promise<{ child: ChildProcess; output: WatchedOutput }> {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      TMPDIR: scratch,
      PORT: String(await freeLoopbackPort()),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'info',
      [marker[0]]: marker[1],
      ...extraEnv,
    };
    for (const name of ['API_TOKENS', 'API_TOKENS_FILE', 'AUTH_DISABLED', 'DATABASE_URL', 'SANDBOX_DATABASE_URL', 'SANDBOX_KEEP']) {
      if (!(name in extraEnv)) delete env[name];
    }
    // `npm run sandbox` is the README's command; running the file directly isolates the sandbox's own handling.
    const [command, args] = options.viaNpm
      ? ['npm', ['run', '--silent', 'sandbox']]
      : [process.execPath, ['--import', 'tsx', 'scripts/sandbox.ts', ...(options.args ?? [])]];
    const child = spawn(command, args, {
      cwd: repoRoot,
      env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    sandbox = child;
    return { child, output: watchOutput(child) };
  }

  /** The folder the banner names as holding the private key. */
  async function bannerFolder(output: WatchedOutput): Promise<string> {
    await output.waitFor(BANNER);
    const key = /private key (\S+\.pem)\)/.exec(output.text());
    assert.ok(key, output.text());
    const folder = path.dirname(key[1]!);
    assert.ok(existsSync(folder), 'the folder exists while the sandbox runs');
    return folder;
  }

  /** What the sandbox leaves behind: its temporary folders and its emulator processes. */
  function leftovers(): { folders: string[]; moto: number[] } {
    return {
      folders: readdirSync(scratch).filter((name) => name.startsWith('ec2-creator-sandbox-')),
      moto: processesWithEnvironment(marker.join('=')).filter((pid) => commandLine(pid).includes('moto_server')),
    };
  }

  it('when Ctrl-C reaches the sandbox after its banner, then it exits 0, its folder is gone and moto_server is stopped', async () => {
    const { child, output } = await startSandbox();
    const folder = await bannerFolder(output);
    assert.equal(leftovers().moto.length, 1, 'moto_server runs');

    process.kill(-child.pid!, 'SIGINT');
    const exit = await exitOf(child);

    assert.deepEqual(exit, { code: 0, signal: null }, output.text());
    assert.ok(!existsSync(folder), 'the private key, the API token and the database are gone');
    assert.deepEqual(leftovers(), { folders: [], moto: [] });
  });

  it('when `npm run sandbox` gets SIGTERM, then the signal reaches the sandbox: exit 0, its folder is gone and moto_server is stopped', async () => {
    const { child, output } = await startSandbox({}, { viaNpm: true });
    const folder = await bannerFolder(output);

    process.kill(child.pid!, 'SIGTERM');
    const exit = await exitOf(child);

    assert.deepEqual(exit, { code: 0, signal: null }, output.text());
    assert.ok(!existsSync(folder));
    assert.deepEqual(leftovers(), { folders: [], moto: [] });
  });

  it('when a second Ctrl-C comes while it is stopping, then it still removes its folder and stops moto_server', async () => {
    const { child, output } = await startSandbox();
    const folder = await bannerFolder(output);

    process.kill(-child.pid!, 'SIGINT');
    await output.waitFor(/"message":"shutting down"/);
    process.kill(-child.pid!, 'SIGINT');
    const exit = await exitOf(child);

    assert.deepEqual(exit, { code: 0, signal: null }, output.text());
    assert.ok(!existsSync(folder));
    assert.deepEqual(leftovers(), { folders: [], moto: [] });
  });

  it('when SIGTERM comes during start-up, then it exits 0 and leaves no folder and no moto_server', async () => {
    const { child, output } = await startSandbox();
    // moto_server has been spawned: the folder exists, the emulator is not answering yet.
    while (leftovers().moto.length === 0) {
      assert.equal(child.exitCode, null, output.text());
      await new Promise((resolve) => setTimeout(resolve, 20));
    }

    process.kill(child.pid!, 'SIGTERM');
    const exit = await exitOf(child);

    assert.deepEqual(exit, { code: 0, signal: null }, output.text());
    assert.doesNotMatch(output.text(), BANNER);
    assert.deepEqual(leftovers(), { folders: [], moto: [] });
  });

  it('when start-up fails, then it says why, exits 1 and leaves nothing behind', async () => {
    // A PATH with node and nothing else: no moto_server (nor python) to be found.
    const bin = path.join(base, 'bin');
    mkdirSync(bin);
    symlinkSync(process.execPath, path.join(bin, 'node'));
    const { child, output } = await startSandbox({ PATH: bin });

    const exit = await exitOf(child);

    assert.deepEqual(exit, { code: 1, signal: null }, output.text());
    assert.match(output.text(), /sandbox failed to start: .*moto_server/);
    assert.deepEqual(leftovers(), { folders: [], moto: [] });
  });

  it('when a person pastes the banner\'s script lines into a shell, then the scripts reach the sandbox\'s emulator, where the AMIs the banner names are an x86_64 and an arm64 image', async () => {
    const { output } = await startSandbox();
    await output.waitFor(BANNER);
    const banner = output.text();
    const exportLine = /^\s*(export AWS_ENDPOINT_URL=.*)$/m.exec(banner)?.[1];
    const x86 = /(ami-[0-9a-f]+) \(Amazon Linux 2023, x86_64/.exec(banner)?.[1];
    const arm = /(ami-[0-9a-f]+) \(Amazon Linux 2023, arm64/.exec(banner)?.[1];
    assert.ok(exportLine && x86 && arm, banner);

    // Only what the banner says: none of this run's AWS variables leak into the pasted shell.
    const pasted = await execa('bash', ['-c', `${exportLine}; unset AWS_PROFILE AWS_SESSION_TOKEN; aws_cli_bash_scripts/describe_image.sh ${arm}`], {
      cwd: repoRoot, env: { PATH: process.env.PATH ?? '', HOME: base }, extendEnv: false, reject: false,
    });

    assert.equal(pasted.exitCode, 0, pasted.stderr);
    assert.equal(JSON.parse(pasted.stdout).architecture, 'arm64');
    const endpoint = /AWS_ENDPOINT_URL=(\S+)/.exec(exportLine)![1]!;
    const emulator = ec2ClientFor(endpoint);
    const { Images = [] } = await emulator.send(new DescribeImagesCommand({ ImageIds: [x86, arm] }));
    emulator.destroy();
    assert.deepEqual(Object.fromEntries(Images.map((image) => [image.ImageId, image.Architecture])), { [x86]: 'x86_64', [arm]: 'arm64' });
  });

  it('when an instance is made in the sandbox, then its ssh_string names the key file the sandbox made, and the arm64 image runs a t4g.micro', async () => {
    const { output } = await startSandbox();
    await output.waitFor(BANNER);
    const banner = output.text();
    const api = /API:\s+(\S+)/.exec(banner)?.[1];
    const token = /Token:\s+(\S+)/.exec(banner)?.[1];
    const keyFile = /private key (\S+\.pem)\)/.exec(banner)?.[1];
    const arm = /(ami-[0-9a-f]+) \(Amazon Linux 2023, arm64/.exec(banner)?.[1];
    assert.ok(api && token && keyFile && arm, banner);

    const response = await fetch(`${api}/instances`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'arm-demo', ami: arm, instance_type: 't4g.micro', storage_gb: 8 }),
    });

    const body = await response.json() as { ssh_string: string; public_ip: string | null };
    assert.equal(response.status, 201, JSON.stringify(body));
    assert.ok(body.public_ip, JSON.stringify(body));
    assert.equal(body.ssh_string, `ssh -i ${keyFile} ec2-user@${body.public_ip}`);
    assert.ok(existsSync(keyFile), 'the named file holds the key while the sandbox runs');
  });

  it('when started with --realistic, then the banner says so and a launch shows pending on its record while EC2 brings it up, then running', async () => {
    const { output } = await startSandbox({}, { args: ['--realistic'] });
    await output.waitFor(BANNER);
    const banner = output.text();
    assert.match(banner, /Realistic: EC2 as AWS behaves, at http:\/\/127\.0\.0\.1:\d+: pending ~10 s/);
    const api = /API:\s+(\S+)/.exec(banner)?.[1];
    const token = /Token:\s+(\S+)/.exec(banner)?.[1];
    assert.ok(api && token, banner);
    const headers = { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' };
    const get = async (url: string): Promise<any> => (await fetch(`${api}${url}`, { headers })).json();

    const accepted = await fetch(`${api}/instances`, {
      method: 'POST', headers: { ...headers, Prefer: 'respond-async' },
      body: JSON.stringify({ name: 'slow', ami: 'ami-1e749f67', instance_type: 't3.micro', storage_gb: 8 }),
    });
    assert.equal(accepted.status, 202, await accepted.clone().text());
    const operation = (await accepted.json() as { id: string }).id;
    let instanceId: string | null = null;
    await until('EC2 named the instance', async () => (instanceId = (await get(`/operations/${operation}`)).instance_id) !== null);

    const seen = await get(`/instances/${instanceId}`);
    assert.equal(seen.state, 'pending', JSON.stringify(seen));
    assert.equal((await get(`/operations/${operation}`)).status, 'running', 'the launch waits for EC2 to run it');
    await until('the launch is over', async () => (await get(`/operations/${operation}`)).status !== 'running', 90_000);
    assert.equal((await get(`/operations/${operation}`)).status, 'succeeded');
    assert.equal((await get(`/instances/${instanceId}`)).state, 'running');
  });

  it('when started with --replicas 2 --postgres, then it prints two API URLs sharing one PostgreSQL, a create on one is listed on the other, and Ctrl-C leaves no server behind', async () => {
    const { child, output } = await startSandbox({}, { args: ['--replicas', '2', '--postgres'] });
    const folder = await bannerFolder(output);
    const banner = output.text();
    const apis = [...banner.matchAll(/API:\s+(\S+) \(replica (\d) of 2/g)].map((m) => m[1] as string);
    const token = /Token:\s+(\S+)/.exec(banner)?.[1];
    assert.equal(apis.length, 2, banner);
    assert.match(banner, /Database: PostgreSQL postgres:\/\/\S+ \(throwaway\)/);
    assert.ok(token, banner);
    const headers = { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' };

    const created = await fetch(`${apis[0]}/instances`, {
      method: 'POST', headers, body: JSON.stringify({ name: 'on-replica-1', ami: 'ami-1e749f67', instance_type: 't3.micro', storage_gb: 8 }),
    });
    assert.equal(created.status, 201, await created.clone().text());
    const listed = await (await fetch(`${apis[1]}/instances`, { headers })).json() as { instances: Array<{ name: string }> };
    assert.deepEqual(listed.instances.map((i) => i.name), ['on-replica-1']);
    const postgres = processesWithEnvironment(marker.join('=')).filter((pid) => /postgres -D/.test(commandLine(pid)));
    assert.ok(postgres.length > 0, 'PostgreSQL runs for the sandbox');

    process.kill(-child.pid!, 'SIGINT');
    const exit = await exitOf(child);
    assert.deepEqual(exit, { code: 0, signal: null }, output.text());
    assert.ok(!existsSync(folder));
    assert.deepEqual(leftovers(), { folders: [], moto: [] });
    assert.deepEqual(postgres.filter(isAlive), [], 'PostgreSQL stopped');
  });

  it('when --replicas is given without --postgres or with a bad count, then it exits 2 saying why and starts nothing', async () => {
    for (const args of [['--replicas', '2'], ['--postgres', '--replicas', '9'], ['--bogus']]) {
      const { child, output } = await startSandbox({}, { args });
      const exit = await exitOf(child);
      await output.closed;
      assert.deepEqual(exit, { code: 2, signal: null }, output.text());
      assert.match(output.text(), /sandbox: (--replicas needs --postgres|--replicas takes a number from 1 to 5|unknown argument "--bogus")/);
      assert.match(output.text(), /Usage: npm run sandbox/);
      assert.deepEqual(leftovers(), { folders: [], moto: [] });
    }
  });

  it('when SANDBOX_KEEP=1, then Ctrl-C keeps the folder and says where it is', async () => {
    const { child, output } = await startSandbox({ SANDBOX_KEEP: '1' });
    const folder = await bannerFolder(output);

    process.kill(-child.pid!, 'SIGINT');
    const exit = await exitOf(child);
    await output.closed;

    assert.deepEqual(exit, { code: 0, signal: null }, output.text());
    assert.ok(existsSync(folder), 'the folder is kept');
    assert.ok(output.text().includes(`kept ${folder}`), output.text());
    assert.deepEqual(leftovers().moto, []);
  });
});
