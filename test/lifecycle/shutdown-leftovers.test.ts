/**
 * Shutdown leaves nothing behind: when a launch outlives SHUTDOWN_TIMEOUT_MS its script is killed, and the
 * follow-up the launch would make (looking for its instance by client token with list_instances.sh) must not
 * start a new script that outlives the server. A fake aws holds run-instances at a gate and makes any
 * describe-instances hang (ignoring SIGTERM), so a leftover would stay; /proc shows what remains.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { resetMoto } from '../support/global-fixture.js';
import { UBUNTU_X86_AMI, allEc2Instances, createKeyPair } from '../support/ec2-reader.js';
import { getJson, killGroup, liveMembersOfGroup, markers, until } from '../support/lifecycle.js';
import { startServerProcess, type ServerProcess } from '../support/server-process.js';
import { fakeAwsEnv } from '../support/fake-aws.js';

/** Live processes whose environment holds `entry` (NAME=value): what this test's server started. */
function processesWithEnvironment(entry: string): number[] {
  const found: number[] = [];
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
      if (readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(entry)) found.push(Number(pid));
    } catch {
      // ended while we looked, or not ours to read
    }
  }
  return found;
}

describe('shutdown leaves no script behind', function () {
  this.timeout(120_000);
  let dir: string;
  let gate: string;
  let hang: string;
  let server: ServerProcess | undefined;

  beforeEach(async () => {
    await resetMoto();
    await createKeyPair();
    dir = mkdtempSync(path.join(tmpdir(), 'ec2-creator-leftovers-'));
    gate = path.join(dir, 'gate');
    hang = path.join(dir, 'hang');
    mkdirSync(gate);
    mkdirSync(hang);
  });
  afterEach(() => {
    writeFileSync(path.join(gate, 'release'), '');
    server?.child.kill('SIGKILL');
    server = undefined;
    for (const marker of [...markers(gate, 'entered'), ...markers(hang, 'hang')]) killGroup(Number(marker.text.split(' ')[0]));
    rmSync(dir, { recursive: true, force: true });
  });

  it('when a launch outlives SHUTDOWN_TIMEOUT_MS, then the server exits 0, the operation is interrupted, and no process it started remains', async () => {
    const database = path.join(dir, 'instances.db');
    server = await startServerProcess({
      DATABASE_URL: database,
      SHUTDOWN_TIMEOUT_MS: '1000',
      ...fakeAwsEnv({
        FAKE_AWS_GATE_OP: 'run-instances', FAKE_AWS_GATE_DIR: gate, FAKE_AWS_GATE_MAX_S: '300',
        FAKE_AWS_HANG_OP: 'describe-instances', FAKE_AWS_HANG_DIR: hang,
      }),
    });
    const s = server;
    const launch = getJson(`${s.url}/instances`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'leftover-1', ami: UBUNTU_X86_AMI, instance_type: 't3.micro', storage_gb: 8 }),
    });
    await until('the launch is held in front of EC2', () => markers(gate, 'entered').length === 1);
    const group = Number(markers(gate, 'entered')[0]?.text);

    s.child.kill('SIGTERM');
    const answered = await launch;
    const exit = await s.exited;

    assert.equal(answered.status, 503, JSON.stringify(answered.body));
    assert.equal(answered.body.type, 'urn:ec2-creator:problem:interrupted');
    assert.deepEqual(exit, { code: 0, signal: null });
    await until('the launch script\'s process group is gone', () => liveMembersOfGroup(group).length === 0);
    await until('no process the server started is left', () => processesWithEnvironment(`FAKE_AWS_HANG_DIR=${hang}`).length === 0);
    assert.deepEqual(markers(hang, 'hang'), [], 'no EC2 lookup was started after the deadline');
    assert.equal((await allEc2Instances()).length, 0, 'nothing reached EC2');
    const db = new Database(database, { readonly: true });
    try {
      const op = db.prepare("SELECT status, note FROM operations WHERE kind = 'create'").get() as { status: string; note: string };
      assert.equal(op.status, 'interrupted');
      assert.match(op.note, /SHUTDOWN_TIMEOUT_MS/);
    } finally {
      db.close();
    }
    assert.ok(s.logs.some((l) => l.message === 'shutdown timeout: killing what still runs'));
  });
});
