/**
 * Start-up security configuration: API_TOKENS / API_TOKENS_FILE validation (every error names its variable
 * and never echoes a token), AUTH_DISABLED only on loopback, and the generated operator token file (mode
 * 0600 on first start, reused on the second, its path logged but never its value) — the last through the
 * real server process.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadAuthConfig, loadSecurityConfig } from '../../app/auth/config.js';
import { resolveAuth } from '../../app/auth/setup.js';
import { isLoopbackHost, readGeneratedTokenValue } from '../../app/auth/tokens.js';
import { ConfigError, loadConfig } from '../../app/config.js';
import { capturedLogger } from '../support/log-capture.js';
import { repoRoot } from '../support/app-harness.js';

const GOOD = 'abcdefghijklmnop0123456789';

function configError(fn: () => unknown, variable: string, secret?: string): ConfigError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    assert.equal(error.variable, variable);
    assert.ok(error.message.startsWith(`${variable}:`), error.message);
    if (secret) assert.ok(!error.message.includes(secret), `the message echoes the token: ${error.message}`);
    return error;
  }
  throw new Error('expected a ConfigError');
}

describe('security configuration', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'ec2-creator-sec-config-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const auth = (env: Record<string, string>, host = '127.0.0.1') => loadAuthConfig(env, host, path.join(dir, 'db', 'instances.db'), dir);

  it('when API_TOKENS lists name:role:token entries, then each becomes a named role with only a digest kept', () => {
    const config = auth({ API_TOKENS: ` ci:operator:${GOOD} , dash:viewer:${GOOD}XYZ ` });
    assert.equal(config.mode, 'tokens');
    if (config.mode !== 'tokens') return;
    assert.deepEqual(config.tokens.map((t) => [t.name, t.role, t.digest.length]), [['ci', 'operator', 32], ['dash', 'viewer', 32]]);
    assert.ok(!JSON.stringify(config).includes(GOOD), 'the token value is not kept in the configuration');
  });

  const badLists: Array<[string, string]> = [
    ['a bad role', `ci:admin:${GOOD}`],
    ['a duplicate name', `ci:operator:${GOOD},ci:viewer:${GOOD}2`],
    ['the same token under two names', `a:operator:${GOOD},b:viewer:${GOOD}`],
    ['an empty token', 'ci:operator:'],
    ['a short token', 'ci:operator:short-secret'],
    ['a token with a space', `ci:operator:${GOOD} x`],
    ['a missing role', `ci${GOOD}`],
    ['a name that looks like an option', `--ci:operator:${GOOD}`],
    ['only commas', ' , ,'],
  ];
  for (const [why, value] of badLists) {
    it(`when API_TOKENS has ${why}, then start-up fails naming API_TOKENS without echoing the token`, () => {
      configError(() => auth({ API_TOKENS: value }), 'API_TOKENS', GOOD);
    });
  }

  it('when both API_TOKENS and API_TOKENS_FILE are set, then start-up fails naming API_TOKENS_FILE', () => {
    configError(() => auth({ API_TOKENS: `ci:operator:${GOOD}`, API_TOKENS_FILE: path.join(dir, 'x') }), 'API_TOKENS_FILE');
  });

  it('when API_TOKENS_FILE cannot be read, then start-up fails naming it', () => {
    configError(() => auth({ API_TOKENS_FILE: path.join(dir, 'missing') }), 'API_TOKENS_FILE');
    configError(() => auth({ API_TOKENS_FILE: dir }), 'API_TOKENS_FILE');
  });

  it('when API_TOKENS_FILE is readable by others, then start-up refuses it; group-readable only warns', () => {
    const file = path.join(dir, 'tokens');
    writeFileSync(file, `# CI\nci:operator:${GOOD}\n\n  # dashboards\ndash:viewer:${GOOD}Q\n`);
    chmodSync(file, 0o644);
    const error = configError(() => auth({ API_TOKENS_FILE: file }), 'API_TOKENS_FILE', GOOD);
    assert.match(error.message, /0644.*chmod 600/);
    chmodSync(file, 0o666);
    configError(() => auth({ API_TOKENS_FILE: file }), 'API_TOKENS_FILE');
    chmodSync(file, 0o640);
    const warned = auth({ API_TOKENS_FILE: file });
    assert.equal(warned.mode === 'tokens' && warned.warning !== undefined, true);
    chmodSync(file, 0o600);
    const ok = auth({ API_TOKENS_FILE: file });
    assert.ok(ok.mode === 'tokens' && ok.warning === undefined && ok.tokens.length === 2);
  });

  it('when a line of API_TOKENS_FILE is bad, then the error names the variable and the line, not the token', () => {
    const file = path.join(dir, 'tokens');
    writeFileSync(file, `ci:operator:${GOOD}\nci:viewer:${GOOD}2\n`, { mode: 0o600 });
    const error = configError(() => auth({ API_TOKENS_FILE: file }), 'API_TOKENS_FILE', GOOD);
    assert.match(error.message, /line 2/);
  });

  it('when AUTH_DISABLED=true and HOST is not loopback, then start-up fails naming AUTH_DISABLED', () => {
    for (const host of ['0.0.0.0', '::', '10.0.0.5', 'example.com', '128.0.0.1']) {
      configError(() => loadConfig({ AUTH_DISABLED: 'true', HOST: host }, dir), 'AUTH_DISABLED');
    }
    for (const host of ['127.0.0.1', '127.1.2.3', '::1', 'localhost']) {
      assert.deepEqual(loadConfig({ AUTH_DISABLED: 'true', HOST: host }, dir).auth, { mode: 'disabled' });
    }
    assert.equal(loadConfig({ AUTH_DISABLED: 'true' }, dir).auth.mode, 'disabled', 'the default HOST is loopback');
    configError(() => loadConfig({ AUTH_DISABLED: 'maybe' }, dir), 'AUTH_DISABLED');
    configError(() => loadConfig({ AUTH_DISABLED: 'true', API_TOKENS: `ci:operator:${GOOD}` }, dir), 'AUTH_DISABLED', GOOD);
  });

  it('when HOST is checked for loopback, then only 127/8, ::1 and localhost count', () => {
    assert.deepEqual(
      ['127.0.0.1', '::1', '[::1]', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1', 'localhost', '0.0.0.0', '::', '::2', '192.168.1.1'].map(isLoopbackHost),
      [true, true, true, true, true, true, false, false, false, false],
    );
  });

  it('when the limits are set, then they are parsed; bad values name their variable', () => {
    const cfg = loadSecurityConfig({ MAX_INSTANCES: '2', RATE_LIMIT_PER_MINUTE: '10', PUBLIC_DOCS: 'true', HTTP_REQUEST_TIMEOUT_MS: '20000' }, { host: '127.0.0.1', databasePath: ':memory:', cwd: dir });
    assert.deepEqual([cfg.maxInstances, cfg.rateLimitPerMinute, cfg.publicDocs, cfg.http.requestTimeoutMs], [2, 10, true, 20_000]);
    const defaults = loadConfig({}, dir);
    assert.deepEqual([defaults.maxInstances, defaults.rateLimitPerMinute, defaults.publicDocs], [5, 60, false]);
    assert.deepEqual(defaults.auth, { mode: 'generate', file: path.join(dir, 'data', 'api-token') });
    for (const [name, value] of [['MAX_INSTANCES', '-1'], ['RATE_LIMIT_PER_MINUTE', 'lots'], ['PUBLIC_DOCS', 'perhaps'], ['HTTP_HEADERS_TIMEOUT_MS', '999999']] as const) {
      configError(() => loadConfig({ [name]: value }, dir), name);
    }
  });

  it('when no tokens are configured, then resolveAuth generates a 0600 operator token once and logs only its path', () => {
    const file = path.join(dir, 'nested', 'api-token');
    const first = capturedLogger();
    const setup = resolveAuth({ mode: 'generate', file }, first.logger);
    assert.equal(setup.mode, 'tokens');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const token = readGeneratedTokenValue(file) as string;
    assert.ok(token.length >= 40);
    const line = first.lines().find((l) => l.message === 'generated an operator API token');
    assert.equal(line?.file, file);
    assert.ok(!first.text().includes(token));

    const second = capturedLogger();
    resolveAuth({ mode: 'generate', file }, second.logger);
    assert.equal(readGeneratedTokenValue(file), token, 'reused, not regenerated');
    assert.ok(second.lines().some((l) => l.message === 'using the generated operator API token' && l.file === file));
    assert.ok(!second.text().includes(token));
  });
});

/** Runs the real server entry point; resolves with its output once it logs "listening". */
async function startProcess(env: Record<string, string>): Promise<{ child: ChildProcess; url: string; output: () => string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'app', 'server.ts')], {
    cwd: repoRoot,
    env: { ...process.env, API_TOKENS: '', API_TOKENS_FILE: '', AUTH_DISABLED: '', PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString('utf8')));
  child.stderr?.on('data', (c: Buffer) => (out += c.toString('utf8')));
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const match = /"url":"(http:\/\/[^"]+)"/.exec(out);
    if (match?.[1]) return { child, url: match[1], output: () => out };
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGKILL');
  throw new Error(`the server did not start:\n${out}`);
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

describe('the server process with no tokens configured', function () {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'ec2-creator-sec-server-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('when it starts twice, then the first start creates data/api-token (0600), the second reuses it, and neither logs the token', async () => {
    const env = { DATABASE_URL: path.join(dir, 'data', 'instances.db') };
    const file = path.join(dir, 'data', 'api-token');

    const first = await startProcess(env);
    let token: string;
    try {
      assert.equal(statSync(file).mode & 0o777, 0o600);
      token = readGeneratedTokenValue(file) as string;
      assert.ok(token);
      const refused = await fetch(`${first.url}/instances`);
      assert.equal(refused.status, 401);
      assert.equal(refused.headers.get('www-authenticate'), 'Bearer realm="ec2-creator"');
      const allowed = await fetch(`${first.url}/instances`, { headers: { Authorization: `Bearer ${token}` } });
      assert.equal(allowed.status, 200);
      assert.equal(allowed.headers.get('x-content-type-options'), 'nosniff', 'helmet headers');
      assert.equal((await fetch(`${first.url}/health`)).status, 200);
    } finally {
      await stopProcess(first.child);
    }
    assert.match(first.output(), /generated an operator API token/);
    assert.ok(first.output().includes(file), 'the log says where the token is');
    assert.ok(!first.output().includes(token), 'the log never shows the token');
    const content = readFileSync(file, 'utf8');

    const second = await startProcess(env);
    try {
      const allowed = await fetch(`${second.url}/instances`, { headers: { Authorization: `Bearer ${token}` } });
      assert.equal(allowed.status, 200);
    } finally {
      await stopProcess(second.child);
    }
    assert.equal(readFileSync(file, 'utf8'), content, 'reused unchanged');
    assert.match(second.output(), /using the generated operator API token/);
    assert.ok(!second.output().includes(token));
  });

  it('when AUTH_DISABLED=true with HOST=0.0.0.0, then the process refuses to start, naming AUTH_DISABLED', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'app', 'server.ts')], {
      cwd: repoRoot,
      env: { ...process.env, AUTH_DISABLED: 'true', HOST: '0.0.0.0', PORT: '0', DATABASE_URL: path.join(dir, 'x.db') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr?.on('data', (c: Buffer) => (err += c.toString('utf8')));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.equal(code, 1);
    assert.match(err, /invalid configuration: AUTH_DISABLED: .*loopback/);
  });
});
