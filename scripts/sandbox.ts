/**
 * `npm run sandbox`: the service against a local EC2 emulator, for trying the API without an AWS account.
 * Starts moto_server on a free loopback port, points the AWS CLI at it with dummy credentials (and empty
 * AWS config files, so no real profile is ever read), creates the key pair, starts the service and prints
 * its URL under a "SANDBOX — not real AWS" banner. Ctrl-C stops both and removes the temporary files.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { config as loadDotenv } from 'dotenv';
import { loadConfig } from '../app/config.js';
import { createScriptRunner } from '../app/ec2/runner.js';
import { ensureKeyPair } from '../app/ec2/scripts.js';
import { readGeneratedTokenValue } from '../app/auth/tokens.js'; // security (issue 6)
import { createLogger } from '../app/logger.js';
import { startServer, type RunningServer } from '../app/server.js';
import { startMoto } from './lib/moto.js';

async function main(): Promise<void> {
  loadDotenv({ quiet: true });
  const work = mkdtempSync(path.join(tmpdir(), 'ec2-creator-sandbox-'));
  writeFileSync(path.join(work, 'aws-config'), '');
  writeFileSync(path.join(work, 'aws-credentials'), '');
  for (const name of ['AWS_PROFILE', 'AWS_SESSION_TOKEN', 'AWS_SECURITY_TOKEN']) delete process.env[name];

  const moto = await startMoto();
  // Set on process.env: the scripts the service spawns inherit it.
  Object.assign(process.env, {
    AWS_ACCESS_KEY_ID: 'sandbox',
    AWS_SECRET_ACCESS_KEY: 'sandbox',
    AWS_DEFAULT_REGION: process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
    AWS_CONFIG_FILE: path.join(work, 'aws-config'),
    AWS_SHARED_CREDENTIALS_FILE: path.join(work, 'aws-credentials'),
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_ENDPOINT_URL: moto.endpoint,
    DATABASE_URL: process.env.SANDBOX_DATABASE_URL ?? path.join(work, 'instances.db'),
    // Loopback only, and a browser cannot send a bearer token to load Swagger UI: open the docs here.
    PUBLIC_DOCS: process.env.PUBLIC_DOCS ?? 'true',
  });

  let server: RunningServer | undefined;
  let stopping = false;
  const stop = async (code: number): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await server?.close();
    await moto.stop();
    rmSync(work, { recursive: true, force: true });
    process.exit(code);
  };
  process.once('SIGINT', () => void stop(0));
  process.once('SIGTERM', () => void stop(0));
  void moto.exited.then(() => {
    if (!stopping) {
      process.stderr.write('moto_server stopped unexpectedly; stopping the sandbox\n');
      void stop(1);
    }
  });

  try {
    const config = loadConfig(process.env);
    const keyFile = path.join(work, `${config.keyName}.pem`);
    const runner = createScriptRunner({ scriptsDir: config.scriptsDir, timeoutMs: 60_000, logger: createLogger({ silent: true }) });
    await ensureKeyPair(runner, config.keyName, { create: true, privateKeyFile: keyFile });
    server = await startServer(process.env);

    // --- security (issue 6): the API needs a token; show the generated one (or say where tokens come from) ---
    const tokenFile = config.auth.mode === 'generate' ? config.auth.file : undefined;
    const token = tokenFile ? readGeneratedTokenValue(tokenFile) : undefined;
    const auth = token ? ` -H 'Authorization: Bearer ${token}'` : config.auth.mode === 'disabled' ? '' : " -H 'Authorization: Bearer <your token>'";
    const tokenLines = token
      ? [`  Token:    ${token}`, `            (operator; generated in ${tokenFile})`]
      : [config.auth.mode === 'disabled' ? '  Auth:     DISABLED (AUTH_DISABLED=true)' : `  Auth:     tokens from ${config.auth.mode === 'tokens' ? config.auth.source : '?'}`];
    // --- end security ---

    const line = '='.repeat(72);
    process.stdout.write(
      [
        '',
        line,
        '  SANDBOX — not real AWS',
        `  EC2 is moto_server at ${moto.endpoint}; nothing here costs money or reaches AWS.`,
        `  API:      ${server.url}`,
        `  Docs:     ${server.url}/docs`,
        `  Key pair: ${config.keyName} (private key ${keyFile})`,
        ...tokenLines,
        `  Try:      curl -s -X POST ${server.url}/instances${auth} -H 'Content-Type: application/json' \\`,
        `              -d '{"name":"demo","ami":"ami-1e749f67","instance_type":"t3.micro","storage_gb":8}'`,
        `            curl -s ${server.url}/instances${auth}`,
        '  Ctrl-C stops the service and the emulator.',
        line,
        '',
      ].join('\n'),
    );
  } catch (error) {
    process.stderr.write(`sandbox failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
    await stop(1);
  }
}

await main();
