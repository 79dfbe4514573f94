import assert from 'node:assert/strict';
import request from 'supertest';
import { resetMoto } from '../support/global-fixture.js';
import { createKeyPair, ec2InstanceById, UBUNTU_X86_AMI } from '../support/ec2-reader.js';
import { arrangeRecordedInstance, createHarnessOn, storeKinds, type Harness } from '../support/app-harness.js';
import { capturedLogger } from '../support/log-capture.js';
import { startSilentServer, startSmtpServer, testEmailConfig } from '../support/smtp.js';
import { createEmailNotifier } from '../../app/notify/email.js';

async function launch(h: Harness): Promise<any> {
  const response = await request(h.app)
    .post('/instances')
    .send({ name: 'mailed', ami: UBUNTU_X86_AMI, instance_type: 't3.micro', storage_gb: 8 });
  assert.equal(response.status, 201, JSON.stringify(response.body));
  return response.body;
}

for (const kind of storeKinds()) describe(`email on lifecycle events through the API (${kind})`, () => {
  let h: Harness | undefined;
  beforeEach(async () => {
    await resetMoto();
    await createKeyPair();
  });
  afterEach(() => h?.close());

  it('when an instance is created, stopped, started and terminated, then one message per event reaches the recipient', async () => {
    const smtp = await startSmtpServer();
    const log = capturedLogger();
    const notifier = createEmailNotifier({ config: testEmailConfig(smtp.port, { attempts: 2 }), logger: log.logger });
    h = await createHarnessOn(kind, { notifier });
    try {
      const created = await launch(h);
      await request(h.app).post(`/instances/${created.id}/stop`).expect(200);
      const started = (await request(h.app).post(`/instances/${created.id}/start`).expect(200)).body;
      await request(h.app).delete(`/instances/${created.id}`).expect(204);
      await notifier.idle();

      const mails = await smtp.waitFor(4);
      assert.equal(mails.length, 4);
      assert.deepEqual(mails.map((mail) => mail.subject), [
        `[ec2-creator] mailed (${created.id}) created`,
        `[ec2-creator] mailed (${created.id}) stopped`,
        `[ec2-creator] mailed (${created.id}) started`,
        `[ec2-creator] mailed (${created.id}) terminated`,
      ]);
      for (const mail of mails) assert.deepEqual(mail.to, ['ops@example.test']);
      assert.match(mails[1]?.raw ?? '', /State: +stopped/);
      assert.match(mails[1]?.raw ?? '', /Public IP: +-/, 'a stopped instance has no public IP');
      const ec2 = await ec2InstanceById(created.id);
      assert.ok(started.public_ip);
      assert.match(mails[2]?.raw ?? '', new RegExp(`Public IP: +${started.public_ip.replaceAll('.', '\\.')}`));
      assert.match(mails[3]?.raw ?? '', /State: +terminated/);
      assert.equal(ec2.State.Name, 'terminated');
      assert.equal(log.lines().filter((line) => line.message === 'email sent').length, 4);
    } finally {
      await smtp.close();
    }
  });

  it('when the SMTP server hangs, then requests still answer while the message waits in the background', async () => {
    const silent = await startSilentServer();
    const log = capturedLogger();
    const notifier = createEmailNotifier({ config: testEmailConfig(silent.port, { attempts: 1 }), logger: log.logger });
    h = await createHarnessOn(kind, { notifier });
    try {
      // The create is not the subject here: the instance is arranged in-process and recorded as a create
      // records it, and the "created" event is handed to the notifier as the create hands it over.
      const created = await h.services.instances.recorded(await arrangeRecordedInstance(h, { name: 'mailed' }));
      notifier.notify({ type: 'created', instance: created, at: created.updated_at });
      while (silent.connections < 1) await new Promise((resolve) => setTimeout(resolve, 10));

      // The "created" message is stuck on a server that never answers; the API does not care.
      const stopped = await request(h.app).post(`/instances/${created.id}/stop`);
      assert.equal(stopped.status, 200);
      assert.equal(stopped.body.state, 'stopped');
      await request(h.app).get('/health').expect(200);
      assert.deepEqual(log.lines().filter((line) => /^email /.test(line.message)), [], 'no delivery has finished yet');

      await silent.close();
      await notifier.idle();
      const outcomes = log.lines().filter((line) => /^email /.test(line.message));
      assert.deepEqual(outcomes.map((line) => line.message), ['email given up', 'email given up']);
      assert.equal((await h.records.instances.findByInstanceId(created.id))?.state, 'stopped', 'the failed email changed nothing that was recorded');
    } finally {
      await silent.close();
    }
  });
});
