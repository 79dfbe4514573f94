import assert from 'node:assert/strict';
import { execaSync } from 'execa';
import { accessSync, constants, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { resetMoto } from '../support/global-fixture.js';
import { UBUNTU_X86_AMI, allEc2Instances, createKeyPair } from '../support/ec2-reader.js';
import { SCRIPT_DEFAULT_KEY_NAME, runScript, scriptsDir } from '../support/scripts.js';

const SCRIPTS = readdirSync(scriptsDir).filter((file) => file.endsWith('.sh')).sort();
const TAKES_INSTANCE_ID = ['describe_instance.sh', 'destroy_instance.sh', 'start_instance.sh', 'stop_instance.sh', 'tag_instance.sh'];
// A closed loopback port: any AWS call would fail with exit 5, so another code proves none was made.
const NO_AWS = { AWS_ENDPOINT_URL: 'http://127.0.0.1:9' };

/** A PATH holding only the named tools, to see what the scripts do when one is missing. */
function pathWith(tools: string[]): { dir: string; PATH: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'path-'));
  for (const tool of tools) {
    const found = execaSync('bash', ['-c', `command -v ${tool}`]).stdout.trim();
    symlinkSync(found, path.join(dir, tool));
  }
  return { dir, PATH: dir };
}
const BASICS = ['bash', 'dirname', 'basename', 'mktemp', 'timeout', 'sed', 'tail', 'cat', 'rm', 'sleep', 'grep'];

describe('every script', () => {
  it('ships eleven scripts, each executable', () => {
    assert.deepEqual(SCRIPTS, [
      'create_instance.sh', 'describe_image.sh', 'describe_instance.sh', 'describe_security_groups.sh', 'destroy_instance.sh',
      'ensure_key_pair.sh', 'ensure_security_group.sh', 'list_instances.sh', 'start_instance.sh', 'stop_instance.sh',
      'tag_instance.sh',
    ]);
    for (const script of SCRIPTS) accessSync(path.join(scriptsDir, script), constants.X_OK);
  });

  for (const script of SCRIPTS) {
    it(`when ${script} is asked for -h or --help, then it prints its usage and exit codes without touching AWS`, async () => {
      for (const flag of ['-h', '--help']) {
        const result = await runScript(script, [flag], { env: NO_AWS });
        assert.equal(result.exitCode, 0, result.stderr);
        assert.match(result.stdout, new RegExp(`^Usage: ${script}`));
        assert.match(result.stdout, /Exit codes: 0 ok, 1 other, 2 usage/);
      }
    });

    it(`when ${script} gets an unknown option, then it exits 2 with one JSON error document and a message on stderr`, async () => {
      const result = await runScript(script, ['--endpoint-url=http://127.0.0.1:9'], { env: NO_AWS });
      assert.equal(result.exitCode, 2);
      assert.deepEqual(Object.keys(result.json().error).sort(), ['code', 'message']);
      assert.equal(result.json().error.code, 'InvalidArgument');
      assert.match(result.stderr, new RegExp(`^${script}: .*--endpoint-url`));
    });
  }

  for (const script of TAKES_INSTANCE_ID) {
    it(`when ${script} gets an option disguised as the instance id, then it refuses it with exit 2`, async () => {
      for (const id of ['--endpoint-url=http://127.0.0.1:9', '-i-12345678', 'i-1234567', 'i-123456789', 'I-12345678', 'i-12345678 ', 'i-1234567z']) {
        const result = await runScript(script, ['--', id], { env: NO_AWS });
        assert.equal(result.exitCode, 2, `${script} ${JSON.stringify(id)}: ${result.stderr}`);
        assert.match(result.json().error.message, /invalid instance id/);
      }
    });
  }

  it('when the aws CLI is not installed, then a script exits 8 and says so', async () => {
    const { dir, PATH } = pathWith([...BASICS, 'jq']);
    try {
      const result = await runScript('describe_instance.sh', ['i-12345678'], { env: { PATH } });
      assert.equal(result.exitCode, 8);
      assert.equal(result.json().error.code, 'MissingDependency');
      assert.match(result.stderr, /aws CLI is not on PATH/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('when jq is not installed, then a script exits 8 and still prints a JSON error document', async () => {
    const { dir, PATH } = pathWith(BASICS);
    try {
      const result = await runScript('list_instances.sh', [], { env: { PATH } });
      assert.equal(result.exitCode, 8);
      assert.deepEqual(result.json(), { error: { code: 'MissingDependency', message: 'jq is not installed' } });
      assert.match(result.stderr, /jq is not installed/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('when a script succeeds, then stdout holds exactly one JSON document and the progress went to stderr', async () => {
    await resetMoto();
    await createKeyPair(SCRIPT_DEFAULT_KEY_NAME);
    const result = await runScript('create_instance.sh', ['one doc', UBUNTU_X86_AMI, 't3.micro', '8']);
    assert.equal(result.exitCode, 0, result.stderr);
    assert.doesNotThrow(() => result.json());
    assert.equal(result.stdout.trim().split('\n')[0], '{');
    assert.match(result.stderr, /launching/);
    assert.equal((await allEc2Instances()).length, 1);
  });
});
