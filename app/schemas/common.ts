/**
 * Patterns shared by request schemas, script-output schemas and the OpenAPI document.
 * Kept strict on purpose: anything that reaches a script's argv has matched one of these first.
 */
export const INSTANCE_ID_PATTERN = '^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$';
export const AMI_ID_PATTERN = '^ami-(?:[0-9a-f]{8}|[0-9a-f]{17})$';
export const SECURITY_GROUP_ID_PATTERN = '^sg-(?:[0-9a-f]{8}|[0-9a-f]{17})$';
/** EC2 instance type shape (family.size), e.g. t3.micro, m7g.large, u-6tb1.metal. Policy narrows it further. */
export const INSTANCE_TYPE_PATTERN = '^(?=.{3,32}$)[a-z][a-z0-9-]*\\.[a-z0-9]+$';
/** Starts with a letter or digit (never looks like an option), printable, no control characters. */
export const INSTANCE_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9 ._:/@+=-]{0,127}$';
/** EC2 key pair names as the scripts accept them (no ':' or '/', which the CLI could read as a URL). */
export const KEY_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9 ._@+=-]{0,254}$';

/** EC2's characters for tag keys and values: letters, digits, spaces (any script) and _ . : / = + - @. */
export const TAG_TEXT_PATTERN = '^[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*$';
/** A tag key as this service takes it: EC2's characters but '=', which separates key from value in KEY=VALUE. */
export const TAG_KEY_PATTERN = '^[\\p{L}\\p{Z}\\p{N}_.:/+\\-@]*$';

export const INSTANCE_STATES = ['pending', 'running', 'stopping', 'stopped', 'shutting-down', 'terminated'] as const;
/** The largest EBS root volume EC2 accepts (GiB); the launch policy caps it much lower. */
export const EBS_MAX_GB = 16384;
