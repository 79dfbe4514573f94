/**
 * EC2's reads lag behind its changes. AWS documents it ("eventual consistency"): just after RunInstances,
 * DescribeInstances may answer InvalidInstanceID.NotFound, and a listing may leave the instance out, for a
 * few seconds and at worst minutes; callers are asked to back off "up to about five minutes" before they
 * trust such an answer. So, for a while after a launch, EC2 not showing an instance (or its client token)
 * proves nothing: the record stays as it is, and the question is asked again later.
 */
import type { InstanceRow } from '../store/instances-repo.js';

/** How long after a launch EC2 not showing the instance proves nothing, unless EVENTUAL_CONSISTENCY_S says. */
export const EVENTUAL_CONSISTENCY_MS = 5 * 60_000;

/** When the launch behind the record was last tried: EC2's launch time, else the record's last write. */
function launchedAtMs(row: Pick<InstanceRow, 'launch_time' | 'created_at' | 'updated_at' | 'instance_id'>): number {
  const at = row.instance_id === null ? row.updated_at : (row.launch_time ?? row.created_at);
  const ms = Date.parse(at);
  return Number.isNaN(ms) ? 0 : ms;
}

/**
 * Whether EC2 may simply not show the instance (or, for a launch without an id yet, its client token) yet:
 * it was launched within the window (`windowMs`). Judged by the wall clock, as the records' own times are.
 */
export function mayBeUnseen(
  row: Pick<InstanceRow, 'launch_time' | 'created_at' | 'updated_at' | 'instance_id'>,
  windowMs: number = EVENTUAL_CONSISTENCY_MS,
  nowMs: number = Date.now(),
): boolean {
  return nowMs - launchedAtMs(row) < windowMs;
}

/**
 * The pauses between looks for something EC2 may not show yet, doubling from `firstMs`, within `totalMs`
 * (the last pause is cut to fit): 2, 4, 8, 16 s for 30 s.
 */
export function backoffPauses(totalMs: number, firstMs = 2_000): number[] {
  const pauses: number[] = [];
  let left = totalMs;
  for (let pause = firstMs; left > 0; pause *= 2) {
    pauses.push(Math.min(pause, left));
    left -= pause;
  }
  return pauses;
}
