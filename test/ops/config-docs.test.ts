/**
 * The configuration's one description (app/config-docs.ts) against what the code reads and against the
 * two files written from it: README.md's table and .env.example.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseDotenv } from 'dotenv';
import { execa } from 'execa';
import ts from 'typescript';
import { loadConfig } from '../../app/config.js';
import { CONFIG_DOCS } from '../../app/config-docs.js';
import { SECRET_ENV_VARIABLES } from '../../app/redact.js';
import { ENV_EXAMPLE, README, renderEnvExample, staleFiles } from '../../scripts/docs-config.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const GENERATOR = path.join(repoRoot, 'scripts', 'docs-config.ts');
/** Every module that reads configuration variables (loadConfig and what it calls). */
const CONFIG_SOURCES = ['app/config.ts', 'app/notify/config.ts', 'app/auth/config.ts', 'app/guardrails/config.ts', 'app/env.ts'];
const VARIABLE_NAME = /^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*$/;

const documented = new Set(CONFIG_DOCS.flatMap((row) => row.variables.map((variable) => variable.name)));

/**
 * The variable names a module mentions in code (string literals such as readVariable(env, 'PORT'), and
 * env.NAME): comments and messages are not code, so a name that is only talked about does not count.
 */
function variablesNamedIn(file: string): Set<string> {
  const source = ts.createSourceFile(file, readFileSync(path.join(repoRoot, file), 'utf8'), ts.ScriptTarget.Latest, true);
  const names = new Set<string>();
  const visit = (node: ts.Node): void => {
    if ((ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) && VARIABLE_NAME.test(node.text)) {
      names.add(node.text);
    } else if (ts.isPropertyAccessExpression(node) && /(?:^|\.)env$/.test(node.expression.getText(source)) && VARIABLE_NAME.test(node.name.text)) {
      names.add(node.name.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return names;
}

/** The names loadConfig looks up in `env`, whatever they are spelt from. */
function variablesReadBy(env: Record<string, string>, cwd: string): Set<string> {
  const read = new Set<string>();
  const recording = new Proxy(env, {
    get(target, name) {
      if (typeof name === 'string') read.add(name);
      return target[name as string];
    },
  });
  loadConfig(recording, cwd);
  return read;
}

async function checkIn(root: string): Promise<{ exitCode: number; stderr: string }> {
  const result = await execa(process.execPath, ['--import', 'tsx', GENERATOR, '--check', '--root', root], {
    cwd: repoRoot, reject: false, stdin: 'ignore',
  });
  return { exitCode: result.exitCode ?? -1, stderr: String(result.stderr) };
}

describe('configuration docs (app/config-docs.ts → README.md table, .env.example)', function () {
  this.timeout(60_000);
  let dir: string;

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'ec2-creator-config-docs-'));
  });

  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('when the check runs on the repository, then README.md and .env.example are up to date and it exits 0', async () => {
    assert.deepEqual(staleFiles(repoRoot), []);
    const { exitCode, stderr } = await checkIn(repoRoot);
    assert.equal(exitCode, 0, stderr);
  });

  const edits: Array<{ what: string; file: string; from: RegExp; to: string }> = [
    { what: "a README row's default is changed", file: README, from: /^\| `PORT` \| `8000` \|/m, to: '| `PORT` | `8080` |' },
    { what: 'a README row is removed', file: README, from: /^\| `SMTP_FROM` \|.*\n/m, to: '' },
    { what: 'a README row is added', file: README, from: /^(\| `LOG_LEVEL` \|.*\n)/m, to: '$1| `LOG_FORMAT` | `json` | Log line format |\n' },
    { what: "an .env.example default is changed", file: ENV_EXAMPLE, from: /^# MAX_INSTANCES=5$/m, to: '# MAX_INSTANCES=50' },
    { what: 'an .env.example meaning is changed', file: ENV_EXAMPLE, from: /^# HTTP port\.$/m, to: '# The HTTP port.' },
  ];
  for (const { what, file, from, to } of edits) {
    it(`when ${what}, then the check exits 1 naming ${file} only`, async () => {
      for (const name of [README, ENV_EXAMPLE]) copyFileSync(path.join(repoRoot, name), path.join(dir, name));
      const original = readFileSync(path.join(dir, file), 'utf8');
      const edited = original.replace(from, to);
      assert.notEqual(edited, original, `the edit applies to ${file}`);
      writeFileSync(path.join(dir, file), edited);

      const { exitCode, stderr } = await checkIn(dir);

      assert.equal(exitCode, 1, stderr);
      assert.match(stderr, new RegExp(`${file.replace('.', '\\.')} is out of date`));
      const other = file === README ? ENV_EXAMPLE : README;
      assert.doesNotMatch(stderr, new RegExp(`${other.replace('.', '\\.')} is out of date`));
    });
  }

  it('when a file is missing or README.md has no markers, then the check names it', () => {
    writeFileSync(path.join(dir, README), '# no configuration section\n');
    assert.deepEqual(staleFiles(dir).map((stale) => stale.file), [README, ENV_EXAMPLE]);
  });

  it('every variable the configuration modules name in code is documented, and every documented one is named there', () => {
    const named = new Set(CONFIG_SOURCES.flatMap((file) => [...variablesNamedIn(file)]));
    assert.ok(named.has('PORT') && named.has('SMTP_PASSWORD') && named.has('HTTP_KEEP_ALIVE_TIMEOUT_MS'), 'the scan finds names');
    assert.deepEqual([...named].filter((name) => !documented.has(name)).sort(), [], 'read but not in app/config-docs.ts');
    assert.deepEqual([...documented].filter((name) => !named.has(name)).sort(), [], 'in app/config-docs.ts but read nowhere');
  });

  it('every variable loadConfig looks up, with email, tokens or authentication off, is documented', () => {
    const environments: Array<Record<string, string>> = [
      {},
      { AUTH_DISABLED: 'true' },
      { API_TOKENS: 'ci:operator:0123456789abcdef0123456789abcdef' },
      { SMTP_HOST: 'smtp.example.com', NOTIFICATION_EMAIL: 'ops@example.com', SMTP_USER: 'u', SMTP_PASSWORD: 'p' },
    ];
    const read = new Set(environments.flatMap((env) => [...variablesReadBy(env, dir)]));
    assert.ok(read.size > 30, `loadConfig read ${read.size} names`);
    assert.deepEqual([...read].filter((name) => !documented.has(name)).sort(), []);
  });

  it('.env.example sets nothing as it is, and uncommented it makes the same configuration as an empty environment', () => {
    const text = readFileSync(path.join(repoRoot, ENV_EXAMPLE), 'utf8');
    assert.equal(text, renderEnvExample());
    assert.deepEqual(parseDotenv(text), {}, 'every line is a comment');

    const uncommented = parseDotenv(text.replace(/^# (?=[A-Z][A-Z0-9_]*=)/gm, ''));
    assert.deepEqual(Object.keys(uncommented).sort(), [...documented].sort(), 'one line for each documented variable');
    assert.deepEqual(loadConfig(uncommented, dir), loadConfig({}, dir));
  });

  it('the secrets app/redact.ts masks are marked secret and left empty, with no example', () => {
    const secrets = CONFIG_DOCS.flatMap((row) => row.variables).filter((variable) => variable.secret);
    const masked = SECRET_ENV_VARIABLES.filter((name) => documented.has(name));
    assert.deepEqual(secrets.map((variable) => variable.name).sort(), [...masked].sort());
    for (const variable of secrets) {
      assert.equal(variable.value, '', variable.name);
      assert.equal(variable.example, undefined, variable.name);
    }
  });

  it('the server reads .env and never .env.example', async () => {
    // PORT is the first variable loadConfig reads: a bad one in the file the server loads stops start-up
    // naming PORT. Otherwise start-up stops at the missing SCRIPTS_DIR, before anything listens.
    const server = path.join(repoRoot, 'app', 'server.ts');
    const env: NodeJS.ProcessEnv = { ...process.env, SCRIPTS_DIR: path.join(dir, 'no-such-dir'), DATABASE_URL: path.join(dir, 'instances.db') };
    for (const name of Object.keys(env)) {
      if (name === 'PORT' || name.startsWith('DOTENV_')) delete env[name];
    }
    const start = () => execa(process.execPath, ['--import', import.meta.resolve('tsx'), server], {
      cwd: dir, env, extendEnv: false, reject: false, stdin: 'ignore', timeout: 30_000,
    });

    writeFileSync(path.join(dir, ENV_EXAMPLE), 'PORT=not-a-port\n');
    const withExample = await start();
    assert.equal(withExample.exitCode, 1, String(withExample.stderr));
    assert.match(String(withExample.stderr), /invalid configuration: SCRIPTS_DIR/);

    writeFileSync(path.join(dir, '.env'), 'PORT=not-a-port\n');
    const withEnv = await start();
    assert.equal(withEnv.exitCode, 1, String(withEnv.stderr));
    assert.match(String(withEnv.stderr), /invalid configuration: PORT/);
  });
});
