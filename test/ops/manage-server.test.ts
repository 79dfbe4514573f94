import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync,
} from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freeLoopbackPort } from '../../scripts/lib/ports.js';
import {
  createServerSandbox, emulateJenkinsProcessKiller, ensureBuilt, health, isAlive, manageScript, run, serverEntry,
  serversOnPort, waitUntil, type ServerSandbox,
} from '../support/ops-manager.js';

/** An unrelated long-lived process, to stand for a PID the kernel handed to someone else. */
function spawnSleeper(env: Record<string, string> = {}): ChildProcess {
  return spawn('sleep', ['300'], { stdio: 'ignore', env: { ...process.env, ...env } });
}

function stopSleeper(child: ChildProcess): void {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

async function deadPid(): Promise<number> {
  const child = spawn('true', [], { stdio: 'ignore' });
  await new Promise((resolve) => child.once('exit', resolve));
  assert.ok(child.pid);
  return child.pid;
}

/** An HTTP server on 127.0.0.1:port that answers every request like a healthy ec2-creator. */
async function startImpostor(port: number): Promise<HttpServer> {
  const server = createHttpServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end('{"status":"ok"}');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  return server;
}

async function stopImpostor(server: HttpServer): Promise<void> {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
}

/** A shell word for `script -c`: single-quoted. */
function shellWord(word: string): string {
  return `'${word.replaceAll("'", "'\\''")}'`;
}

/**
 * Runs the manager with a terminal of `rows` rows as its stdin, stdout and stderr (script(1) makes the
 * pseudo-terminal), as a person at a shell runs it; the terminal's CRLF line ends come back as LF.
 */
async function manageInTerminal(sandbox: ServerSandbox, script: string, args: string[], rows: number) {
  const command = `stty rows ${rows} cols 160; exec bash ${[script, ...args].map(shellWord).join(' ')}`;
  const result = await run('script', ['-qec', command, '/dev/null'], sandbox.env);
  return { ...result, stdout: result.stdout.replaceAll('\r\n', '\n') };
}

describe('scripts/manage_server.sh', function () {
  this.timeout(120_000);
  let sandbox: ServerSandbox;

  before(async function () {
    this.timeout(300_000);
    await ensureBuilt();
  });

  beforeEach(async () => {
    sandbox = await createServerSandbox();
  });

  afterEach(async () => {
    await sandbox.cleanup();
  });

  describe('Jenkins survival', () => {
    const buildId = `jenkins-build-123-${randomBytes(4).toString('hex')}`;
    const cookie = randomBytes(16).toString('hex');
    const buildEnv = { BUILD_ID: buildId, JENKINS_NODE_COOKIE: cookie };
    let leftover: ChildProcess | undefined;

    afterEach(() => {
      if (leftover) stopSleeper(leftover);
      leftover = undefined;
    });

    it('when a build starts the server and Jenkins kills the build\'s processes, then the server still answers', async () => {
      const started = await sandbox.manage(['start'], buildEnv);
      assert.equal(started.exitCode, 0, started.output);
      const pid = sandbox.pid();
      assert.ok(pid !== undefined && isAlive(pid), 'the PID file names a live server');
      // Something else the build left behind, carrying the build's variables: the killer must find it.
      leftover = spawnSleeper(buildEnv);

      const killed = await emulateJenkinsProcessKiller(buildId, cookie);

      assert.ok(leftover.pid !== undefined && killed.includes(leftover.pid), `the killer found the leftover: ${killed.join(',')}`);
      assert.ok(!killed.includes(pid), 'the killer spared the server');
      assert.ok(await waitUntil(() => !isAlive(leftover!.pid!)), 'the leftover died');
      assert.equal((await health(sandbox.baseUrl))?.status, 200);
      const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      assert.ok(environ.includes('BUILD_ID=dontKillMe'));
      assert.ok(environ.includes('JENKINS_NODE_COOKIE=dontKillMe'));
      assert.equal((await sandbox.manage(['status'])).exitCode, 0);
    });

    it('when the server is started without the Jenkins override, then the emulated killer kills it (control)', async () => {
      const started = await sandbox.manage(['start'], { ...buildEnv, MANAGE_SERVER_JENKINS_OVERRIDE: 'false' });
      assert.equal(started.exitCode, 0, started.output);
      const pid = sandbox.pid();
      assert.ok(pid !== undefined && isAlive(pid));

      const killed = await emulateJenkinsProcessKiller(buildId, cookie);

      assert.ok(killed.includes(pid), 'the killer found the server by its environment');
      assert.ok(await waitUntil(() => !isAlive(pid)), 'the server died');
      assert.equal(await health(sandbox.baseUrl), undefined);
      const status = await sandbox.manage(['status']);
      assert.equal(status.exitCode, 1, status.output);
      assert.match(status.stdout, /dead/);
    });
  });

  describe('status', () => {
    it('when nothing was started, then status exits 3 and says not running', async () => {
      const status = await sandbox.manage(['status']);
      assert.equal(status.exitCode, 3, status.output);
      assert.match(status.stdout, /not running/);
    });

    it('when the server runs, then status exits 0 and prints the PID, the uptime and the health answer', async () => {
      assert.equal((await sandbox.manage(['start'])).exitCode, 0);
      const status = await sandbox.manage(['status']);
      assert.equal(status.exitCode, 0, status.output);
      assert.match(status.stdout, new RegExp(`pid:\\s+${sandbox.pid()}\\b`));
      assert.match(status.stdout, /uptime:\s+\d+d \d\d:\d\d:\d\d/);
      assert.match(status.stdout, /health:\s+\{"status":"ok"\}/);
    });
  });

  describe('start and stop', () => {
    it('when start succeeds, then the server is detached in its own session, reads /dev/null and logs to LOG_DIR', async () => {
      const started = await sandbox.manage(['start']);
      assert.equal(started.exitCode, 0, started.output);
      const pid = sandbox.pid()!;
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      assert.equal(Number(fields[3]), pid, 'session id is the server\'s own PID (setsid)');
      assert.equal(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[1], serverEntry);
      const { stdout: stdin } = await run('readlink', [`/proc/${pid}/fd/0`], {});
      assert.equal(stdin.trim(), '/dev/null');
      assert.match(readFileSync(path.join(sandbox.logDir, 'ec2-creator.log'), 'utf8'), /listening/);
      const logs = await sandbox.manage(['logs', '--lines', '3']);
      assert.equal(logs.exitCode, 0);
      assert.ok(logs.stdout.trim().split('\n').length <= 3);
    });

    it('when start runs twice, then both succeed and one server runs', async () => {
      const first = await sandbox.manage(['start']);
      const pid = sandbox.pid();
      const second = await sandbox.manage(['start']);
      assert.equal(first.exitCode, 0, first.output);
      assert.equal(second.exitCode, 0, second.output);
      assert.match(second.stdout, /already running/);
      assert.equal(sandbox.pid(), pid);
      assert.deepEqual(serversOnPort(sandbox.port), [pid]);
    });

    it('when stop runs with no server, then it succeeds, and again after a real stop', async () => {
      const idle = await sandbox.manage(['stop']);
      assert.equal(idle.exitCode, 0, idle.output);
      assert.equal((await sandbox.manage(['start'])).exitCode, 0);
      const pid = sandbox.pid()!;
      const stopped = await sandbox.manage(['stop']);
      assert.equal(stopped.exitCode, 0, stopped.output);
      assert.ok(!isAlive(pid));
      assert.ok(!existsSync(sandbox.pidFile), 'the PID file is removed');
      assert.equal((await sandbox.manage(['stop'])).exitCode, 0);
      assert.equal((await sandbox.manage(['status'])).exitCode, 3);
    });

    it('when restart runs, then a new healthy server replaces the old one', async () => {
      assert.equal((await sandbox.manage(['start'])).exitCode, 0);
      const before = sandbox.pid()!;
      const restarted = await sandbox.manage(['restart']);
      assert.equal(restarted.exitCode, 0, restarted.output);
      const after = sandbox.pid()!;
      assert.notEqual(after, before);
      assert.ok(!isAlive(before));
      assert.equal((await health(sandbox.baseUrl))?.status, 200);
      assert.deepEqual(serversOnPort(sandbox.port), [after]);
    });

    it('when the port is taken, then start fails non-zero, prints the log tail and leaves nothing running', async () => {
      // Holds the port; connections are dropped at once so that closing it never waits on a client.
      const blocker: Server = createServer((socket) => socket.destroy());
      await new Promise<void>((resolve) => blocker.listen(sandbox.port, '127.0.0.1', resolve));
      try {
        const started = await sandbox.manage(['start']);
        assert.notEqual(started.exitCode, 0, started.output);
        assert.match(started.stderr, /last \d+ lines of .*ec2-creator\.log/);
        assert.match(started.stderr, /EADDRINUSE|already in use/, 'the log tail says why');
        assert.ok(!existsSync(sandbox.pidFile), 'no PID file is left');
        assert.deepEqual(serversOnPort(sandbox.port), []);
      } finally {
        await new Promise((resolve) => blocker.close(resolve));
      }
    });
  });

  describe('another server on the port', () => {
    let impostor: HttpServer | undefined;
    afterEach(async () => {
      if (impostor) await stopImpostor(impostor);
      impostor = undefined;
    });

    it('when another server already answers /health on the port, then start fails, says so and leaves nothing running', async () => {
      impostor = await startImpostor(sandbox.port);

      const started = await sandbox.manage(['start']);

      assert.equal(started.exitCode, 1, started.output);
      assert.doesNotMatch(started.stdout, /is running/);
      assert.match(started.stderr, /another process answers http:\/\/127\.0\.0\.1:\d+\/health/);
      assert.ok(!existsSync(sandbox.pidFile), 'no PID file is left');
      assert.deepEqual(serversOnPort(sandbox.port), []);
      assert.equal((await sandbox.manage(['status'])).exitCode, 3);
    });
  });

  describe('the recorded address', () => {
    it('when status and stop run with another HOST and PORT in the environment, then they use the address the server was started with', async () => {
      assert.equal((await sandbox.manage(['start'])).exitCode, 0);
      const pid = sandbox.pid()!;
      const elsewhere = { PORT: String(await freeLoopbackPort()), HOST: 'localhost' };

      const status = await sandbox.manage(['status'], elsewhere);
      assert.equal(status.exitCode, 0, status.output);
      assert.match(status.stdout, new RegExp(`url:\\s+http://127\\.0\\.0\\.1:${sandbox.port}\\b`));
      assert.match(status.stdout, /health:\s+\{"status":"ok"\}/);

      const stopped = await sandbox.manage(['stop'], elsewhere);
      assert.equal(stopped.exitCode, 0, stopped.output);
      assert.match(stopped.stdout, new RegExp(`stopping ec2-creator \\(pid ${pid}, http://127\\.0\\.0\\.1:${sandbox.port}\\)`));
      assert.ok(!isAlive(pid));
      assert.equal(await health(sandbox.baseUrl), undefined);
      assert.deepEqual(readdirSync(path.dirname(sandbox.pidFile)).filter((name) => !name.endsWith('.lock')), [],
        'the PID file and what was recorded beside it are removed');
    });
  });

  describe('stale and reused PIDs', () => {
    let sleeper: ChildProcess | undefined;
    afterEach(() => {
      if (sleeper) stopSleeper(sleeper);
      sleeper = undefined;
    });

    it('when the PID file names a dead process, then status exits 1 and start removes the file and starts', async () => {
      const gone = await deadPid();
      mkdirSync(path.dirname(sandbox.pidFile), { recursive: true });
      writeFileSync(sandbox.pidFile, `${gone}\n`);
      const status = await sandbox.manage(['status']);
      assert.equal(status.exitCode, 1, status.output);
      assert.match(status.stdout, /dead but the PID file/);

      const started = await sandbox.manage(['start']);
      assert.equal(started.exitCode, 0, started.output);
      assert.match(started.stdout, /removing stale PID file/);
      assert.notEqual(sandbox.pid(), gone);
      assert.equal((await health(sandbox.baseUrl))?.status, 200);
    });

    it('when the PID file holds an unrelated live process, then it is treated as stale and never signalled', async () => {
      sleeper = spawnSleeper();
      const foreign = sleeper.pid!;
      mkdirSync(path.dirname(sandbox.pidFile), { recursive: true });
      writeFileSync(sandbox.pidFile, `${foreign}\n`);

      const status = await sandbox.manage(['status']);
      assert.equal(status.exitCode, 1, status.output);
      assert.match(status.stdout, /not ec2-creator/);
      const stopped = await sandbox.manage(['stop']);
      assert.equal(stopped.exitCode, 0, stopped.output);
      assert.ok(isAlive(foreign), 'stop left the foreign process alone');

      writeFileSync(sandbox.pidFile, `${foreign}\n`);
      const started = await sandbox.manage(['start']);
      assert.equal(started.exitCode, 0, started.output);
      assert.match(started.stdout, /removing stale PID file/);
      assert.notEqual(sandbox.pid(), foreign);
      assert.ok(isAlive(foreign), 'start left the foreign process alone');
      assert.equal(sleeper.signalCode, null);
    });

    it('when the PID file holds no number, then status exits 1 and stop cleans it up', async () => {
      mkdirSync(path.dirname(sandbox.pidFile), { recursive: true });
      writeFileSync(sandbox.pidFile, 'not a pid\n');
      assert.equal((await sandbox.manage(['status'])).exitCode, 1);
      assert.equal((await sandbox.manage(['stop'])).exitCode, 0);
      assert.ok(!existsSync(sandbox.pidFile));
    });
  });

  describe('usage', () => {
    it('when asked for help, then it exits 0 and documents the LSB exit codes and the variables', async () => {
      const help = await run('bash', [manageScript, '--help'], {});
      assert.equal(help.exitCode, 0);
      assert.match(help.stdout, /status: 0 running, 1 dead but the PID file exists, 3 not running/);
      for (const name of ['PORT', 'HOST', 'PID_FILE', 'LOG_DIR', 'START_TIMEOUT_S', 'STOP_TIMEOUT_S', 'LOG_LINES']) {
        assert.match(help.stdout, new RegExp(`\\b${name}\\b`));
      }
    });

    it('when the action is unknown or an option value is bad, then it exits 2 or 6 without starting anything', async () => {
      const unknown = await sandbox.manage(['launch']);
      assert.equal(unknown.exitCode, 2, unknown.output);
      const badTimeout = await sandbox.manage(['start'], { START_TIMEOUT_S: 'soon' });
      assert.equal(badTimeout.exitCode, 6, badTimeout.output);
      assert.match(badTimeout.stderr, /START_TIMEOUT_S/);
      assert.ok(!existsSync(sandbox.pidFile));
    });
  });
});

/** A copy of the manager in a throw-away repository, with a stand-in for dist/app/server.js. */
describe('scripts/manage_server.sh with a stand-in server', function () {
  this.timeout(60_000);
  let root: string;
  let sandbox: ServerSandbox | undefined;

  beforeEach(() => {
    root = mkdtempSync(path.join(tmpdir(), 'ec2-creator-fake-repo-'));
    mkdirSync(path.join(root, 'scripts'));
    copyFileSync(manageScript, path.join(root, 'scripts', 'manage_server.sh'));
    chmodSync(path.join(root, 'scripts', 'manage_server.sh'), 0o755);
    mkdirSync(path.join(root, 'aws_cli_bash_scripts', 'lib'), { recursive: true });
    copyFileSync(path.join(path.dirname(manageScript), '..', 'aws_cli_bash_scripts', 'lib', 'options.sh'), path.join(root, 'aws_cli_bash_scripts', 'lib', 'options.sh'));
  });

  afterEach(async () => {
    await sandbox?.cleanup();
    sandbox = undefined;
    rmSync(root, { recursive: true, force: true });
  });

  it('when the server is not built, then start exits 5 and says to build it', async () => {
    sandbox = await createServerSandbox({}, path.join(root, 'scripts', 'manage_server.sh'));
    const started = await sandbox.manage(['start']);
    assert.equal(started.exitCode, 5, started.output);
    assert.match(started.stderr, /npm run build/);
    assert.equal(sandbox.pid(), undefined);
  });

  it('when the server ignores SIGTERM, then stop sends SIGKILL after STOP_TIMEOUT_S', async () => {
    mkdirSync(path.join(root, 'dist', 'app'), { recursive: true });
    writeFileSync(
      path.join(root, 'dist', 'app', 'server.js'),
      `const http = require('node:http');
       process.on('SIGTERM', () => console.log('ignoring SIGTERM'));
       http.createServer((req, res) => res.end('{"status":"ok"}')).listen(Number(process.env.PORT), process.env.HOST);`,
    );
    writeFileSync(path.join(root, 'package.json'), '{"type":"commonjs"}');
    sandbox = await createServerSandbox({ STOP_TIMEOUT_S: '1' }, path.join(root, 'scripts', 'manage_server.sh'));
    assert.equal((await sandbox.manage(['start'])).exitCode, 0);
    const pid = sandbox.pid()!;
    assert.ok(isAlive(pid));

    const stopped = await sandbox.manage(['stop']);

    assert.equal(stopped.exitCode, 0, stopped.output);
    assert.match(stopped.stderr, /SIGKILL/);
    assert.ok(!isAlive(pid));
    assert.match(readFileSync(path.join(sandbox.logDir, 'ec2-creator.log'), 'utf8'), /ignoring SIGTERM/);
    assert.ok(!serverEntry.startsWith(root), 'the real server was not involved');
  });

  /** dist/app/server.js in the throw-away repository: `code` runs as CommonJS. */
  function standIn(code: string): void {
    mkdirSync(path.join(root, 'dist', 'app'), { recursive: true });
    writeFileSync(path.join(root, 'dist', 'app', 'server.js'), code);
    writeFileSync(path.join(root, 'package.json'), '{"type":"commonjs"}');
  }

  it('when the launched server stays alive but never listens while another process answers /health, then start fails and stops it', async () => {
    // Alive, and logs that it is waiting, but never binds: the answers on the port are someone else's.
    standIn(`console.log('stand-in waiting'); setInterval(() => {}, 1000);`);
    sandbox = await createServerSandbox({ START_TIMEOUT_S: '2', STOP_TIMEOUT_S: '5' }, path.join(root, 'scripts', 'manage_server.sh'));
    const impostor = await startImpostor(sandbox.port);
    try {
      const started = await sandbox.manage(['start']);

      assert.equal(started.exitCode, 1, started.output);
      assert.doesNotMatch(started.stdout, /is running/);
      assert.match(started.stderr, /another process answers/);
      assert.ok(!existsSync(sandbox.pidFile), 'no PID file is left');
      const log = readFileSync(path.join(sandbox.logDir, 'ec2-creator.log'), 'utf8');
      assert.match(log, /stand-in waiting/, 'the stand-in did run');
    } finally {
      await stopImpostor(impostor);
    }
  });

  describe('log lines', () => {
    const script = () => path.join(root, 'scripts', 'manage_server.sh');
    beforeEach(() => {
      // Prints 100 numbered lines and dies: every start fails and shows the tail of the log.
      standIn(`for (let i = 1; i <= 100; i += 1) console.log('server line ' + i); process.exit(1);`);
    });

    function linesAfter(output: string, header: RegExp): string[] {
      const lines = output.split('\n');
      const at = lines.findIndex((line) => header.test(line));
      assert.ok(at >= 0, `no line matches ${header}:\n${output}`);
      return lines.slice(at + 1).filter((line) => line !== '');
    }

    it('when start -n 3 fails in a terminal, then it shows the last 3 log lines, whatever the terminal height', async () => {
      sandbox = await createServerSandbox({}, script());
      const started = await manageInTerminal(sandbox, script(), ['start', '-n', '3'], 40);

      assert.equal(started.exitCode, 1, started.output);
      assert.match(started.stdout, /last 3 lines of .*ec2-creator\.log/);
      assert.deepEqual(linesAfter(started.stdout, /last \d+ lines of/), ['server line 98', 'server line 99', 'server line 100']);
    });

    it('when LOG_LINES is set, then logs and a failed start show that many lines', async () => {
      sandbox = await createServerSandbox({ LOG_LINES: '2' }, script());
      const started = await sandbox.manage(['start']);
      assert.equal(started.exitCode, 1, started.output);
      assert.deepEqual(linesAfter(started.stderr, /last \d+ lines of/), ['server line 99', 'server line 100']);

      const logs = await sandbox.manage(['logs']);
      assert.equal(logs.exitCode, 0, logs.output);
      assert.deepEqual(logs.stdout.trim().split('\n'), ['server line 99', 'server line 100']);
    });

    it('when only LINES, the former name, is set, then logs still shows that many lines', async () => {
      sandbox = await createServerSandbox({}, script());
      assert.equal((await sandbox.manage(['start'])).exitCode, 1);

      const logs = await sandbox.manage(['logs'], { LINES: '2', LOG_LINES: undefined });

      assert.equal(logs.exitCode, 0, logs.output);
      assert.deepEqual(logs.stdout.trim().split('\n'), ['server line 99', 'server line 100']);
    });
  });
});
