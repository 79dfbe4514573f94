/**
 * The launch policy: what the service agrees to launch. Pure functions; the AMI facts come from
 * describe_image.sh through the caller.
 */
import { PolicyError, QuotaExceededError, type FieldError } from './errors.js';

export interface LaunchPolicy {
  allowedInstanceTypes: readonly string[];
  maxStorageGb: number;
  /** Live managed instances allowed at once. */
  maxInstances: number;
}

/**
 * AWS Graviton (arm64) families carry a `g` after the generation digit: t4g, m6g, m6gd, c7gn, r8g, x2gd, im4gn,
 * is4gen, g5g… (a1 is the first-generation Graviton). Everything else we allow is x86_64.
 */
export function architectureForType(instanceType: string): 'arm64' | 'x86_64' {
  const family = instanceType.split('.')[0] ?? '';
  if (family === 'a1') return 'arm64';
  return /^[a-z]+\d+g/.test(family) ? 'arm64' : 'x86_64';
}

/** Checks that need no AWS call; throws a PolicyError listing every refused field. */
export function checkLaunchRequest(
  policy: Pick<LaunchPolicy, 'allowedInstanceTypes' | 'maxStorageGb'>,
  request: { instance_type: string; storage_gb: number },
): void {
  const errors: FieldError[] = [];
  if (!policy.allowedInstanceTypes.includes(request.instance_type)) {
    errors.push({
      field: 'instance_type',
      message: `${request.instance_type} is not allowed; allowed: ${policy.allowedInstanceTypes.join(', ')}`,
    });
  }
  if (request.storage_gb < 1 || request.storage_gb > policy.maxStorageGb) {
    errors.push({ field: 'storage_gb', message: `must be between 1 and ${policy.maxStorageGb} GB` });
  }
  if (errors.length > 0) throw new PolicyError('The launch request is outside the launch policy', errors);
}

/** The AMI must be usable and built for the instance type's architecture. */
export function checkImageFits(
  image: { id: string; architecture: string | null; state: string | null },
  instanceType: string,
): void {
  const errors: FieldError[] = [];
  if (image.state !== null && image.state !== 'available') {
    errors.push({ field: 'ami', message: `${image.id} is ${image.state}, not available` });
  }
  const needed = architectureForType(instanceType);
  if (image.architecture === null) {
    errors.push({ field: 'ami', message: `${image.id} does not say which architecture it is built for` });
  } else if (image.architecture !== needed) {
    errors.push({
      field: 'ami',
      message: `${image.id} is built for ${image.architecture} but ${instanceType} needs ${needed}`,
    });
  }
  if (errors.length > 0) throw new PolicyError('The AMI does not fit the instance type', errors);
}

// The instance quota (OWASP API4/API6: unrestricted resource consumption).
/** Refuses a launch when `live` instances already use the whole quota of `maxInstances`. */
export function checkInstanceQuota(live: number, maxInstances: number): void {
  if (live >= maxInstances) {
    throw new QuotaExceededError(
      `quota of ${maxInstances} live instances reached (${live} live); terminate one or raise MAX_INSTANCES`,
      'MAX_INSTANCES',
      maxInstances,
    );
  }
}
