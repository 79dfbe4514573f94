/**
 * `npm run sandbox`: the service against a local EC2 emulator, for trying the API without an AWS account.
 * Starts moto_server on a free loopback port, points the AWS CLI at it with dummy credentials (and empty
 * AWS config files, so no real profile is ever read), creates the key pair, starts the service and prints
 * its URL under a "SANDBOX — not real AWS" banner.
 *
 * The temporary folder holds a private key, the API token and the database, so it is removed however the
 * sandbox ends: Ctrl-C (SIGINT), SIGTERM or SIGHUP, at any point of start-up too, a start-up failure or a
 * crash. SANDBOX_KEEP=1 keeps it, and the sandbox says where it is.
 *
 * `--postgres` keeps the records in a throwaway PostgreSQL instead of SQLite, and `--replicas N` (with it)
 * starts N servers sharing it, each on its own port, to see several replicas at work. `--realistic` puts the
 * realistic EC2 emulator (scripts/lib/realistic-ec2.ts) in front of moto, so the sandbox behaves as AWS does:
 * a launch is pending for about ten seconds, a new id is not shown at once, some calls are throttled.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { config as loadDotenv } from 'dotenv';
import { execa } from 'execa';
import { loadConfig } from '../app/config.js';
import { createScriptRunner, type ScriptRunner } from '../app/ec2/runner.js';
import { ensureKeyPair } from '../app/ec2/scripts.js';
import { readGeneratedTokenValue } from '../app/auth/tokens.js';
import { createLogger } from '../app/logger.js';
import { startServer, type RunningServer } from '../app/server.js';
import { describeUrl } from '../app/store/postgres/index.js';
import { shellWord } from '../app/shell-word.js';
import { startMoto, type MotoServer } from './lib/moto.js';
import { startRealisticEc2, type RealisticEc2, type RealisticEc2Options } from './lib/realistic-ec2.js';
import { startPostgres, type PostgresServer } from './lib/postgres.js';

const USAGE = `Usage: npm run sandbox [-- [--realistic] [--postgres] [--replicas N]]

The service against a local EC2 emulator (moto_server), for trying the API without an AWS account.
  --realistic    EC2 as AWS behaves: a launch or start is pending about 10 s, a stop is stopping about 12 s,
                 a terminate shutting-down about 8 s; a new instance is not shown for 1 to 4 s; IncorrectInstanceState;
                 a repeated ClientToken answers the first launch; about 1 call in 10 is throttled
  --postgres     keep the records in a throwaway PostgreSQL (the machine's own binaries) instead of SQLite
  --replicas N   start N servers (1 to 5) sharing that PostgreSQL, each on its own port; needs --postgres
  -h, --help     this text
Exit codes: 0 stopped by Ctrl-C or SIGTERM, 1 failed to start, 2 bad arguments.
`;

interface SandboxOptions {
  postgres: boolean;
  replicas: number;
  realistic: boolean;
}

/** What --realistic makes of EC2: AWS-like durations, as a person sees them on the dashboard. */
const REALISTIC: Omit<RealisticEc2Options, 'upstream'> = {
  pendingMs: 10_000, stoppingMs: 12_000, shuttingDownMs: 8_000, notFoundMs: [1_000, 4_000], throttleRate: 0.1,
};

/** The command line, or a message for a bad one. */
function parseArguments(args: string[]): SandboxOptions | { help: true } | { error: string } {
  const options: SandboxOptions = { postgres: false, replicas: 1, realistic: false };
  for (let i = 0; i < args.length; i += 1) {
    const arg = args[i] as string;
    if (arg === '-h' || arg === '--help') return { help: true };
    if (arg === '--postgres' || arg === '--realistic') {
      options[arg === '--postgres' ? 'postgres' : 'realistic'] = true;
      continue;
    }
    const replicas = arg === '--replicas' ? args[(i += 1)] : /^--replicas=(.*)$/.exec(arg)?.[1];
    if (replicas !== undefined || arg === '--replicas') {
      if (replicas === undefined || !/^[1-5]$/.test(replicas)) return { error: `--replicas takes a number from 1 to 5, got ${JSON.stringify(replicas ?? '')}` };
      options.replicas = Number(replicas);
      continue;
    }
    return { error: `unknown argument ${JSON.stringify(arg)}` };
  }
  if (options.replicas > 1 && !options.postgres) {
    return { error: '--replicas needs --postgres: a SQLite file takes one server' };
  }
  return options;
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

async function main(): Promise<void> {
  const parsed = parseArguments(process.argv.slice(2));
  if ('help' in parsed) {
    process.stdout.write(USAGE);
    return;
  }
  if ('error' in parsed) {
    process.stderr.write(`sandbox: ${parsed.error}\n${USAGE}`);
    process.exit(2);
  }
  const options = parsed;
  loadDotenv({ quiet: true });
  const keep = ['1', 'true'].includes(process.env.SANDBOX_KEEP ?? '');

  let work: string | undefined;
  let motoStarting: Promise<MotoServer> | undefined;
  let moto: MotoServer | undefined;
  let realistic: RealisticEc2 | undefined;
  let runner: ScriptRunner | undefined;
  let postgresStarting: Promise<PostgresServer> | undefined;
  let serverStarting: Promise<RunningServer[]> | undefined;
  let stopping: Promise<void> | undefined;
  let hurry: (() => void) | undefined;

  const removeWork = (): void => {
    if (work === undefined) return;
    if (keep) process.stderr.write(`sandbox: kept ${work} (SANDBOX_KEEP=1): the private key, the API token and the database\n`);
    else rmSync(work, { recursive: true, force: true });
    work = undefined;
  };

  /**
   * Stops what was started, in reverse order, then removes the folder and exits. Whatever is still
   * starting is waited for and then stopped, so a signal during start-up leaves nothing running.
   */
  const stop = (code: number): Promise<void> => {
    stopping ??= (async () => {
      runner?.killAll();
      const drained = serverStarting?.then((servers) => Promise.all(servers.map((server) => server.close())), () => undefined);
      // A second signal while stopping means "now": the service's in-flight work is not waited for.
      await Promise.race([drained, new Promise<void>((resolve) => (hurry = resolve))]);
      await postgresStarting?.then((postgres) => postgres.stop(), () => undefined);
      await realistic?.close();
      await motoStarting?.then((emulator) => emulator.stop(), () => undefined);
      removeWork();
      process.exit(code);
    })();
    return stopping;
  };

  // The last word on any other way out (process.exit elsewhere): tell the emulator to stop (stop() sends
  // its signal at once) and remove the folder, which rmSync can do before the process is gone.
  process.on('exit', () => {
    void moto?.stop();
    removeWork();
  });
  // `on`, not `once`: with no listener left, a second Ctrl-C (or the signal tsx relays) would end the
  // process before it had cleaned up.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      if (stopping) {
        hurry?.();
        return;
      }
      void stop(0);
    });
  }
  const crash = (error: unknown): void => {
    process.stderr.write(`sandbox: ${error instanceof Error && error.stack ? error.stack : message(error)}\n`);
    void stop(1);
  };
  process.on('uncaughtException', crash);
  process.on('unhandledRejection', crash);

  try {
    const dir = mkdtempSync(path.join(tmpdir(), 'ec2-creator-sandbox-'));
    work = dir;
    writeFileSync(path.join(dir, 'aws-config'), '');
    writeFileSync(path.join(dir, 'aws-credentials'), '');
    // The EC2 endpoint variable would win over AWS_ENDPOINT_URL, and the other would turn it off.
    for (const name of ['AWS_PROFILE', 'AWS_SESSION_TOKEN', 'AWS_SECURITY_TOKEN', 'AWS_ENDPOINT_URL_EC2', 'AWS_IGNORE_CONFIGURED_ENDPOINT_URLS']) {
      delete process.env[name];
    }

    motoStarting = startMoto();
    moto = await motoStarting;
    if (stopping) return;
    const emulator = moto;
    void emulator.exited.then(() => {
      if (!stopping) {
        process.stderr.write('moto_server stopped unexpectedly; stopping the sandbox\n');
        void stop(1);
      }
    });
    if (options.realistic) {
      realistic = await startRealisticEc2({ upstream: emulator.endpoint, ...REALISTIC, seed: randomBytes(4).readUInt32BE() });
      if (stopping) return;
    }
    const ec2Endpoint = realistic?.endpoint ?? emulator.endpoint;
    let databaseUrl = path.join(dir, 'instances.db');
    if (options.postgres) {
      postgresStarting = startPostgres();
      databaseUrl = (await postgresStarting).url;
      if (stopping) return;
    }
    // Set on process.env: the scripts the service spawns inherit it.
    Object.assign(process.env, {
      AWS_ACCESS_KEY_ID: 'sandbox',
      AWS_SECRET_ACCESS_KEY: 'sandbox',
      AWS_DEFAULT_REGION: process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
      AWS_CONFIG_FILE: path.join(dir, 'aws-config'),
      AWS_SHARED_CREDENTIALS_FILE: path.join(dir, 'aws-credentials'),
      AWS_EC2_METADATA_DISABLED: 'true',
      AWS_ENDPOINT_URL: ec2Endpoint,
      DATABASE_URL: process.env.SANDBOX_DATABASE_URL ?? databaseUrl,
      // Loopback only, and a browser cannot send a bearer token to load Swagger UI: open the docs here.
      PUBLIC_DOCS: process.env.PUBLIC_DOCS ?? 'true',
      // The emulator's instances are reachable from nowhere: a managed group lets SSH in from this machine only.
      SECURITY_GROUP_CIDR: process.env.SECURITY_GROUP_CIDR ?? '127.0.0.1/32',
    });

    // Without a SQLite folder the generated token would land in the checkout's ./data, and each replica
    // must know the same one: the sandbox makes it, in its own folder.
    let sandboxToken: string | undefined;
    if (options.postgres && !['API_TOKENS', 'API_TOKENS_FILE', 'AUTH_DISABLED'].some((name) => process.env[name])) {
      sandboxToken = randomBytes(24).toString('hex');
      const tokens = path.join(dir, 'api-tokens');
      writeFileSync(tokens, `sandbox:operator:${sandboxToken}\n`, { mode: 0o600 });
      process.env.API_TOKENS_FILE = tokens;
    }
    const config = loadConfig(process.env);
    const keyFile = path.join(dir, `${config.keyName}.pem`);
    runner = createScriptRunner({ scriptsDir: config.scriptsDir, timeoutMs: 60_000, logger: createLogger({ silent: true }) });
    await ensureKeyPair(runner, config.keyName, { create: true, privateKeyFile: keyFile });
    // ssh_string names the key file the sandbox made, not ~/.ssh/<key>.pem, which does not hold this key.
    process.env.KEY_FILE = keyFile;
    if (stopping) return;
    // Read while the server starts: the lookup is a CLI call of its own, about a second.
    const imagesRead = sandboxImages(emulator.endpoint);
    // Replicas after the first listen on ports of their own.
    serverStarting = (async () => {
      const started: RunningServer[] = [];
      for (let i = 0; i < options.replicas; i += 1) {
        started.push(await startServer(i === 0 ? process.env : { ...process.env, PORT: '0' }));
      }
      return started;
    })();
    const servers = await serverStarting;
    const server = servers[0] as RunningServer;
    if (stopping) return;

    // The API needs a token: show the generated one (or the sandbox's own), or say where tokens come from.
    const tokenFile = config.auth.mode === 'generate' ? config.auth.file : undefined;
    const token = tokenFile ? readGeneratedTokenValue(tokenFile) : sandboxToken;
    const auth = token ? ` -H 'Authorization: Bearer ${token}'` : config.auth.mode === 'disabled' ? '' : " -H 'Authorization: Bearer <your token>'";
    const tokenLines = token
      ? [`  Token:    ${token}`, `            (operator; generated in ${tokenFile ?? path.join(dir, 'api-tokens')})`]
      : [config.auth.mode === 'disabled' ? '  Auth:     DISABLED (AUTH_DISABLED=true)' : `  Auth:     tokens from ${config.auth.mode === 'tokens' ? config.auth.source : '?'}`];

    const images = await imagesRead;
    if (stopping) return;

    const line = '='.repeat(72);
    process.stdout.write(
      [
        '',
        line,
        '  SANDBOX — not real AWS',
        `  EC2 is moto_server at ${emulator.endpoint}; nothing here costs money or reaches AWS.`,
        ...(realistic
          ? [`  Realistic: EC2 as AWS behaves, at ${realistic.endpoint}: pending ~10 s, stopping ~12 s, a new id unseen`,
            '            for 1-4 s, IncorrectInstanceState, ClientToken replay, 1 call in 10 throttled']
          : []),
        ...(servers.length === 1
          ? [`  API:      ${server.url}`]
          : servers.map((each, i) => `  API:      ${each.url} (replica ${i + 1} of ${servers.length}: any of them takes any request)`)),
        ...(options.postgres ? [`  Database: PostgreSQL ${describeUrl(process.env.DATABASE_URL ?? '')} (throwaway)`] : []),
        `  Browser:  ${server.url}/ (the dashboard: sign in with the API token)`,
        `  Docs:     ${server.url}/docs`,
        `  Key pair: ${config.keyName} (private key ${keyFile})`,
        ...tokenLines,
        `  Try:      curl -s -X POST ${server.url}/instances${auth} -H 'Content-Type: application/json' \\`,
        `              -d '{"name":"demo","ami":"ami-1e749f67","instance_type":"t3.micro","storage_gb":8}'`,
        `            curl -s ${server.url}/instances${auth}`,
        ...imageLines(images),
        '  Scripts by hand, in another shell (from the checkout):',
        `    ${scriptEnvironmentLine(config.keyName)}`,
        '    unset AWS_PROFILE AWS_SESSION_TOKEN; aws_cli_bash_scripts/list_instances.sh',
        keep
          ? `  Files:    ${dir} (kept on exit: SANDBOX_KEEP=1)`
          : `  Files:    ${dir} (removed on exit; SANDBOX_KEEP=1 keeps them)`,
        '  Ctrl-C stops the service and the emulator.',
        line,
        '',
      ].join('\n'),
    );
  } catch (error) {
    // Stopping makes what was starting fail; that is no start-up failure.
    if (stopping) return;
    process.stderr.write(`sandbox failed to start: ${message(error)}\n`);
    await stop(1);
  }
}

/** The `export` a person pastes to point the scripts (and the aws CLI) at this sandbox's emulator. */
function scriptEnvironmentLine(keyName: string): string {
  const names = [
    'AWS_ENDPOINT_URL', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_DEFAULT_REGION',
    'AWS_CONFIG_FILE', 'AWS_SHARED_CREDENTIALS_FILE', 'AWS_EC2_METADATA_DISABLED',
  ];
  const pairs = names.map((name) => `${name}=${shellWord(process.env[name] ?? '')}`);
  return `export ${[...pairs, `KEY_NAME=${shellWord(keyName)}`].join(' ')}`;
}

/** The latest Amazon Linux 2023 images, as the public SSM parameters the emulator serves name them. */
const IMAGE_PARAMETERS = {
  x86_64: '/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64',
  arm64: '/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64',
} as const;

type SandboxImages = Partial<Record<keyof typeof IMAGE_PARAMETERS, string>>;

/** One x86_64 and one arm64 image id that exist in the emulator; none when it cannot say (the banner then omits them). */
async function sandboxImages(endpoint: string): Promise<SandboxImages> {
  try {
    // On the command line: AWS CLI v2 before 2.13 reads no AWS_ENDPOINT_URL.
    const { stdout } = await execa('aws', [
      'ssm', 'get-parameters', '--names', ...Object.values(IMAGE_PARAMETERS), '--output', 'json', '--endpoint-url', endpoint,
    ], { timeout: 60_000 });
    const values = new Map(
      (JSON.parse(stdout) as { Parameters?: Array<{ Name?: string; Value?: string }> }).Parameters?.map((p) => [p.Name, p.Value]) ?? [],
    );
    const images: SandboxImages = {};
    for (const [architecture, name] of Object.entries(IMAGE_PARAMETERS) as Array<[keyof SandboxImages, string]>) {
      const id = values.get(name);
      if (id && /^ami-[0-9a-f]+$/.test(id)) images[architecture] = id;
    }
    return images;
  } catch (error) {
    process.stderr.write(`sandbox: could not read the Amazon Linux image ids from the emulator (${message(error)})\n`);
    return {};
  }
}

function imageLines(images: SandboxImages): string[] {
  const lines: string[] = [];
  if (images.x86_64) lines.push(`  AMIs:     ${images.x86_64} (Amazon Linux 2023, x86_64: t3.micro)`);
  if (images.arm64) lines.push(`            ${images.arm64} (Amazon Linux 2023, arm64: t4g.micro)`);
  return lines;
}

await main();
