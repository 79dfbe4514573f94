/**
 * Instances arranged for a figure without going through the API, which would spend CLI calls (and
 * minutes of a busy machine) on set-up that no figure measures: EC2 instances made in moto with one
 * call, and the records the service would have written for them, put into its SQLite file before it starts.
 */
import { execFileSync } from 'node:child_process';
import { openDatabase } from '../../app/store/db.js';
import { createStore } from '../../app/store/instances-repo.js';

export const BENCH_AMI = 'ami-1e749f67'; // an Ubuntu x86_64 image every moto ships
export const BENCH_KEY_NAME = 'bench-key';
const INSTANCE_TYPE = 't3.micro';

export interface LaunchedInstance {
  id: string;
  name: string;
  privateIp: string | null;
}

/** Runs the real aws CLI (not the shim: set-up is never counted) and parses its JSON answer. */
function aws<T>(realAws: string, args: string[]): T {
  return JSON.parse(execFileSync(realAws, ['ec2', ...args, '--output=json'], { encoding: 'utf8' }) || 'null') as T;
}

export function createKeyPair(realAws: string): void {
  aws(realAws, ['create-key-pair', `--key-name=${BENCH_KEY_NAME}`]);
}

/**
 * `count` instances in one call, tagged as the service tags its own (`managed`) or not at all (an
 * instance only the bench's direct script runs touch, which a sync must not import).
 */
export function launchInstances(realAws: string, count: number, namePrefix: string, options: { managed: boolean }): LaunchedInstance[] {
  const tags = [`{Key=Name,Value=${namePrefix}}`, ...(options.managed ? ['{Key=ManagedBy,Value=ec2-creator}'] : [])];
  const launched = aws<{ Instances: Array<{ InstanceId: string; PrivateIpAddress?: string }> }>(realAws, [
    'run-instances', `--image-id=${BENCH_AMI}`, `--instance-type=${INSTANCE_TYPE}`, `--count=${count}`,
    `--key-name=${BENCH_KEY_NAME}`, '--tag-specifications', `ResourceType=instance,Tags=[${tags.join(',')}]`,
  ]);
  return launched.Instances.map((instance, i) => ({
    id: instance.InstanceId,
    name: `${namePrefix}-${i}`,
    privateIp: instance.PrivateIpAddress ?? null,
  }));
}

function hex17(n: number): string {
  return n.toString(16).padStart(17, '0');
}

/**
 * Records, as the service writes them after a launch, into the database at `file` (created and migrated
 * when new). `instances` are real ones (moto's); `invented` adds that many more with made-up ids, running,
 * and `terminated` that many terminated ones before them all (history, oldest rows), for the reads.
 */
export function recordInstances(
  file: string,
  options: { instances?: LaunchedInstance[]; invented?: number; terminated?: number },
): void {
  // The repositories without the guard that watches the file for a running server: set-up writes alone.
  const store = createStore(openDatabase(file));
  try {
    let serial = 0;
    // One INSERT a row (an import writes the whole row at once): 50,000 rows of history take a second or two.
    const record = (id: string, name: string, privateIp: string | null, terminated: boolean): void => {
      serial += 1;
      store.instances.importInstance(
        { clientToken: `bench-${serial}`, ami: BENCH_AMI, instanceType: INSTANCE_TYPE, loginUser: 'ubuntu', lastError: null },
        {
          instanceId: id, name, state: terminated ? 'terminated' : 'running', publicIp: terminated ? null : '54.0.0.1',
          privateIp: privateIp ?? '10.0.0.1', storageGb: 8, keyName: BENCH_KEY_NAME, securityGroupId: null,
          launchTime: new Date(0).toISOString(),
        },
      );
    };
    store.db.transaction(() => {
      for (let i = 0; i < (options.terminated ?? 0); i += 1) record(`i-${hex17(i)}`, `history-${i}`, null, true);
      for (let i = 0; i < (options.invented ?? 0); i += 1) record(`i-${hex17(0x1000000 + i)}`, `live-${i}`, null, false);
      for (const instance of options.instances ?? []) record(instance.id, instance.name, instance.privateIp, false);
    })();
  } finally {
    store.close();
  }
}
