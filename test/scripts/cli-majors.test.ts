/**
 * Where AWS CLI v1 and v2 behave differently, the scripts must still print the same documents, exit codes
 * and messages. These run on whichever `aws` is first on PATH: `npm test` has v1, and `.ci/run` runs
 * test/scripts/ again with Debian's v2 (scripts/ci/aws-cli-v2.sh) first on PATH. Where one CLI cannot
 * show a difference by itself, the test makes it show on both: the config file asks v1 for v2's
 * timestamps, a fake aws answers with either major's exit status.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { startThrottlingProxy } from '../support/fault-proxy.js';
import { motoEndpoint, resetMoto, testRunDir } from '../support/global-fixture.js';
import { UBUNTU_X86_AMI, createKeyPair, ec2InstanceById } from '../support/ec2-reader.js';
import { SCRIPT_DEFAULT_KEY_NAME, launchManaged, runScript, scriptsDir } from '../support/scripts.js';
import { fakeAwsEnv } from '../support/fake-aws.js';

const UNKNOWN_ID = 'i-0123456789abcdef0';
// A closed loopback port: a call sent there fails at once.
const CLOSED_ENDPOINT = 'http://127.0.0.1:9';

/** An AWS config file holding `lines` under [default], for this test alone. */
function awsConfig(...lines: string[]): string {
  const file = path.join(mkdtempSync(path.join(testRunDir(), 'aws-config-')), 'config');
  writeFileSync(file, ['[default]', ...lines, ''].join('\n'));
  return file;
}

/** The instance documents lib/common.sh makes of a describe-instances answer (no volume read). */
async function documentsOf(reservations: unknown): Promise<Array<{ launch_time: string | null }>> {
  const result = await execa('bash', [
    '-c', 'source "$1"; READ_STORAGE=false; instances_from_reservations', 'instance-documents',
    path.join(scriptsDir, 'lib', 'common.sh'),
  ], { input: JSON.stringify(reservations), reject: false });
  assert.equal(result.exitCode, 0, String(result.stderr));
  return JSON.parse(String(result.stdout));
}

describe('the scripts on AWS CLI v1 and v2', () => {
  beforeEach(async () => {
    await resetMoto();
    await createKeyPair(SCRIPT_DEFAULT_KEY_NAME);
  });

  describe('timestamps: v1 prints EC2\'s text, v2 ISO 8601 with an offset', () => {
    it('when the CLI prints launch times as ISO 8601 with an offset, then launch_time is still EC2\'s UTC text with milliseconds', async () => {
      const created = await launchManaged('timestamped');
      // v2's default, and v1 asked for it: the spelling "2026-11-01T12:00:00+00:00".
      const result = await runScript('describe_instance.sh', [created.id], {
        env: { AWS_CONFIG_FILE: awsConfig('cli_timestamp_format = iso8601') },
      });
      assert.equal(result.exitCode, 0, result.stderr);
      const launched: Date = (await ec2InstanceById(created.id)).LaunchTime;
      assert.equal(result.json().launch_time, launched.toISOString());
    });

    it('when a launch time carries a fraction or another offset, then launch_time is the same instant in UTC with milliseconds', async () => {
      const spellings: Record<string, string> = {
        '2026-11-01T12:00:00.000Z': '2026-11-01T12:00:00.000Z',
        '2026-11-01T12:00:00+00:00': '2026-11-01T12:00:00.000Z',
        '2026-11-01T12:00:00.123456+00:00': '2026-11-01T12:00:00.123Z',
        '2026-11-01T13:30:00.5+01:30': '2026-11-01T12:00:00.500Z',
        '2026-12-31T23:30:00-01:00': '2027-01-01T00:30:00.000Z',
      };
      const reservations = {
        Reservations: [{ Instances: Object.keys(spellings).map((LaunchTime, index) => ({ InstanceId: `i-0000000${index}`, LaunchTime })) }],
      };
      const printed = (await documentsOf(reservations)).map((document) => document.launch_time);
      assert.deepEqual(printed, Object.values(spellings));
    });
  });

  it('when the config file sets v1\'s legacy retry mode, which v2 refuses, then throttling is still retried 5 times in standard mode', async () => {
    const proxy = await startThrottlingProxy(motoEndpoint(), Number.POSITIVE_INFINITY);
    try {
      const result = await runScript('describe_image.sh', [UBUNTU_X86_AMI], {
        env: { AWS_ENDPOINT_URL: proxy.endpoint, AWS_CONFIG_FILE: awsConfig('retry_mode = legacy', 'max_attempts = 2') },
      });
      assert.equal(result.exitCode, 5, result.stderr);
      assert.equal(result.json().error.code, 'RequestLimitExceeded');
      assert.equal(proxy.requests, 5);
    } finally {
      await proxy.close();
    }
  });

  it('when a pager is configured and the script runs in a terminal, then no pager runs and the document is printed', async () => {
    // v2 pipes what it prints to a terminal through the pager, which would swallow it; v1 has none.
    const marker = path.join(mkdtempSync(path.join(testRunDir(), 'pager-')), 'paged');
    const pager = `touch ${marker}`;
    const command = `'${path.join(scriptsDir, 'describe_image.sh')}' ${UBUNTU_X86_AMI}`;
    const result = await execa('script', ['-qec', command, '/dev/null'], {
      env: { AWS_PAGER: pager, PAGER: pager, AWS_CONFIG_FILE: awsConfig(`cli_pager = ${pager}`) },
      stdin: 'ignore',
      reject: false,
    });
    assert.equal(result.exitCode, 0, String(result.stdout));
    // jq colours what it prints to a terminal.
    const terminal = String(result.stdout).replaceAll('\r', '').replaceAll(/\x1b\[[0-9;]*m/g, '');
    assert.equal(JSON.parse(terminal.slice(terminal.indexOf('{'), terminal.lastIndexOf('}') + 1)).id, UBUNTU_X86_AMI);
    assert.equal(existsSync(marker), false, 'a pager ran');
  });

  describe('exit statuses: v1 exits 255 on every failure, v2 252 to 255 by kind', () => {
    const failures = [
      {
        kind: 'EC2 refuses the call', v1: 255, v2: 254, exitCode: 3, code: 'InvalidInstanceID.NotFound',
        stderr: `\nAn error occurred (InvalidInstanceID.NotFound) when calling the DescribeInstances operation: The instance ID '${UNKNOWN_ID}' does not exist`,
        message: `The instance ID '${UNKNOWN_ID}' does not exist`,
      },
      {
        kind: 'the CLI finds no credentials', v1: 255, v2: 253, exitCode: 6, code: 'NoCredentials',
        stderr: '\nUnable to locate credentials. You can configure credentials by running "aws configure".',
        message: 'Unable to locate credentials. You can configure credentials by running "aws configure".',
      },
      {
        kind: 'the CLI refuses its arguments', v1: 255, v2: 252, exitCode: 1, code: 'AwsCliError',
        stderr: '\nusage: aws [options] <command> <subcommand> [<subcommand> ...] [parameters]\nTo see help text, you can run:\n\n  aws help\n\nUnknown options: --bogus',
        message: 'Unknown options: --bogus',
      },
      {
        kind: 'the endpoint cannot be reached', v1: 255, v2: 255, exitCode: 5, code: 'ServiceUnavailable',
        stderr: `\nCould not connect to the endpoint URL: "${CLOSED_ENDPOINT}/"`,
        message: `Could not connect to the endpoint URL: "${CLOSED_ENDPOINT}/"`,
      },
    ];
    for (const failure of failures) {
      it(`when ${failure.kind} (v1 exits ${failure.v1}, v2 ${failure.v2}), then the script exits ${failure.exitCode} with ${failure.code} either way`, async () => {
        for (const status of [failure.v1, failure.v2]) {
          const result = await runScript('describe_instance.sh', [UNKNOWN_ID], {
            env: fakeAwsEnv({ FAKE_AWS_FAIL_STATUS: String(status), FAKE_AWS_FAIL_STDERR: failure.stderr }),
          });
          assert.equal(result.exitCode, failure.exitCode, `aws exit ${status}: ${result.stderr}`);
          assert.deepEqual(result.json(), { error: { code: failure.code, message: failure.message } }, `aws exit ${status}`);
        }
      });
    }
  });

  describe('the endpoint: v2 before 2.13 ignores AWS_ENDPOINT_URL, so the scripts pass it on the command line', () => {
    it('when AWS_ENDPOINT_URL_EC2 names the emulator and AWS_ENDPOINT_URL a closed port, then the script reaches the emulator', async () => {
      const result = await runScript('describe_image.sh', [UBUNTU_X86_AMI], {
        env: { AWS_ENDPOINT_URL_EC2: motoEndpoint(), AWS_ENDPOINT_URL: CLOSED_ENDPOINT },
      });
      assert.equal(result.exitCode, 0, result.stderr);
      assert.equal(result.json().id, UBUNTU_X86_AMI);
    });

    const cases: Array<{ when: string; env: Record<string, string | undefined>; endpoint: string | undefined }> = [
      { when: 'only AWS_ENDPOINT_URL is set', env: { AWS_ENDPOINT_URL: 'http://127.0.0.1:4001' }, endpoint: 'http://127.0.0.1:4001' },
      {
        when: 'AWS_ENDPOINT_URL_EC2 is set too', env: { AWS_ENDPOINT_URL: 'http://127.0.0.1:4001', AWS_ENDPOINT_URL_EC2: 'http://127.0.0.1:4002' },
        endpoint: 'http://127.0.0.1:4002',
      },
      {
        when: 'AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is true', env: { AWS_ENDPOINT_URL: 'http://127.0.0.1:4001', AWS_IGNORE_CONFIGURED_ENDPOINT_URLS: 'true' },
        endpoint: undefined,
      },
      { when: 'no endpoint variable is set', env: { AWS_ENDPOINT_URL: undefined }, endpoint: undefined },
    ];
    for (const { when, env, endpoint } of cases) {
      it(`when ${when}, then the CLI is given ${endpoint ? `--endpoint-url=${endpoint}` : 'no --endpoint-url'}`, async () => {
        const log = path.join(mkdtempSync(path.join(testRunDir(), 'aws-args-')), 'args.log');
        const result = await runScript('describe_image.sh', [UBUNTU_X86_AMI], {
          env: {
            ...fakeAwsEnv({ FAKE_AWS_ARGS_LOG: log, FAKE_AWS_FAIL_STATUS: '255', FAKE_AWS_FAIL_STDERR: `Could not connect to the endpoint URL: "${CLOSED_ENDPOINT}/"` }),
            ...env,
          },
        });
        assert.equal(result.exitCode, 5, result.stderr);
        const [call] = readFileSync(log, 'utf8').split('\n');
        const given = call?.split(' ').filter((argument) => argument.startsWith('--endpoint-url'));
        assert.deepEqual(given, endpoint ? [`--endpoint-url=${endpoint}`] : []);
      });
    }
  });
});
