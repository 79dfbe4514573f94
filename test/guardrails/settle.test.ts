/**
 * What a create's guardrails become before anything runs: the defaults from configuration, and the managed
 * security group's rules. Pure: the API tests (./api.test.ts) show the same decisions end to end.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { settleLaunchRequest } from '../../app/domain/lifecycle.js';
import { PolicyError, ValidationError } from '../../app/domain/errors.js';
import { managedGroupName, managedGroupRules } from '../../app/guardrails/network.js';
import { testConfig } from '../support/app-harness.js';
import type { Config } from '../../app/config.js';

const NOW = new Date('2026-11-23T10:00:00.000Z');
const BASE = { name: 'web-1', ami: 'ami-1e749f67', instance_type: 't3.micro', storage_gb: 8, create_security_group: false };
const config = (overrides: Partial<Config['guardrails']> = {}): Config['guardrails'] => ({ ...testConfig().guardrails, ...overrides });

describe('a create request settled against the guardrails', () => {
  it('when DEFAULT_TTL_HOURS is set and the request names no expiry, then it expires that long from now with DEFAULT_ON_EXPIRY', () => {
    const settled = settleLaunchRequest(BASE, config({ defaultTtlHours: 8, defaultOnExpiry: 'terminate' }), NOW);
    assert.equal(settled.expires_at, '2026-11-23T18:00:00.000Z');
    assert.equal(settled.on_expiry, 'terminate');
  });

  it('when no default expiry is configured, then the instance never expires and has no action at expiry', () => {
    const settled = settleLaunchRequest(BASE, config(), NOW);
    assert.equal(settled.expires_at, null);
    assert.equal(settled.on_expiry, null);
  });

  it('when ttl_hours is given, then it wins over the default and is settled to a time (a retry keeps it)', () => {
    const settled = settleLaunchRequest({ ...BASE, ttl_hours: 2, on_expiry: 'stop' }, config({ defaultTtlHours: 8, defaultOnExpiry: 'terminate' }), NOW);
    assert.equal(settled.expires_at, '2026-11-23T12:00:00.000Z');
    assert.equal(settled.on_expiry, 'stop');
    assert.equal('ttl_hours' in settled, false);
  });

  it('when DEFAULT_SCHEDULE is set, then a request without schedule gets it and schedule: null opts out', () => {
    const schedule = { stop_at: '20:00', days: 'daily', timezone: 'UTC' };
    assert.deepEqual(settleLaunchRequest(BASE, config({ defaultSchedule: schedule }), NOW).schedule, schedule);
    assert.equal(settleLaunchRequest({ ...BASE, schedule: null }, config({ defaultSchedule: schedule }), NOW).schedule, null);
  });

  it('when the request is past MAX_TTL_HOURS, then PolicyError names ttl_hours', () => {
    assert.throws(() => settleLaunchRequest({ ...BASE, ttl_hours: 721 }, config({ maxTtlHours: 720 }), NOW),
      (error: unknown) => error instanceof PolicyError && error.errors[0]?.field === 'ttl_hours');
  });
});

describe('the managed security group a create asks for', () => {
  const closed = { securityGroupCidr: null, allowOpenSecurityGroup: false };

  it('when ALLOW_OPEN_SECURITY_GROUP is true, then SSH and the web ports may be open to the whole internet', () => {
    assert.deepEqual(
      managedGroupRules({ create_security_group: true, ssh_cidr: '0.0.0.0/0', web_cidr: '::/0' }, { ...closed, allowOpenSecurityGroup: true }),
      { sshCidrs: ['0.0.0.0/0'], webCidrs: ['::/0'] },
    );
  });

  it('when it is false, then a /0 for SSH or the web is refused, each field named with how to narrow it', () => {
    assert.throws(() => managedGroupRules({ create_security_group: true, ssh_cidr: '203.0.113.7/32', web_cidr: '0.0.0.0/0' }, closed),
      (error: unknown) => error instanceof PolicyError && error.errors.length === 1 && error.errors[0]?.field === 'web_cidr'
        && /narrow it/.test(error.errors[0].message));
    assert.throws(() => managedGroupRules({ create_security_group: true }, { securityGroupCidr: '0.0.0.0/0', allowOpenSecurityGroup: false }),
      (error: unknown) => error instanceof PolicyError && /SECURITY_GROUP_CIDR/.test(error.errors[0]?.field ?? ''));
  });

  it('when ssh_cidr or web_cidr comes without create_security_group, or with security_group_ids, then it is refused as malformed', () => {
    assert.throws(() => managedGroupRules({ ssh_cidr: '203.0.113.7/32' }, closed), ValidationError);
    assert.throws(() => managedGroupRules({ create_security_group: true, security_group_ids: ['sg-0123456789abcdef0'] }, closed), ValidationError);
  });

  it('when no group is asked for, then there are no rules', () => {
    assert.equal(managedGroupRules({}, closed), undefined);
  });

  it('when the rules differ, then the group names differ, and the same rules always get the same name', () => {
    const digest = (text: string) => createHash('sha256').update(text).digest('hex');
    const a = managedGroupName({ sshCidrs: ['203.0.113.7/32'], webCidrs: [] }, digest);
    assert.equal(a, managedGroupName({ sshCidrs: ['203.0.113.7/32'], webCidrs: [] }, digest));
    assert.notEqual(a, managedGroupName({ sshCidrs: ['203.0.113.8/32'], webCidrs: [] }, digest));
    assert.match(a, /^ec2-creator-/);
  });
});
