import assert from 'node:assert/strict';
import { freeLoopbackPort } from '../../scripts/lib/ports.js';
import { capturedLogger } from '../support/log-capture.js';
import { startSmtpServer, testEmailConfig } from '../support/smtp.js';
import { ConfigError } from '../../app/config.js';
import { loadEmailConfig } from '../../app/notify/config.js';
import { createEmailNotifier } from '../../app/notify/email.js';
import type { InstanceEvent } from '../../app/notify/events.js';

function event(type: InstanceEvent['type'] = 'created'): InstanceEvent {
  return {
    type,
    at: '2026-11-22T10:00:00.000Z',
    requestId: 'req-123',
    instance: {
      id: 'i-0123456789abcdef0', name: 'web-1', state: 'running', public_ip: '54.1.2.3', private_ip: '10.0.0.5',
      ssh_string: 'ssh -i ~/.ssh/my_ec2_keypair.pem ubuntu@54.1.2.3', ami: 'ami-1e749f67', instance_type: 't3.micro',
      storage_gb: 8, key_name: 'my_ec2_keypair', security_group_id: null, backend_used: 'awscli',
      launch_time: '2026-11-22T09:59:00.000Z', created_at: '2026-11-22T09:59:00.000Z', updated_at: '2026-11-22T10:00:00.000Z',
      owner: 'ops', tags: {}, expires_at: null, on_expiry: null, schedule: null,
    },
  };
}

describe('email notifications', () => {
  it('when an instance event is notified, then the SMTP server receives one message naming the instance', async () => {
    const smtp = await startSmtpServer();
    const log = capturedLogger();
    try {
      const notifier = createEmailNotifier({ config: testEmailConfig(smtp.port, { to: ['ops@example.test', 'lead@example.test'] }), logger: log.logger });
      notifier.notify(event('stopped'));
      await notifier.idle();

      assert.equal(smtp.received.length, 1);
      const [mail] = smtp.received;
      assert.deepEqual(mail?.to, ['ops@example.test', 'lead@example.test']);
      assert.equal(mail?.from, 'ec2-creator@example.test');
      assert.equal(mail?.subject, '[ec2-creator] web-1 (i-0123456789abcdef0) stopped');
      assert.match(mail?.raw ?? '', /State: +running/);
      assert.match(mail?.raw ?? '', /Public IP: +54\.1\.2\.3/);
      assert.match(mail?.raw ?? '', /Request id: +req-123/);
      const sent = log.lines().filter((line) => line.message === 'email sent');
      assert.equal(sent.length, 1);
      assert.equal(sent[0].instance_id, 'i-0123456789abcdef0');
      assert.equal(sent[0].attempt, 1);
    } finally {
      await smtp.close();
    }
  });

  it('when the server refuses the first attempts, then the message is retried with backoff and each attempt is logged', async () => {
    const smtp = await startSmtpServer({ refuseFirst: 2 });
    const log = capturedLogger();
    try {
      const config = testEmailConfig(smtp.port, { to: ['ops@example.test'] });
      const notifier = createEmailNotifier({ config, logger: log.logger });
      notifier.notify(event());
      await notifier.idle();

      assert.equal(smtp.refused, 2);
      assert.equal(smtp.received.length, 1);
      const attempts = log.lines().filter((line) => /^email /.test(line.message));
      assert.deepEqual(attempts.map((line) => [line.message, line.attempt]), [
        ['email attempt failed', 1], ['email attempt failed', 2], ['email sent', 3],
      ]);
      assert.deepEqual(attempts.slice(0, 2).map((line) => line.retry_in_ms), [10, 20], 'the delay doubles');
      assert.match(attempts[0].error, /mailbox busy/);
    } finally {
      await smtp.close();
    }
  });

  it('when nothing listens on the SMTP port, then notify returns at once and the notifier gives up after its attempts', async () => {
    const log = capturedLogger();
    const notifier = createEmailNotifier({ config: testEmailConfig(await freeLoopbackPort()), logger: log.logger });

    const returned = notifier.notify(event());
    assert.equal(returned, undefined, 'notify hands over and returns; there is nothing to await');
    assert.equal(log.lines().length, 0, 'no attempt has run before the caller got control back');
    await notifier.idle();

    const attempts = log.lines().filter((line) => /^email /.test(line.message));
    assert.deepEqual(attempts.map((line) => line.message), ['email attempt failed', 'email attempt failed', 'email given up']);
    assert.match(attempts[0].error, /ECONNREFUSED/);
  });

  it('when SMTP credentials are configured, then the password never appears in the log', async () => {
    const log = capturedLogger();
    const config = loadEmailConfig({
      SMTP_HOST: '127.0.0.1', SMTP_PORT: String(await freeLoopbackPort()), NOTIFICATION_EMAIL: 'ops@example.test',
      SMTP_USER: 'mailer', SMTP_PASSWORD: 'hunter2-secret', SMTP_ATTEMPTS: '1',
    });
    assert.ok(config);
    assert.equal(config.requireTls, true, 'a password is only sent over TLS');
    const notifier = createEmailNotifier({ config, logger: log.logger });
    notifier.notify(event());
    await notifier.idle();
    assert.ok(log.lines().length > 0);
    assert.ok(!log.text().includes('hunter2-secret'));
  });
});

describe('email configuration', () => {
  it('when neither SMTP_HOST nor NOTIFICATION_EMAIL is set, then email is off', () => {
    assert.equal(loadEmailConfig({}), null);
  });

  const broken: [Record<string, string>, string][] = [
    [{ SMTP_HOST: 'mail.example.test' }, 'NOTIFICATION_EMAIL'],
    [{ NOTIFICATION_EMAIL: 'ops@example.test' }, 'SMTP_HOST'],
    [{ SMTP_HOST: 'mail', NOTIFICATION_EMAIL: 'not-an-address' }, 'NOTIFICATION_EMAIL'],
    [{ SMTP_HOST: 'mail', NOTIFICATION_EMAIL: 'ops@example.test', SMTP_PORT: '70000' }, 'SMTP_PORT'],
    [{ SMTP_HOST: 'mail', NOTIFICATION_EMAIL: 'ops@example.test', SMTP_USER: 'u' }, 'SMTP_PASSWORD'],
    [{ SMTP_HOST: 'mail', NOTIFICATION_EMAIL: 'ops@example.test', SMTP_SECURE: 'maybe' }, 'SMTP_SECURE'],
  ];
  for (const [env, variable] of broken) {
    it(`when ${JSON.stringify(env)}, then start-up stops naming ${variable}`, () => {
      assert.throws(() => loadEmailConfig(env), (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.equal(error.variable, variable);
        assert.match(error.message, new RegExp(`^${variable}: `));
        return true;
      });
    });
  }

  it('when port 465 is chosen, then implicit TLS is on', () => {
    assert.equal(loadEmailConfig({ SMTP_HOST: 'mail', NOTIFICATION_EMAIL: 'a@b.test', SMTP_PORT: '465' })?.secure, true);
  });
});
