/**
 * Reconciliation: one read of EC2 through list_instances.sh --all, compared with the records.
 *  - records whose instance EC2 reports are refreshed (state, addresses) — "updated" when something changed;
 *  - records whose instance EC2 no longer knows are marked terminated — "vanished" — unless the instance was
 *    launched within the last five minutes: EC2's reads lag behind a launch, so it is left as it is and
 *    looked at again by the next sync — "unconfirmed";
 *  - instances tagged ManagedBy=ec2-creator without a record are recorded — "imported": a launch left
 *    unresolved (crash, lost answer) is completed by its client token, anything else (a person ran
 *    create_instance.sh) gets a new record.
 *  - launches that no instance carries the token of are failed once nobody works on them any more (interrupted,
 *    script ended) and their last attempt is more than five minutes old, else after GIVE_UP_AFTER_MS; until
 *    then they are "unconfirmed" too.
 * Instances with an operation in flight are left to that operation (as are those a change ran on while EC2
 * was read: the change recorded something newer than the read), and so are records whose instance EC2
 * reported in a form the service cannot use. Records created after EC2 was read are never judged against
 * that read.
 */
import type { Ec2 } from '../ec2/scripts.js';
import type { Logger } from '../logger.js';
import type { Ec2Instance } from '../schemas/script-outputs.js';
import type { LaunchedRow } from '../store/instances-repo.js';
import type { InstancesStore } from '../store/ports.js';
import type { OpContext } from './context.js';
import { mayBeUnseen } from './consistency.js';
import { snapshotOf, type ChangeWatch } from './instances.js';
import { DEFAULT_LOGIN_USER, loginUserFor } from './login-user.js';

/** Unresolved launches older than this with no instance carrying their token are marked failed. */
const GIVE_UP_AFTER_MS = 15 * 60 * 1000;

export interface SyncCounts {
  updated: number;
  imported: number;
  vanished: number;
  /** Records and launches EC2 did not show, too young to judge by that (see consistency.ts). */
  unconfirmed: number;
}

export interface ReconcilerDeps {
  instances: InstancesStore;
  ec2: Ec2;
  logger: Logger;
  /** Runner timeout for the read (ms). */
  describeTimeoutMs?: number | undefined;
  /** Whether an operation is in flight on the instance (then it is not touched). */
  isBusy(instanceId: string): boolean;
  /** Instances with an operation in flight on any server sharing the database (read after EC2 was). */
  busyAnywhere?: (() => Promise<ReadonlySet<string>>) | undefined;
  /** Changes that ran while EC2 was read: what the read saw of those instances is older than their records. */
  changes?: ChangeWatch | undefined;
  /** How long after a launch EC2 not showing it proves nothing (ms; see consistency.ts). */
  consistencyWindowMs?: number | undefined;
}

export interface Reconciler {
  syncOnce(ctx?: OpContext): Promise<SyncCounts>;
}

const changed = (a: LaunchedRow, b: LaunchedRow): boolean =>
  a.state !== b.state || a.public_ip !== b.public_ip || a.private_ip !== b.private_ip;

export function createReconciler(deps: ReconcilerDeps): Reconciler {
  const { instances, ec2, logger } = deps;
  const run = (ctx?: OpContext) => ({ requestId: ctx?.requestId, timeoutMs: deps.describeTimeoutMs });

  async function loginUserOf(instance: Ec2Instance, ctx?: OpContext): Promise<string> {
    try {
      return loginUserFor(await ec2.describeImage(instance.ami, run(ctx)));
    } catch {
      return DEFAULT_LOGIN_USER; // the image may be deregistered; the record matters more
    }
  }

  // The listing leaves out volume sizes (a record keeps its own); an instance recorded for the first time
  // has them read once. Without them it is still recorded: the size is the least of what matters.
  async function withStorage(instance: Ec2Instance, ctx?: OpContext): Promise<Ec2Instance> {
    try {
      return await ec2.describeInstance(instance.id, run(ctx), { storage: true });
    } catch (error) {
      logger.warn('reconciliation could not read the root volume of an instance it imports', {
        request_id: ctx?.requestId, instance_id: instance.id, error: (error as Error).message,
      });
      return instance;
    }
  }

  return {
    async syncOnce(ctx) {
      // Only records that existed before EC2 was read can be judged by that read; likewise a launch counts
      // as abandoned only if it was before the read (its script may have launched just before it ended).
      const known = await instances.live();
      const marks = new Map(known.map((row) => [row.instance_id, deps.changes?.mark(row.instance_id)]));
      const abandoned = new Set((await instances.abandonedLaunches()).map((r) => r.client_token));
      const { instances: found, unreadable } = await ec2.listInstances({ all: true }, run(ctx));
      const byId = new Map(found.map((i) => [i.id, i]));
      // EC2 reported these, so they did not vanish; what they are now is unknown, so their records stay as they are.
      const unjudged = new Set(unreadable.flatMap((u) => (u.id === null ? [] : [u.id])));
      if (unreadable.length > 0) {
        logger.warn('reconciliation left out instances it could not read', {
          request_id: ctx?.requestId,
          instance_ids: [...unjudged],
          without_id: unreadable.filter((u) => u.id === null).length,
          problems: unreadable.map((u) => u.problems),
        });
      }
      const counts: SyncCounts = { updated: 0, imported: 0, vanished: 0, unconfirmed: 0 };
      const unseen: string[] = [];
      const busyElsewhere = (await deps.busyAnywhere?.()) ?? new Set<string>();

      const leftToOperations: string[] = [];
      for (const row of known) {
        if (unjudged.has(row.instance_id)) continue;
        const mark = marks.get(row.instance_id);
        if (deps.isBusy(row.instance_id) || busyElsewhere.has(row.instance_id) || (mark && deps.changes && !deps.changes.mayRecordState(row.instance_id, mark))) {
          leftToOperations.push(row.instance_id);
          continue;
        }
        const current = await instances.findByInstanceId(row.instance_id);
        if (!current || current.state === 'terminated') continue;
        const seen = byId.get(row.instance_id);
        if (seen) {
          const after = await instances.refresh(snapshotOf(seen));
          if (changed(current, after)) counts.updated += 1;
        } else if (mayBeUnseen(current, deps.consistencyWindowMs)) {
          unseen.push(row.instance_id);
          counts.unconfirmed += 1;
        } else {
          await instances.markTerminated(row.instance_id, 'vanished from EC2 (reconciliation)');
          counts.vanished += 1;
        }
      }
      if (unseen.length > 0) {
        logger.info('reconciliation left records EC2 does not show yet: they were launched moments ago', {
          request_id: ctx?.requestId, instance_ids: unseen,
        });
      }
      if (leftToOperations.length > 0) {
        logger.debug('reconciliation left instances to the operations changing them', {
          request_id: ctx?.requestId, instance_ids: leftToOperations,
        });
      }

      const unresolved = new Map((await instances.unresolvedLaunches()).map((r) => [r.client_token, r]));
      for (const instance of found) {
        if (await instances.findByInstanceId(instance.id)) continue;
        const launch = instance.client_token ? unresolved.get(instance.client_token) : undefined;
        if (launch) {
          await instances.completeLaunch(launch.client_token, snapshotOf(instance));
          unresolved.delete(launch.client_token);
          counts.imported += 1;
          logger.info('reconciliation recorded an unresolved launch found by its client token', {
            request_id: ctx?.requestId, instance_id: instance.id, client_token: launch.client_token,
          });
          continue;
        }
        if (!instance.managed || instance.state === 'terminated') continue;
        const token = instance.client_token ?? `import-${instance.id}`;
        const holder = await instances.findByClientToken(token);
        if (holder) {
          // A launch given up as failed that EC2 shows after all (a slow answer): it is recorded, never orphaned.
          if (holder.instance_id === null) {
            await instances.completeLaunch(token, snapshotOf(instance));
            counts.imported += 1;
            logger.warn('reconciliation recorded a launch given up as failed: EC2 has it after all', {
              request_id: ctx?.requestId, instance_id: instance.id, client_token: token,
            });
          }
          continue;
        }
        await instances.importInstance(
          {
            clientToken: token,
            ami: instance.ami,
            instanceType: instance.instance_type,
            loginUser: await loginUserOf(instance, ctx),
            lastError: null,
          },
          snapshotOf(await withStorage(instance, ctx)),
        );
        counts.imported += 1;
        logger.info('reconciliation imported an instance launched outside the API', {
          request_id: ctx?.requestId, instance_id: instance.id,
        });
      }

      // Launches no instance carries the token of are failed once EC2 has had time to show them: when nobody
      // works on them any more (their operation was interrupted and its script has ended), after the window
      // of eventual consistency since their last attempt; else after GIVE_UP_AFTER_MS. A failed launch does not
      // count against MAX_INSTANCES; until then it does.
      const failed: string[] = [];
      for (const launch of unresolved.values()) {
        const sinceMs = Date.now() - Date.parse(launch.updated_at);
        if ((abandoned.has(launch.client_token) && !mayBeUnseen(launch, deps.consistencyWindowMs)) || sinceMs > GIVE_UP_AFTER_MS) {
          await instances.failLaunch(launch.client_token, 'failed', 'no EC2 instance carries this launch\'s client token');
          failed.push(launch.client_token);
        } else if (launch.launch_status === 'unknown' || abandoned.has(launch.client_token)) {
          counts.unconfirmed += 1; // a launch still in flight is its operation's to resolve
        }
      }
      if (failed.length > 0) {
        logger.info('reconciliation failed launches that no EC2 instance carries', { request_id: ctx?.requestId, client_tokens: failed });
      }
      logger.info('reconciled with EC2', { request_id: ctx?.requestId, ...counts, seen: found.length });
      return counts;
    },
  };
}
