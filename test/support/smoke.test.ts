import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { resetMoto } from './global-fixture.js';

describe('moto fixture', () => {
  it('when the run starts, then the aws CLI reaches the emulator on loopback', async () => {
    await resetMoto();
    const out = execFileSync('aws', ['ec2', 'describe-instances', '--output=json'], { encoding: 'utf8' });
    assert.deepEqual(JSON.parse(out), { Reservations: [] });
    assert.match(process.env.AWS_ENDPOINT_URL ?? '', /^http:\/\/127\.0\.0\.1:\d+$/);
  });
});
