/**
 * How far the managed security group opens: the CIDRs SSH and the web ports are allowed from. The whole
 * internet (a /0) needs ALLOW_OPEN_SECURITY_GROUP=true, so that an open port is always someone's decision.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { PolicyError, ValidationError, type FieldError } from '../domain/errors.js';

/** Why `cidr` is not an IPv4 or IPv6 CIDR block, or undefined when it is one. */
export function cidrProblem(cidr: string): string | undefined {
  const match = /^([^/]+)\/(\d{1,3})$/.exec(cidr);
  if (!match) return `${JSON.stringify(cidr)} is not a CIDR block like 203.0.113.7/32 or 2001:db8::/64`;
  const [, address, prefixText] = match as unknown as [string, string, string];
  const prefix = Number(prefixText);
  if (isIPv4(address)) {
    if (prefix > 32) return `the prefix of ${cidr} must be at most /32`;
    const groups = address.split('.').map((part) => Number(part).toString(2).padStart(8, '0')).join('');
    if (/1/.test(groups.slice(prefix))) return `${cidr} has host bits set; the network is ${networkOf(groups, prefix, 4)}/${prefix}`;
    return undefined;
  }
  // The managed group's rules are compared with what EC2 stores, which writes IPv6 in its own spelling.
  if (isIPv6(address) && !address.includes('.')) {
    if (prefix > 128) return `the prefix of ${cidr} must be at most /128`;
    const bits = expandIpv6(address).map((group) => parseInt(group, 16).toString(2).padStart(16, '0')).join('');
    if (/1/.test(bits.slice(prefix))) return `${cidr} has host bits set; use the network address of the /${prefix}`;
    return undefined;
  }
  return `${JSON.stringify(address)} is not an IPv4 or IPv6 address (IPv4 written inside IPv6 is not taken)`;
}

/** The eight groups of an IPv6 address written with or without '::'. */
function expandIpv6(address: string): string[] {
  const [head = '', tail] = address.split('::');
  const front = head === '' ? [] : head.split(':');
  const back = tail === undefined || tail === '' ? [] : tail.split(':');
  return [...front, ...Array<string>(8 - front.length - back.length).fill('0'), ...back];
}

/** The dotted network address of an IPv4 bit string under a prefix. */
function networkOf(bits: string, prefix: number, octets: number): string {
  const masked = bits.slice(0, prefix).padEnd(octets * 8, '0');
  return Array.from({ length: octets }, (_, i) => parseInt(masked.slice(i * 8, i * 8 + 8), 2)).join('.');
}

/** Whether the block is the whole internet. */
export function isWholeInternet(cidr: string): boolean {
  return /\/0+$/.test(cidr);
}

export interface GroupRequest {
  create_security_group?: boolean | undefined;
  ssh_cidr?: string | undefined;
  web_cidr?: string | undefined;
  security_group_ids?: readonly string[] | undefined;
}

/** The rules of the managed group a create asks for, or undefined when it asks for none. */
export interface ManagedGroupRules {
  sshCidrs: string[];
  webCidrs: string[];
}

/**
 * The managed group's rules a create asks for: SSH from `ssh_cidr` (default SECURITY_GROUP_CIDR), the web
 * ports only from `web_cidr`. Refuses malformed blocks (ValidationError), conflicting fields and an opening to
 * the whole internet that configuration does not allow (PolicyError).
 */
export function managedGroupRules(
  request: GroupRequest,
  config: { securityGroupCidr: string | null; allowOpenSecurityGroup: boolean },
): ManagedGroupRules | undefined {
  const malformed: FieldError[] = [];
  for (const field of ['ssh_cidr', 'web_cidr'] as const) {
    const value = request[field];
    const problem = value === undefined ? undefined : cidrProblem(value);
    if (problem) malformed.push({ field, message: problem });
  }
  if (malformed.length > 0) throw new ValidationError('The request body is invalid', malformed);
  const wantsGroup = request.create_security_group === true;
  if (request.security_group_ids !== undefined && (wantsGroup || request.ssh_cidr !== undefined || request.web_cidr !== undefined)) {
    throw new ValidationError('The request body is invalid', [{
      field: 'security_group_ids',
      message: 'launches into existing groups; it cannot be combined with create_security_group, ssh_cidr or web_cidr',
    }]);
  }
  if (!wantsGroup) {
    if (request.ssh_cidr !== undefined || request.web_cidr !== undefined) {
      throw new ValidationError('The request body is invalid', [{
        field: request.ssh_cidr !== undefined ? 'ssh_cidr' : 'web_cidr',
        message: 'applies to the managed security group; set create_security_group to true',
      }]);
    }
    return undefined;
  }
  const ssh = request.ssh_cidr ?? config.securityGroupCidr ?? undefined;
  if (ssh === undefined) {
    throw new PolicyError('The security group would not say where SSH is allowed from', [{
      field: 'ssh_cidr',
      message: 'name the addresses SSH is allowed from, e.g. "203.0.113.7/32" (or set SECURITY_GROUP_CIDR on the server)',
    }]);
  }
  const rules: ManagedGroupRules = { sshCidrs: [ssh], webCidrs: request.web_cidr === undefined ? [] : [request.web_cidr] };
  if (!config.allowOpenSecurityGroup) {
    const open: FieldError[] = [];
    if (isWholeInternet(ssh)) {
      open.push({
        field: request.ssh_cidr !== undefined ? 'ssh_cidr' : 'ssh_cidr (from SECURITY_GROUP_CIDR)',
        message: `${ssh} opens SSH to the whole internet; narrow it to your address, e.g. "203.0.113.7/32", or have the server set ALLOW_OPEN_SECURITY_GROUP=true`,
      });
    }
    if (request.web_cidr !== undefined && isWholeInternet(request.web_cidr)) {
      open.push({
        field: 'web_cidr',
        message: `${request.web_cidr} opens HTTP and HTTPS to the whole internet; narrow it, e.g. "198.51.100.0/24", or have the server set ALLOW_OPEN_SECURITY_GROUP=true`,
      });
    }
    if (open.length > 0) throw new PolicyError('The security group would be open to the whole internet', open);
  }
  return rules;
}

/**
 * The managed group's name for a set of rules: groups with different rules never share a name, so converging
 * one to its rules never takes a rule away from another instance's group.
 */
export function managedGroupName(rules: ManagedGroupRules, digest: (text: string) => string): string {
  return `ec2-creator-${digest(JSON.stringify([rules.sshCidrs, rules.webCidrs])).slice(0, 12)}`;
}
