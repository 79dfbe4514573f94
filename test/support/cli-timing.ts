/**
 * What one aws CLI call costs on this machine right now, measured once per test process. A test whose
 * behaviour is a time bound (a script timeout, a wait bound) derives the bound from it, so that a busy
 * machine stretches the bound instead of failing the test.
 */
import { execa } from 'execa';

const SAFETY_FACTOR = 3;
let measured: Promise<number> | undefined;

export function awsCallMs(): Promise<number> {
  measured ??= (async () => {
    const started = process.hrtime.bigint();
    // The endpoint on the command line, as the scripts pass it: AWS CLI v2 before 2.13 reads no AWS_ENDPOINT_URL.
    const endpoint = process.env.AWS_ENDPOINT_URL;
    await execa('aws', ['ec2', 'describe-regions', '--output=json', ...(endpoint ? ['--endpoint-url', endpoint] : [])], { stdin: 'ignore' });
    return Number((process.hrtime.bigint() - started) / 1_000_000n);
  })();
  return measured;
}

/** A bound (ms) comfortably above `calls` aws CLI calls, and never below `floorMs`. */
export async function boundAboveCalls(calls: number, floorMs: number): Promise<number> {
  return Math.max(floorMs, Math.ceil(calls * SAFETY_FACTOR * (await awsCallMs())));
}
