/**
 * The cost guardrails' configuration: expiry, off-hours schedules, the free-tier meter and how open a
 * security group may be. Read once at start-up like the rest (app/config.ts); a bad value names its variable.
 */
import { booleanVariable, ConfigError, instanceTypeList, readVariable, wholeNumber, type Env } from '../env.js';
import { parseSchedule, scheduleProblems, type Schedule } from '../domain/schedule.js';
import { INSTANCE_TYPE_PATTERN } from '../schemas/common.js';
import { cidrProblem } from './network.js';

export const FREE_TIER_GUARDS = ['off', 'warn', 'refuse'] as const;
export type FreeTierGuard = (typeof FREE_TIER_GUARDS)[number];
export const EXPIRY_ACTIONS = ['stop', 'terminate'] as const;
export type ExpiryAction = (typeof EXPIRY_ACTIONS)[number];

export interface GuardrailsConfig {
  /** Hours a new instance lives when its request names no expiry; 0: no expiry. */
  defaultTtlHours: number;
  /** The furthest expiry a request may ask for, in hours from now; 0: no limit. */
  maxTtlHours: number;
  defaultOnExpiry: ExpiryAction;
  /** How often the scheduler looks for due actions (seconds); 0: never (for tests that drive it). */
  schedulerIntervalS: number;
  expiryWarningMinutes: number;
  /** The schedule a new instance gets when its request does not name one (null: none). */
  defaultSchedule: Schedule | null;
  freeTier: {
    instanceHours: number;
    ebsGbMonths: number;
    publicIpv4Hours: number;
    /** The instance types whose hours the free tier covers. */
    instanceTypes: string[];
    guard: FreeTierGuard;
  };
  /** Where the managed security group lets SSH in from when a request does not say (null: it must say). */
  securityGroupCidr: string | null;
  /** Whether a security group may be opened to the whole internet (0.0.0.0/0 or ::/0). */
  allowOpenSecurityGroup: boolean;
}

function oneOf<T extends string>(env: Env, name: string, choices: readonly T[], fallback: T): T {
  const raw = readVariable(env, name)?.toLowerCase() ?? fallback;
  if (!(choices as readonly string[]).includes(raw)) {
    throw new ConfigError(name, `must be one of ${choices.join(', ')}, got ${JSON.stringify(raw)}`);
  }
  return raw as T;
}

export function loadGuardrailsConfig(env: Env): GuardrailsConfig {
  const maxTtlHours = wholeNumber(env, 'MAX_TTL_HOURS', 720, 0, 87_600);
  const defaultTtlHours = wholeNumber(env, 'DEFAULT_TTL_HOURS', 0, 0, 87_600);
  if (maxTtlHours > 0 && defaultTtlHours > maxTtlHours) {
    throw new ConfigError('DEFAULT_TTL_HOURS', `must not exceed MAX_TTL_HOURS (${maxTtlHours}), got ${defaultTtlHours}`);
  }
  const rawSchedule = readVariable(env, 'DEFAULT_SCHEDULE');
  let defaultSchedule: Schedule | null = null;
  if (rawSchedule !== undefined && rawSchedule.toLowerCase() !== 'none') {
    try {
      defaultSchedule = parseSchedule(rawSchedule);
    } catch (error) {
      throw new ConfigError('DEFAULT_SCHEDULE', (error as Error).message);
    }
    const problems = scheduleProblems(defaultSchedule);
    if (problems.length > 0) throw new ConfigError('DEFAULT_SCHEDULE', problems.map((p) => `${p.field}: ${p.message}`).join('; '));
  }
  const instanceTypes = instanceTypeList(env, 'FREE_TIER_INSTANCE_TYPES', 't2.micro,t3.micro', INSTANCE_TYPE_PATTERN);
  const securityGroupCidr = readVariable(env, 'SECURITY_GROUP_CIDR') ?? null;
  if (securityGroupCidr !== null) {
    const problem = cidrProblem(securityGroupCidr);
    if (problem) throw new ConfigError('SECURITY_GROUP_CIDR', problem);
  }
  const schedulerIntervalS = wholeNumber(env, 'SCHEDULER_INTERVAL_S', 30, 0, 3_600);
  return {
    defaultTtlHours,
    maxTtlHours,
    defaultOnExpiry: oneOf(env, 'DEFAULT_ON_EXPIRY', EXPIRY_ACTIONS, 'stop'),
    schedulerIntervalS,
    expiryWarningMinutes: wholeNumber(env, 'EXPIRY_WARNING_MINUTES', 60, 0, 10_080),
    defaultSchedule,
    freeTier: {
      instanceHours: wholeNumber(env, 'FREE_TIER_INSTANCE_HOURS', 750, 0, 1_000_000),
      ebsGbMonths: wholeNumber(env, 'FREE_TIER_EBS_GB_MONTHS', 30, 0, 1_000_000),
      publicIpv4Hours: wholeNumber(env, 'FREE_TIER_PUBLIC_IPV4_HOURS', 750, 0, 1_000_000),
      instanceTypes,
      guard: oneOf(env, 'FREE_TIER_GUARD', FREE_TIER_GUARDS, 'warn'),
    },
    securityGroupCidr,
    allowOpenSecurityGroup: booleanVariable(env, 'ALLOW_OPEN_SECURITY_GROUP', false),
  };
}
