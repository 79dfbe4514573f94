/**
 * Cost guardrails end to end: owner and tags, expiry and its warning, off-hours schedules, the free-tier
 * meter and guard, and the narrow security group. The scheduler and the meter go by an injected clock that
 * the tests move; EC2 is moto, read independently through the SDK.
 */
import {
  CreateSecurityGroupCommand, CreateVpcCommand, DescribeSecurityGroupsCommand, DescribeVolumesCommand,
} from '@aws-sdk/client-ec2';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { parseTokenList } from '../../app/auth/tokens.js';
import request from 'supertest';
import { resetMoto } from '../support/global-fixture.js';
import { UBUNTU_X86_AMI, allEc2Instances, createKeyPair, ec2Client, ec2InstanceById } from '../support/ec2-reader.js';
import { createHarnessOn, expectProblem, storeKinds, testConfig, type Harness, type HarnessOptions } from '../support/app-harness.js';
import { launchManaged, tagsOf } from '../support/scripts.js';
import type { InstanceEvent, Notifier } from '../../app/notify/events.js';
import type { Config } from '../../app/config.js';

const HOUR = 3_600_000;

/** A clock the test moves. */
function movableClock(start: Date) {
  let now = start.getTime();
  return {
    now: () => new Date(now),
    set(to: Date | string) {
      now = new Date(to).getTime();
    },
    advance(ms: number) {
      now += ms;
    },
  };
}

function recordingNotifier(): Notifier & { events: InstanceEvent[] } {
  const events: InstanceEvent[] = [];
  return { events, notify: (event) => void events.push(event), idle: async () => {} };
}

const guardrails = (overrides: Partial<Config['guardrails']> = {}): Partial<Config> => ({
  guardrails: { ...testConfig().guardrails, ...overrides },
});

const BASE = { name: 'web-1', ami: UBUNTU_X86_AMI, instance_type: 't3.micro', storage_gb: 8 };

async function create(h: Harness, body: Record<string, unknown>, status = 201): Promise<any> {
  const response = await request(h.app).post('/instances').send({ ...BASE, ...body });
  assert.equal(response.status, status, JSON.stringify(response.body));
  return response;
}

async function volumeTags(instanceId: string): Promise<Record<string, string>> {
  const volumes = (await ec2Client().send(new DescribeVolumesCommand({
    Filters: [{ Name: 'attachment.instance-id', Values: [instanceId] }],
  }))).Volumes ?? [];
  return tagsOf(volumes[0] as any);
}

async function operationsBy(h: Harness, actor: string): Promise<any[]> {
  return (await request(h.app).get(`/operations?actor=${actor}`)).body.operations;
}

for (const kind of storeKinds()) describe(`cost guardrails (${kind})`, function () {
  this.timeout(120_000);
  const harnesses: Harness[] = [];
  async function harness(options: HarnessOptions = {}): Promise<Harness> {
    const h = await createHarnessOn(kind, options);
    harnesses.push(h);
    return h;
  }

  // What the stores do differently (tag filters, the history and event triggers, the scheduler's
  // compare-and-set writes) runs on both; checks made before anything is stored, and the EC2 side, on one.
  const onSqlite = (title: string, test: () => Promise<void>): void => {
    if (kind === 'sqlite') it(title, test);
  };

  beforeEach(async () => {
    await resetMoto();
    await createKeyPair();
  });
  afterEach(() => {
    for (const h of harnesses.splice(0)) h.close();
  });

  describe('owner and tags', () => {
    it('when an operator creates with tags, then the instance and its volume carry them and the Owner, and the answer shows them', async () => {
      const token = `op_${randomBytes(24).toString('base64url')}`;
      const h = await harness({ auth: { mode: 'tokens', tokens: parseTokenList(`alice:operator:${token}`) } });
      const response = await request(h.app).post('/instances').set('Authorization', `Bearer ${token}`)
        .send({ ...BASE, tags: { team: 'web', 'cost center': '47/11' } });
      assert.equal(response.status, 201, JSON.stringify(response.body));
      assert.equal(response.body.owner, 'alice');
      assert.deepEqual(response.body.tags, { 'cost center': '47/11', team: 'web' });

      const ec2 = tagsOf(await ec2InstanceById(response.body.id));
      assert.equal(ec2.Owner, 'alice');
      assert.equal(ec2.team, 'web');
      assert.equal(ec2['cost center'], '47/11');
      const volume = await volumeTags(response.body.id);
      assert.equal(volume.Owner, 'alice');
      assert.equal(volume.team, 'web');
      const row = await h.records.instances.findByInstanceId(response.body.id);
      assert.equal(row?.owner, 'alice');
    });

    onSqlite('when a tag key is reserved, then 400 names it and nothing is launched', async () => {
      const h = await harness();
      for (const key of ['Owner', 'Name', 'ManagedBy', 'ec2-creator:expires-at', 'aws:cloudformation:stack-name', 'AWS:x']) {
        const response = await request(h.app).post('/instances').send({ ...BASE, tags: { [key]: 'x' } });
        const problem = expectProblem(response, 400);
        assert.ok(problem.errors.some((e: any) => e.field.includes(key) || e.field.startsWith('tags')), JSON.stringify(problem));
      }
      for (const tags of [{ 'bad;key': 'x' }, { 'a=b': 'c' }, { team: '$(touch /tmp/pwned)' }, Object.fromEntries(Array.from({ length: 11 }, (_, i) => [`k${i}`, 'v']))]) {
        expectProblem(await request(h.app).post('/instances').send({ ...BASE, tags }), 400);
      }
      assert.equal((await allEc2Instances()).length, 0);
      assert.equal(h.runs.length, 0, 'no script ran');
    });

    it('when instances are listed with ?tag=, then only those with every tag asked for are returned', async () => {
      const h = await harness();
      const web = (await create(h, { name: 'web', tags: { team: 'web', env: 'prod' } })).body;
      const api = (await create(h, { name: 'api', tags: { team: 'api', env: 'prod' } })).body;
      const names = async (query: string) => (await request(h.app).get(`/instances?${query}`)).body.instances.map((i: any) => i.id).sort();
      assert.deepEqual(await names('tag=team:web'), [web.id]);
      assert.deepEqual(await names('tag=env=prod'), [web.id, api.id].sort());
      assert.deepEqual(await names('tag=env:prod&tag=team:api'), [api.id]);
      assert.deepEqual(await names('tag=env'), [web.id, api.id].sort());
      assert.deepEqual(await names('tag=team:nobody'), []);
    });

    onSqlite('when someone tags an instance in EC2, then a read records the new user tags', async () => {
      const h = await harness();
      const made = (await create(h, { tags: { team: 'web' } })).body;
      const { CreateTagsCommand } = await import('@aws-sdk/client-ec2');
      await ec2Client().send(new CreateTagsCommand({ Resources: [made.id], Tags: [{ Key: 'team', Value: 'data' }, { Key: 'aws:x', Value: 'y' }] }));
      const read = await request(h.app).get(`/instances/${made.id}`);
      assert.deepEqual(read.body.tags, { team: 'data' });
      assert.equal(read.body.owner, made.owner);
    });

    it('when sync imports a managed instance made elsewhere, then its Owner and user tags are recorded and filterable', async () => {
      const h = await harness();
      const { id } = await launchManaged('made-by-hand', { tags: { Owner: 'bob', team: 'data' } });
      const synced = await request(h.app).post('/instances/sync');
      assert.equal(synced.status, 200, JSON.stringify(synced.body));
      const found = (await request(h.app).get('/instances?tag=team:data')).body.instances;
      assert.deepEqual(found.map((i: any) => [i.id, i.owner, i.tags]), [[id, 'bob', { team: 'data' }]]);
      assert.deepEqual((await request(h.app).get('/instances?owner=bob')).body.instances.map((i: any) => i.id), [id]);
    });
  });

  describe('expiry', () => {
    it('when an instance expires, then the scheduler warns first, then stops it as an operation of its own, once', async () => {
      const clock = movableClock(new Date());
      const notifier = recordingNotifier();
      const h = await harness({ clock: clock.now, notifier, config: guardrails({ expiryWarningMinutes: 60 }) });
      const made = (await create(h, { ttl_hours: 2 })).body;
      assert.equal(made.expires_at, new Date(clock.now().getTime() + 2 * HOUR).toISOString());
      assert.equal(made.on_expiry, 'stop');
      assert.equal(tagsOf(await ec2InstanceById(made.id))['ec2-creator:expires-at'], made.expires_at);

      clock.advance(30 * 60_000);
      let tick = await h.services.scheduler.tick();
      assert.deepEqual(tick.warned, [], 'no warning 90 minutes ahead');

      clock.advance(31 * 60_000);
      tick = await h.services.scheduler.tick();
      assert.deepEqual(tick.warned, [made.id]);
      assert.deepEqual(notifier.events.filter((e) => e.type === 'expiring').map((e) => e.instance.id), [made.id]);
      const expiring = await h.sql<{ type: string }>("SELECT type FROM events WHERE type = 'instance.expiring' AND instance_id = ?", made.id);
      assert.equal(expiring.length, 1, 'the warning is on the event stream');
      assert.deepEqual((await h.services.scheduler.tick()).warned, [], 'warned once');

      clock.advance(HOUR);
      tick = await h.services.scheduler.tick();
      assert.deepEqual(tick.started.map((s) => [s.instanceId, s.action, s.reason]), [[made.id, 'stop', 'expiry']]);
      await tick.settled;
      assert.equal((await ec2InstanceById(made.id)).State.Name, 'stopped');
      const ops = await operationsBy(h, 'scheduler');
      assert.deepEqual(ops.map((op: any) => [op.kind, op.status, op.instance_id]), [['stop', 'succeeded', made.id]]);
      assert.ok(notifier.events.some((e) => e.type === 'stopped' && e.instance.id === made.id), 'the stop is announced');

      clock.advance(HOUR);
      tick = await h.services.scheduler.tick();
      assert.deepEqual(tick.started, [], 'an expiry is acted on once');
      await request(h.app).post(`/instances/${made.id}/start`).expect(200);
      assert.deepEqual((await h.services.scheduler.tick()).started, [], 'a start by hand after expiry is not undone');
    });

    onSqlite('when on_expiry is terminate, then the instance is terminated at expiry', async () => {
      const clock = movableClock(new Date());
      const h = await harness({ clock: clock.now });
      const made = (await create(h, { ttl_hours: 1, on_expiry: 'terminate' })).body;
      clock.advance(HOUR + 1000);
      const tick = await h.services.scheduler.tick();
      await tick.settled;
      assert.equal((await ec2InstanceById(made.id)).State.Name, 'terminated');
      assert.equal((await request(h.app).get(`/instances/${made.id}`)).body.state, 'terminated');
    });

    onSqlite('when an expiry is asked beyond MAX_TTL_HOURS or in the past, or together with ttl_hours, then it is refused and nothing launched', async () => {
      const h = await harness({ config: guardrails({ maxTtlHours: 24 }) });
      expectProblem(await request(h.app).post('/instances').send({ ...BASE, ttl_hours: 25 }), 422);
      expectProblem(await request(h.app).post('/instances').send({ ...BASE, expires_at: '2020-01-01T00:00:00Z' }), 422);
      expectProblem(await request(h.app).post('/instances').send({ ...BASE, ttl_hours: 2, expires_at: new Date(Date.now() + HOUR).toISOString() }), 400);
      expectProblem(await request(h.app).post('/instances').send({ ...BASE, on_expiry: 'explode' }), 400);
      assert.equal((await allEc2Instances()).length, 0);
    });

    it('when PATCH changes or clears the expiry, then the record and the EC2 tag follow, and bad values change nothing', async () => {
      const clock = movableClock(new Date());
      const h = await harness({ clock: clock.now });
      const made = (await create(h, { ttl_hours: 2 })).body;
      const later = new Date(clock.now().getTime() + 5 * HOUR).toISOString();
      const patched = await request(h.app).patch(`/instances/${made.id}`).send({ expires_at: later, on_expiry: 'terminate' });
      assert.equal(patched.status, 200, JSON.stringify(patched.body));
      assert.equal(patched.body.expires_at, later);
      assert.equal(patched.body.on_expiry, 'terminate');
      assert.equal(tagsOf(await ec2InstanceById(made.id))['ec2-creator:expires-at'], later);

      expectProblem(await request(h.app).patch(`/instances/${made.id}`).send({ expires_at: '2020-01-01T00:00:00Z' }), 422);
      expectProblem(await request(h.app).patch(`/instances/${made.id}`).send({ schedule: { stop_at: '19:00', days: 'mon-fri', timezone: 'Mars/Olympus' } }), 400);
      expectProblem(await request(h.app).patch(`/instances/${made.id}`).send({}), 400);
      expectProblem(await request(h.app).patch(`/instances/${made.id}`).send({ expires_at: null, on_expiry: 'stop' }), 400);
      expectProblem(await request(h.app).patch(`/instances/${made.id}`).send({ owner: 'mallory' }), 400);
      assert.equal((await request(h.app).get(`/instances/${made.id}`)).body.expires_at, later, 'refused patches changed nothing');

      const cleared = await request(h.app).patch(`/instances/${made.id}`).send({ expires_at: null });
      assert.equal(cleared.status, 200);
      assert.equal(cleared.body.expires_at, null);
      assert.equal(cleared.body.on_expiry, null);
      assert.equal(tagsOf(await ec2InstanceById(made.id))['ec2-creator:expires-at'], undefined);
      clock.advance(10 * HOUR);
      assert.deepEqual((await h.services.scheduler.tick()).started, [], 'a cleared expiry never acts');
    });

    it('when the server died while the expiry stop ran, then after the restart the stop runs once; when EC2 had stopped it, none runs again', async () => {
      const clock = movableClock(new Date());
      const first = await harness({ clock: clock.now });
      const pending = (await create(first, { name: 'stop-lost', ttl_hours: 1 })).body;
      const reached = (await create(first, { name: 'stop-reached', ttl_hours: 1 })).body;
      // As a server killed mid-action leaves it: the scheduler's stops recorded running, the instances
      // shown stopping; EC2 stopped only the second before the server died.
      for (const [i, id] of [pending.id, reached.id].entries()) {
        await first.sql(`INSERT INTO operations (id, kind, instance_id, status, actor, created_at, started_at)
                         VALUES (?, 'stop', ?, 'running', 'scheduler', ?, ?)`, `op-killed-${i}`, id, clock.now().toISOString(), clock.now().toISOString());
        await first.records.instances.setState(id, 'stopping');
      }
      const { StopInstancesCommand } = await import('@aws-sdk/client-ec2');
      await ec2Client().send(new StopInstancesCommand({ InstanceIds: [reached.id] }));
      clock.advance(HOUR + 1000);

      const second = await harness({ clock: clock.now, ...(kind === 'sqlite' ? { databasePath: first.databaseUrl } : { databaseUrl: first.databaseUrl }) } as any);
      const recovery = second.services.lifecycle.recover({ requestId: 'startup' });
      await recovery.settled;
      await recovery.done;
      const tick = await second.services.scheduler.tick();
      assert.deepEqual(tick.started.map((s) => s.instanceId), [pending.id], 'only the stop that never reached EC2 runs again');
      assert.deepEqual(tick.alreadyDone.map((d) => d.instanceId), [reached.id]);
      await tick.settled;
      assert.equal((await ec2InstanceById(pending.id)).State.Name, 'stopped');
      const stops = (await operationsBy(second, 'scheduler')).filter((op: any) => op.status === 'succeeded');
      assert.deepEqual(stops.map((op: any) => op.instance_id), [pending.id]);
      clock.advance(HOUR);
      assert.deepEqual((await second.services.scheduler.tick()).started, [], 'and never again');
    });
  });

  describe('off-hours schedules', () => {
    onSqlite('when a Berlin schedule crosses the change to summer time, then it stops at 19:00 and starts at 08:00 local time on either side', async () => {
      // Friday 2026-03-27 is CET (UTC+1); Monday 2026-03-30 is CEST (UTC+2).
      const clock = movableClock(new Date('2026-03-27T12:00:00Z'));
      const h = await harness({ clock: clock.now, config: guardrails({ maxTtlHours: 0 }) });
      const made = (await create(h, { schedule: { stop_at: '19:00', start_at: '08:00', days: 'mon-fri', timezone: 'Europe/Berlin' } })).body;
      assert.deepEqual(made.schedule, { stop_at: '19:00', start_at: '08:00', days: 'mon-fri', timezone: 'Europe/Berlin' });

      clock.set('2026-03-27T17:59:00Z');
      assert.deepEqual((await h.services.scheduler.tick()).started, [], '18:59 in Berlin: not yet');
      clock.set('2026-03-27T18:00:30Z');
      let tick = await h.services.scheduler.tick();
      assert.deepEqual(tick.started.map((s) => s.action), ['stop']);
      await tick.settled;
      assert.equal((await ec2InstanceById(made.id)).State.Name, 'stopped');

      clock.set('2026-03-30T05:59:00Z'); // 07:59 CEST; the weekend passed without a start
      assert.deepEqual((await h.services.scheduler.tick()).started, []);
      clock.set('2026-03-30T06:00:30Z'); // 08:00:30 CEST, not 07:00 UTC as in winter
      tick = await h.services.scheduler.tick();
      assert.deepEqual(tick.started.map((s) => s.action), ['start']);
      await tick.settled;
      assert.equal((await ec2InstanceById(made.id)).State.Name, 'running');

      clock.set('2026-03-30T16:59:00Z'); // 18:59 CEST
      assert.deepEqual((await h.services.scheduler.tick()).started, []);
      clock.set('2026-03-30T17:00:30Z');
      assert.deepEqual((await h.services.scheduler.tick()).started.map((s) => s.action), ['stop']);
    });

    it('when an instance is stopped by hand during the day, then the schedule does not start it before its next start time', async () => {
      const clock = movableClock(new Date('2026-06-01T07:00:00Z')); // Monday 09:00 in Berlin
      const h = await harness({ clock: clock.now, config: guardrails({ maxTtlHours: 0 }) });
      const made = (await create(h, { schedule: { stop_at: '19:00', start_at: '08:00', days: 'daily', timezone: 'Europe/Berlin' } })).body;
      await request(h.app).post(`/instances/${made.id}/stop`).expect(200);
      clock.set('2026-06-01T12:00:00Z');
      assert.deepEqual((await h.services.scheduler.tick()).started, []);
      clock.set('2026-06-01T17:30:00Z'); // 19:30: the stop is due, the instance is stopped already
      const evening = await h.services.scheduler.tick();
      assert.deepEqual(evening.started, []);
      clock.set('2026-06-02T06:00:30Z'); // 08:00:30 the next day
      assert.deepEqual((await h.services.scheduler.tick()).started.map((s) => s.action), ['start']);
    });

  });

  describe('free-tier meter', () => {
    it('when an instance has run, then GET /usage counts its hours, volume and address, and projects the month', async () => {
      const clock = movableClock(new Date());
      const h = await harness({ clock: clock.now });
      const made = (await create(h, {})).body;
      const [history] = await h.sql<{ at: string }>('SELECT at FROM instance_history WHERE instance_id = ? ORDER BY row_id', made.id);
      clock.advance(3 * HOUR);
      const now = clock.now();
      const monthStart = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1);
      const monthEnd = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1);
      const hours = (now.getTime() - Math.max(monthStart, Date.parse(history!.at))) / HOUR;

      const usage = (await request(h.app).get('/usage').expect(200)).body;
      assert.equal(usage.month, now.toISOString().slice(0, 7));
      assert.ok(Math.abs(usage.instance_hours.used - hours) < 0.02, `${usage.instance_hours.used} vs ${hours}`);
      assert.equal(usage.instance_hours.allowance, 750);
      const left = (monthEnd - now.getTime()) / HOUR;
      assert.ok(Math.abs(usage.instance_hours.projected - (hours + left)) < 0.02);
      assert.ok(Math.abs(usage.public_ipv4_hours.used - hours) < 0.02);
      const monthHours = (monthEnd - monthStart) / HOUR;
      assert.ok(Math.abs(usage.ebs_gb_months.used - (8 * hours) / monthHours) < 0.002);
      assert.deepEqual(usage.top_instances.map((i: any) => i.instance_id), [made.id]);
      assert.equal(usage.instance_hours.estimated, false);

      expectProblem(await request(h.app).get('/usage?month=2026-13'), 400);
      expectProblem(await request(h.app).get('/usage?month=2999-01'), 400);
    });

    onSqlite('when FREE_TIER_GUARD=refuse and a create would pass an allowance, then 422 gives the numbers and nothing is launched', async () => {
      const h = await harness({ config: guardrails({ freeTier: { ...testConfig().guardrails.freeTier, instanceHours: 1, guard: 'refuse' } }) });
      const problem = expectProblem(await request(h.app).post('/instances').send(BASE), 422);
      assert.equal(problem.overages[0].field, 'instance_hours');
      assert.equal(problem.overages[0].allowance, 1);
      assert.ok(problem.overages[0].projected > 1);
      assert.equal((await allEc2Instances()).length, 0);
    });

    onSqlite('when a create is retried with its Idempotency-Key under FREE_TIER_GUARD=refuse, then the retry gets the first answer, not a refusal for its own instance', async () => {
      // At the start of a month one running instance projects the whole month (at most 744 hours): one fits
      // the allowance of 800, two would not.
      const today = new Date();
      const clock = movableClock(new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth() + 1, 1)));
      const h = await harness({ clock: clock.now, config: guardrails({ freeTier: { ...testConfig().guardrails.freeTier, instanceHours: 800, guard: 'refuse' } }) });
      const first = await request(h.app).post('/instances').set('Idempotency-Key', 'retry-1').send(BASE);
      assert.equal(first.status, 201, JSON.stringify(first.body));
      const again = await request(h.app).post('/instances').set('Idempotency-Key', 'retry-1').send(BASE);
      assert.equal(again.status, 201, JSON.stringify(again.body));
      assert.equal(again.body.id, first.body.id);
      const other = expectProblem(await request(h.app).post('/instances').send({ ...BASE, name: 'second' }), 422);
      assert.equal(other.overages[0].field, 'instance_hours');
      assert.equal((await allEc2Instances()).length, 1);
    });

    onSqlite('when FREE_TIER_GUARD=warn and a create would pass an allowance, then it is created with a Warning header and a note on its operation', async () => {
      const h = await harness({ config: guardrails({ freeTier: { ...testConfig().guardrails.freeTier, ebsGbMonths: 1, guard: 'warn' } }) });
      const response = await create(h, { storage_gb: 30 });
      assert.match(response.headers.warning, /^299 ec2-creator ".*EBS GB-months would reach/);
      const operation = (await request(h.app).get(`/operations/${response.headers['operation-id']}`)).body;
      assert.match(operation.note ?? '', /free tier would be exceeded/);
    });
  });

  describe('security groups', () => {
    onSqlite('when the managed group would be open to the internet, then 422 says how to narrow it and nothing is created', async () => {
      const h = await harness();
      const problem = expectProblem(await request(h.app).post('/instances').send({ ...BASE, create_security_group: true, ssh_cidr: '0.0.0.0/0' }), 422);
      assert.match(JSON.stringify(problem.errors), /narrow it/);
      expectProblem(await request(h.app).post('/instances').send({ ...BASE, create_security_group: true, ssh_cidr: '::/0' }), 422);
      expectProblem(await request(h.app).post('/instances').send({ ...BASE, create_security_group: true }), 422);
      expectProblem(await request(h.app).post('/instances').send({ ...BASE, create_security_group: true, ssh_cidr: '10.0.0.300/8' }), 400);
      const hostBits = expectProblem(await request(h.app).post('/instances').send({ ...BASE, create_security_group: true, ssh_cidr: '203.0.113.7/24' }), 400);
      assert.match(JSON.stringify(hostBits.errors), /203\.0\.113\.0\/24/);
      expectProblem(await request(h.app).post('/instances').send({ ...BASE, create_security_group: true, ssh_cidr: '2001:db8::1/32' }), 400);
      assert.equal((await allEc2Instances()).length, 0);
      const groups = (await ec2Client().send(new DescribeSecurityGroupsCommand({}))).SecurityGroups ?? [];
      assert.ok(groups.every((g) => !g.GroupName?.startsWith('ec2-creator-')), 'no group was made');
    });

    onSqlite('when ssh_cidr and web_cidr are given, then the instance is in a managed group with exactly those rules', async () => {
      const h = await harness();
      const made = (await create(h, { create_security_group: true, ssh_cidr: '203.0.113.7/32', web_cidr: '2001:db8::/32' })).body;
      const [group] = (await ec2Client().send(new DescribeSecurityGroupsCommand({ GroupIds: [made.security_group_id] }))).SecurityGroups ?? [];
      const rules = (group!.IpPermissions ?? []).flatMap((p) => [
        ...(p.IpRanges ?? []).map((r) => `${p.FromPort} ${r.CidrIp}`),
        ...(p.Ipv6Ranges ?? []).map((r) => `${p.FromPort} ${r.CidrIpv6}`),
      ]).sort();
      assert.deepEqual(rules, ['22 203.0.113.7/32', '443 2001:db8::/32', '80 2001:db8::/32']);
      assert.equal(tagsOf(group as any).ManagedBy, 'ec2-creator');
      const instance = await ec2InstanceById(made.id);
      assert.deepEqual(instance.SecurityGroups.map((g: any) => g.GroupId), [made.security_group_id]);
    });

    onSqlite('when SECURITY_GROUP_CIDR is set, then a create without ssh_cidr gets a group that lets SSH in from it alone', async () => {
      const h = await harness({ config: guardrails({ securityGroupCidr: '198.51.100.0/24' }) });
      const made = (await create(h, { create_security_group: true })).body;
      const [group] = (await ec2Client().send(new DescribeSecurityGroupsCommand({ GroupIds: [made.security_group_id] }))).SecurityGroups ?? [];
      assert.deepEqual(group!.IpPermissions!.map((p) => [p.FromPort, p.IpRanges?.[0]?.CidrIp]), [[22, '198.51.100.0/24']]);
    });

    onSqlite('when security_group_ids names existing groups, then it launches into them; a missing group or one in another VPC is refused', async () => {
      const h = await harness();
      const mine = await ec2Client().send(new CreateSecurityGroupCommand({ GroupName: 'team-ssh', Description: 'team' }));
      const made = (await create(h, { security_group_ids: [mine.GroupId] })).body;
      assert.deepEqual((await ec2InstanceById(made.id)).SecurityGroups.map((g: any) => g.GroupId), [mine.GroupId]);

      expectProblem(await request(h.app).post('/instances').send({ ...BASE, name: 'missing', security_group_ids: ['sg-0123456789abcdef0'] }), 422);
      const vpc = await ec2Client().send(new CreateVpcCommand({ CidrBlock: '10.99.0.0/16' }));
      const elsewhere = await ec2Client().send(new CreateSecurityGroupCommand({ GroupName: 'elsewhere', Description: 'x', VpcId: vpc.Vpc!.VpcId }));
      const problem = expectProblem(await request(h.app).post('/instances').send({ ...BASE, name: 'elsewhere', security_group_ids: [elsewhere.GroupId] }), 422);
      assert.match(JSON.stringify(problem.errors), /default VPC/);
      expectProblem(await request(h.app).post('/instances').send({ ...BASE, security_group_ids: [mine.GroupId], create_security_group: true }), 400);
      assert.equal((await allEc2Instances()).length, 1);
    });
  });
});

describe('the scheduler after a failed action', () => {
  for (const passing of ['throttling', 'the instance still pending (IncorrectInstanceState)'] as const) it(`when an expiry stop fails on something passing (${passing}), then it stays due and is tried again after a pause, and recorded once it succeeds`, async () => {
    const { createHarness } = await import('../support/app-harness.js');
    const { createScheduler, RETRY_AFTER_FAILURE_MS } = await import('../../app/guardrails/scheduler.js');
    const { IncorrectStateError, ScriptError } = await import('../../app/domain/errors.js');
    const failure = () => (passing === 'throttling'
      ? new ScriptError('throttled', 'stop_instance.sh', 'Rate exceeded')
      : new IncorrectStateError("EC2 refused to stop i-0000000000000000e: This instance 'i-0000000000000000e' is not in a state from which it can be stopped."));
    const h = createHarness();
    try {
      const clock = movableClock(new Date('2026-06-01T10:00:00Z'));
      await h.records.instances.insertLaunch({
        clientToken: 'tok-1', name: 'expiring', ami: UBUNTU_X86_AMI, instanceType: 't3.micro', storageGb: 8, keyName: 'k',
        securityGroupId: null, loginUser: 'ubuntu', expiresAt: '2026-06-01T09:00:00.000Z', onExpiry: 'stop',
      });
      await h.records.instances.completeLaunch('tok-1', {
        instanceId: 'i-0000000000000000e', name: 'expiring', state: 'running', publicIp: null, privateIp: null, storageGb: 8,
        keyName: 'k', securityGroupId: null, launchTime: null,
      });
      let outcome: 'throttled' | 'ok' = 'throttled';
      const stops: string[] = [];
      const lifecycle = {
        async stop(instanceId: string) {
          stops.push(instanceId);
          const done = outcome === 'ok' ? Promise.resolve({}) : Promise.reject(failure());
          done.catch(() => undefined);
          return { type: 'started', operation: { id: `op-${stops.length}` }, done } as any;
        },
        start: async () => { throw new Error('not expected'); },
        destroy: async () => { throw new Error('not expected'); },
      };
      const scheduler = createScheduler({
        store: h.records, lifecycle, config: { expiryWarningMinutes: 0 }, clock: clock.now, logger: h.logger,
        notifier: recordingNotifier(),
      });
      await (await scheduler.tick()).settled;
      assert.deepEqual(stops, ['i-0000000000000000e']);
      assert.equal((await h.records.instances.findByInstanceId('i-0000000000000000e'))?.expiry_done_at, null, 'still due');
      assert.ok(h.logs.some((line) => line.message === 'a scheduled action did not finish; it stays due and is tried again'));

      clock.advance(RETRY_AFTER_FAILURE_MS / 2);
      await (await scheduler.tick()).settled;
      assert.equal(stops.length, 1, 'not hammered while the pause lasts');

      outcome = 'ok';
      clock.advance(RETRY_AFTER_FAILURE_MS);
      await (await scheduler.tick()).settled;
      assert.equal(stops.length, 2);
      assert.notEqual((await h.records.instances.findByInstanceId('i-0000000000000000e'))?.expiry_done_at, null, 'done once it succeeded');
      clock.advance(RETRY_AFTER_FAILURE_MS * 2);
      await (await scheduler.tick()).settled;
      assert.equal(stops.length, 2, 'and never again');
    } finally {
      h.close();
    }
  });
});
