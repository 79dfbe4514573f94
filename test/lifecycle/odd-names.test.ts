/**
 * Reconciliation reads every instance in the region, and EC2 allows any characters in a tag value. One
 * instance with a tab in its Name, made by anyone, must not fail the sync for everyone: names are data,
 * taken as EC2 has them and shown JSON-escaped; an unmanaged instance the service cannot describe is left
 * out of the sync, never failing it.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import request from 'supertest';
import { resetMoto } from '../support/global-fixture.js';
import { createKeyPair, ec2InstanceById, launchOutsideTheService } from '../support/ec2-reader.js';
import { createHarness, type Harness } from '../support/app-harness.js';

const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default;

/** The 200 answer of GET `path` as the service's own OpenAPI document describes it. */
async function documentedAnswer(h: Harness, path: string): Promise<(body: unknown) => boolean> {
  const document = (await request(h.app).get('/openapi.json')).body;
  const schema = document.paths[path].get.responses['200'].content['application/json'].schema;
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats(ajv);
  return ajv.compile({ ...schema, components: document.components });
}

/** No raw control character (U+0000–U+001F) anywhere in a text that is meant to be one JSON document or line. */
const RAW_CONTROL = /[\u0000-\u001f]/;

describe('sync survives any instance in the region', function () {
  this.timeout(120_000);
  const harnesses: Harness[] = [];
  const dirs: string[] = [];

  afterEach(() => {
    for (const h of harnesses.splice(0)) h.close();
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  function harness(options: Parameters<typeof createHarness>[0] = {}): Harness {
    const h = createHarness(options);
    harnesses.push(h);
    return h;
  }

  it('when instances in the region carry tabs and line breaks in their Name, then sync answers 200 and imports the managed one with its exact name, shown JSON-escaped', async () => {
    await resetMoto();
    await createKeyPair();
    // Only what EC2's XML answers carry unchanged (tab, LF); other control characters are covered below.
    const managedName = 'db\tprimary\nrack 7';
    const foreignName = 'someone\telse\r\nentirely';
    const [managed] = await launchOutsideTheService({ tags: { Name: managedName, ManagedBy: 'ec2-creator' } });
    const [foreign] = await launchOutsideTheService({ tags: { Name: foreignName } });
    assert.ok(managed && foreign);
    assert.equal((await ec2InstanceById(managed)).Tags.find((t: any) => t.Key === 'Name').Value, managedName, 'EC2 keeps the name as given');
    const h = harness();

    const response = await request(h.app).post('/instances/sync').set('X-Request-Id', 'odd-sync');

    assert.equal(response.status, 200, JSON.stringify(response.body));
    assert.equal(response.body.imported, 1);
    assert.equal(h.row(managed)?.name, managedName, 'stored exactly as EC2 has it');
    assert.equal(h.row(managed)?.launch_status, 'launched');
    assert.equal(h.row(foreign), undefined, 'an unmanaged instance is never imported');
    const listed = await request(h.app).get('/instances');
    assert.equal(listed.status, 200);
    assert.deepEqual(listed.body.instances.map((i: any) => [i.id, i.name]), [[managed, managedName]]);
    assert.ok((await documentedAnswer(h, '/instances'))(listed.body), 'the answer matches its documented schema');
    assert.ok(listed.text.includes(JSON.stringify(managedName)), 'the answer carries the name JSON-escaped');
    assert.doesNotMatch(listed.text, RAW_CONTROL);
    const one = await request(h.app).get(`/instances/${managed}`);
    assert.equal(one.status, 200, JSON.stringify(one.body));
    assert.equal(one.body.name, managedName, 'describe_instance.sh reads it back as well');
    const op = (await request(h.app).get(`/operations/${response.body.operation_id}`)).body;
    assert.equal(op.status, 'succeeded');
    // The harness parses every log line as one JSON document: a name that broke a line would have thrown there.
    assert.ok(h.logs.some((l) => l.message === 'reconciliation imported an instance launched outside the API' && l.instance_id === managed));
  });

  it('when an instance not tagged ManagedBy=ec2-creator has a description the service cannot use, then sync answers 200, leaves it out, logs its id, and a record whose instance is among them is not judged', async () => {
    const scripts = mkdtempSync(path.join(tmpdir(), 'ec2-creator-odd-'));
    dirs.push(scripts);
    const doc = (id: string, overrides: Record<string, unknown>) => ({
      id, name: 'x', state: 'running', public_ip: null, private_ip: '10.0.0.5', ami: 'ami-1e749f67',
      instance_type: 't3.micro', storage_gb: 8, key_name: 'k', security_group_ids: [],
      launch_time: '2024-05-01T10:00:00+00:00', client_token: null, managed: false, ...overrides,
    });
    const listing = {
      instances: [
        doc('i-0000000000000000a', { name: 'kept', state: 'stopped', managed: true }),
        // Its ManagedBy tag was removed by someone; its key pair name is something the service refuses.
        doc('i-0000000000000000b', { key_name: 'k\u0000ey' }),
        doc('i-0000000000000000c', { instance_type: 'NOT A TYPE' }),
        doc('not-an-instance-id', {}),
      ],
    };
    writeFileSync(path.join(scripts, 'list_instances.sh'), `#!/usr/bin/env bash\ncat <<'JSON'\n${JSON.stringify(listing)}\nJSON\n`);
    chmodSync(path.join(scripts, 'list_instances.sh'), 0o755);
    const h = harness({ scriptsDir: scripts });
    for (const [id, name] of [['i-0000000000000000a', 'kept'], ['i-0000000000000000b', 'untagged']] as const) {
      h.store.instances.insertLaunch({
        clientToken: `ec2c-${id}`, name, ami: 'ami-1e749f67', instanceType: 't3.micro', storageGb: 8, keyName: 'k',
        securityGroupId: null, loginUser: 'ubuntu',
      });
      h.store.instances.completeLaunch(`ec2c-${id}`, {
        instanceId: id, name, state: 'running', publicIp: null, privateIp: null, storageGb: 8, keyName: 'k',
        securityGroupId: null, launchTime: null,
      });
    }
    const untouched = h.row('i-0000000000000000b');

    const response = await request(h.app).post('/instances/sync');

    assert.equal(response.status, 200, JSON.stringify(response.body));
    assert.deepEqual({ ...response.body, operation_id: undefined }, { updated: 1, imported: 0, vanished: 0, unconfirmed: 0, operation_id: undefined });
    assert.equal(h.row('i-0000000000000000a')?.state, 'stopped');
    assert.deepEqual(h.row('i-0000000000000000b'), untouched, 'not marked vanished, not changed');
    assert.equal(h.rowCount(), 2);
    const skipped = h.logs.find((l) => l.message === 'reconciliation left out instances it could not read');
    assert.ok(skipped, 'the skip is logged');
    assert.deepEqual(skipped.instance_ids, ['i-0000000000000000b', 'i-0000000000000000c']);
    assert.equal(skipped.without_id, 1);
  });

  it('when describe_instance.sh reports a name with control characters, then GET answers 200 with the name as EC2 has it, JSON-escaped', async () => {
    const scripts = mkdtempSync(path.join(tmpdir(), 'ec2-creator-odd-'));
    dirs.push(scripts);
    const id = 'i-0123456789abcdef0';
    const name = 'evil\u001b[31m\u0007name\nnext';
    const document = {
      id, name, state: 'running', public_ip: null, private_ip: null, ami: 'ami-1e749f67', instance_type: 't3.micro',
      storage_gb: 8, key_name: 'k', security_group_ids: [], launch_time: '2024-05-01T10:00:00+00:00',
      client_token: null, managed: true,
    };
    writeFileSync(path.join(scripts, 'describe_instance.sh'), `#!/usr/bin/env bash\ncat <<'JSON'\n${JSON.stringify(document)}\nJSON\n`);
    chmodSync(path.join(scripts, 'describe_instance.sh'), 0o755);
    const h = harness({ scriptsDir: scripts });
    h.store.instances.insertLaunch({
      clientToken: 'ec2c-odd', name: 'web', ami: 'ami-1e749f67', instanceType: 't3.micro', storageGb: 8, keyName: 'k',
      securityGroupId: null, loginUser: 'ubuntu',
    });
    h.store.instances.completeLaunch('ec2c-odd', {
      instanceId: id, name: 'web', state: 'running', publicIp: null, privateIp: null, storageGb: 8, keyName: 'k',
      securityGroupId: null, launchTime: null,
    });

    const response = await request(h.app).get(`/instances/${id}`);

    assert.equal(response.status, 200, JSON.stringify(response.body));
    assert.equal(response.body.name, name);
    assert.equal(h.row(id)?.name, name);
    assert.doesNotMatch(response.text, RAW_CONTROL);
    assert.ok(h.logs.some((l) => l.message === 'script run' && l.script === 'describe_instance.sh' && l.outcome === 'ok'));
  });
});
