import assert from 'node:assert/strict';
import { resetMoto } from '../support/global-fixture.js';
import { ec2InstanceById, launchOutsideTheService } from '../support/ec2-reader.js';
import { launchManaged, runScript, tagsOf } from '../support/scripts.js';

// A closed loopback port: any AWS call would fail with exit 5, so exit 2 proves none was made.
const NO_AWS = { AWS_ENDPOINT_URL: 'http://127.0.0.1:9' };

describe('tag_instance.sh', () => {
  beforeEach(resetMoto);

  it('when tags are set, then EC2 holds them and the printed instance carries every tag', async () => {
    const { id, clientToken } = await launchManaged('tag-me');
    const result = await runScript('tag_instance.sh', [
      '--set=Owner=carol', '--set', 'team=web platform', '--set=ec2-creator:expires-at=2026-11-24T10:00:00.000Z', '--', id,
    ]);

    assert.equal(result.exitCode, 0, result.stderr);
    const expected = {
      Name: 'tag-me', ManagedBy: 'ec2-creator', 'ec2-creator:client-token': clientToken,
      Owner: 'carol', team: 'web platform', 'ec2-creator:expires-at': '2026-11-24T10:00:00.000Z',
    };
    assert.deepEqual(tagsOf(await ec2InstanceById(id)), expected);
    const printed = result.json();
    assert.equal(printed.id, id);
    assert.equal(printed.managed, true);
    assert.deepEqual(printed.tags, expected);
    assert.equal(printed.storage_gb, 8, 'read by hand unless --no-storage');
  });

  it('when tags are removed and one is overwritten, then EC2 no longer holds the removed ones', async () => {
    const { id } = await launchManaged('untag-me', { tags: { team: 'a', Owner: 'bob' }, expiresAt: '2026-01-01T00:00:00Z' });
    assert.equal(tagsOf(await ec2InstanceById(id)).team, 'a');
    const result = await runScript('tag_instance.sh', ['--no-storage', '--remove=team', '--remove', 'ec2-creator:expires-at', '--remove=absent', '--set=Owner=carol', id]);

    assert.equal(result.exitCode, 0, result.stderr);
    const tags = tagsOf(await ec2InstanceById(id));
    assert.equal(tags.team, undefined);
    assert.equal(tags['ec2-creator:expires-at'], undefined);
    assert.equal(tags.Owner, 'carol');
    assert.equal(tags.ManagedBy, 'ec2-creator');
    assert.deepEqual(result.json().tags, tags);
    assert.equal(result.json().storage_gb, null);
  });

  it('when the instance is not tagged as managed, then it exits 4 and leaves its tags unchanged', async () => {
    const [id] = await launchOutsideTheService({ tags: { Name: 'theirs', Owner: 'dave' } });
    const result = await runScript('tag_instance.sh', ['--set=Owner=mallory', '--remove=team', '--', id as string]);
    assert.equal(result.exitCode, 4, result.stderr);
    assert.equal(result.json().error.code, 'NotManaged');
    assert.match(result.stderr, /not tagged ManagedBy=ec2-creator/);
    assert.deepEqual(tagsOf(await ec2InstanceById(id as string)), { Name: 'theirs', Owner: 'dave' });
  });

  it('when the instance does not exist, then it exits 3', async () => {
    const result = await runScript('tag_instance.sh', ['--set=Owner=x', 'i-0123456789abcdef0']);
    assert.equal(result.exitCode, 3, result.stderr);
    assert.equal(result.json().error.code, 'InvalidInstanceID.NotFound');
  });

  const refused: [string, string[], RegExp][] = [
    ['no change at all', [], /at least one --set/],
    ['Name set', ['--set=Name=renamed'], /Name cannot be changed/],
    ['ManagedBy removed', ['--remove=ManagedBy'], /ManagedBy cannot be changed/],
    ['ManagedBy set', ['--set=ManagedBy=someone'], /ManagedBy cannot be changed/],
    ['the client-token tag removed', ['--remove=ec2-creator:client-token'], /client-token cannot be changed/],
    ['an aws: key', ['--set=aws:createdBy=x'], /aws: belong to AWS/],
    ['an Aws: key removed', ['--remove=Aws:x'], /aws: belong to AWS/],
    ['a key both set and removed', ['--set=team=a', '--remove=team'], /both set and removed/],
    ['a key set twice', ['--set=team=a', '--set=team=b'], /more than once/],
    ['a set without =', ['--set=team'], /KEY=VALUE/],
    ['a value with a shell substitution', ['--set=team=$(touch /tmp/x)'], /may hold only/],
    ['a key with a newline', ['--set=team\n=a'], /may hold only/],
    ['a malformed expiry', ['--set=ec2-creator:expires-at=soon'], /ISO 8601 UTC/],
    ['a 257-character value', [`--set=team=${'v'.repeat(257)}`], /257 characters long/],
  ];
  for (const [what, options, message] of refused) {
    it(`when given ${what}, then it exits 2 before any AWS call`, async () => {
      const result = await runScript('tag_instance.sh', [...options, '--', 'i-0123456789abcdef0'], { env: NO_AWS });
      assert.equal(result.exitCode, 2, result.stderr);
      assert.equal(result.json().error.code, 'InvalidArgument');
      assert.match(result.stderr, message);
    });
  }

  it('when a refused change is asked for a real instance, then its tags stay as they were', async () => {
    const { id, clientToken } = await launchManaged('keep');
    const result = await runScript('tag_instance.sh', ['--set=Owner=x', '--remove=ManagedBy', id]);
    assert.equal(result.exitCode, 2);
    assert.deepEqual(tagsOf(await ec2InstanceById(id)), { Name: 'keep', ManagedBy: 'ec2-creator', 'ec2-creator:client-token': clientToken });
  });

  it('when a key or value starts with -, then it is stored literally and read as no option', async () => {
    const { id } = await launchManaged('literal');
    const result = await runScript('tag_instance.sh', ['--set=-n=--endpoint-url=http://127.0.0.1:1', '--set', '--tags=@x', id]);
    assert.equal(result.exitCode, 0, result.stderr);
    const tags = tagsOf(await ec2InstanceById(id));
    assert.equal(tags['-n'], '--endpoint-url=http://127.0.0.1:1');
    assert.equal(tags['--tags'], '@x');
  });
});
