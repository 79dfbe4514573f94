import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fakeAwsEnv } from '../support/fake-aws.js';
import {
  exitOf, isAlive, killProcessesWithEnvironment, repoRoot, waitUntil, watchOutput, type WatchedOutput,
} from '../support/ops-manager.js';

const scriptsDir = path.join(repoRoot, 'aws_cli_bash_scripts');

/**
 * The EC2 scripts keep the aws CLI's stderr in a temporary file while a call runs. The service stops a
 * script by signalling its whole process group (on a timeout, at shutdown), as Ctrl-C does in a
 * terminal; either way nothing may be left in TMPDIR.
 */
describe('aws_cli_bash_scripts temporary files', function () {
  this.timeout(60_000);
  let base: string;
  let scratch: string;
  let awsLog: string;
  let marker: [string, string];
  let script: ChildProcess | undefined;

  beforeEach(() => {
    base = mkdtempSync(path.join(tmpdir(), 'ec2-creator-temp-files-'));
    scratch = path.join(base, 'tmp');
    mkdirSync(scratch);
    awsLog = path.join(base, 'aws-calls.log');
    marker = ['EC2_CREATOR_TEST_RUN', `temp-files-${randomBytes(8).toString('hex')}`];
  });

  afterEach(() => {
    if (script?.pid !== undefined && script.exitCode === null && script.signalCode === null) {
      try {
        process.kill(-script.pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    script = undefined;
    killProcessesWithEnvironment(marker.join('='));
    rmSync(base, { recursive: true, force: true });
  });

  /** describe_instance.sh as the service runs it: leader of its own process group, fake aws first on PATH. */
  function startDescribe(mode: string): { child: ChildProcess; output: WatchedOutput } {
    const env = {
      ...process.env,
      ...fakeAwsEnv({ FAKE_AWS_MODE: mode, FAKE_AWS_LOG: awsLog }),
      TMPDIR: scratch,
      [marker[0]]: marker[1],
    };
    const child = spawn(path.join(scriptsDir, 'describe_instance.sh'), ['i-0123456789abcdef0'], {
      detached: true,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    script = child;
    return { child, output: watchOutput(child) };
  }

  /** The pid of the (fake) aws CLI once it has been called: it logs the call before it blocks. */
  async function awsCalled(child: ChildProcess, output: WatchedOutput): Promise<number> {
    for (;;) {
      const logged = existsSync(awsLog) ? /^describe-instances (\d+)$/m.exec(readFileSync(awsLog, 'utf8')) : null;
      if (logged) return Number(logged[1]);
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`the script ended before calling aws:\n${output.text()}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`when a script's process group gets ${signal} during an aws call, then the script ends and TMPDIR is left empty`, async () => {
      const { child, output } = startDescribe('hang');
      const awsPid = await awsCalled(child, output);
      assert.ok(readdirSync(scratch).length > 0, 'the call in progress has its temporary file');

      process.kill(-child.pid!, signal);
      const exit = await exitOf(child);
      await output.closed; // every process that shares its output (subshells, the CLI) is gone too

      assert.equal(exit.signal, signal, output.text());
      assert.deepEqual(readdirSync(scratch), [], 'no temporary file is left');
      // The CLI got the same signal; the kernel may take a moment to finish it off on a busy machine.
      assert.ok(await waitUntil(() => !isAlive(awsPid), 60_000), 'the aws call was stopped');
    });
  }

  it('when an aws call fails, then the script reports it and TMPDIR is left empty', async () => {
    const { child, output } = startDescribe('throttled');
    const exit = await exitOf(child);
    await output.closed;
    assert.equal(exit.code, 5, output.text());
    assert.match(output.text(), /"code":\s*"Throttling"/);
    assert.deepEqual(readdirSync(scratch), []);
  });
});
