/**
 * A test run that is killed, even by SIGKILL, leaves no emulator, server or folder behind: moto dies
 * with the process that started it, and a watcher started apart from the run kills whatever still
 * carries the run's variable once the run is gone.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { until } from '../support/lifecycle.js';
import { builtRepo, ensureBuilt, PREBUILT_REPO_VARIABLE, repoRoot } from '../support/ops-manager.js';

const RUN_VARIABLE = 'EC2_CREATOR_TEST_RUN_DIR';

function processesCarrying(variable: string, value: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0').includes(`${variable}=${value}`)) found.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

async function answers(endpoint: string): Promise<boolean> {
  try {
    await fetch(`${endpoint}/moto-api/`);
    return true;
  } catch {
    return false;
  }
}

describe('a killed test run', function () {
  let dir: string;
  before(async () => {
    await ensureBuilt();
  });

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'ec2-creator-killed-run-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('when the mocha process is killed with SIGKILL, then its emulator, its server and its folder are gone', async () => {
    const marker = path.join(dir, 'held.json');
    // A run of its own: none of this run's variables, so it makes its own folder, emulator and watcher.
    const env = Object.fromEntries(Object.entries(process.env).filter(([name]) =>
      !name.startsWith('EC2_CREATOR_TEST_') && name !== 'AWS_ENDPOINT_URL'));
    const child = spawn(
      process.execPath,
      [path.join(repoRoot, 'node_modules', 'mocha', 'bin', 'mocha.js'), 'test/fixtures/killed-run/holds.spec.ts'],
      { cwd: repoRoot, env: { ...env, HOLD_MARKER: marker, [PREBUILT_REPO_VARIABLE]: builtRepo }, stdio: 'ignore', detached: true },
    );
    try {
      await until('the inner run holds a server and the emulator', () => existsSync(marker), 120_000);
      const held = JSON.parse(readFileSync(marker, 'utf8')) as { mocha: number; server: number; moto: string; runDir: string };
      assert.ok(processesCarrying(RUN_VARIABLE, held.runDir).includes(held.server));
      assert.equal(await answers(held.moto), true);

      process.kill(held.mocha, 'SIGKILL');

      await until('nothing of the killed run is left', () => processesCarrying(RUN_VARIABLE, held.runDir).length === 0, 60_000);
      await until('its folder is gone', () => !existsSync(held.runDir), 60_000);
      await until('its emulator stopped answering', async () => !(await answers(held.moto)), 60_000);
    } finally {
      try {
        process.kill(-(child.pid as number), 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
});
