/**
 * Email on lifecycle events, through nodemailer. Each event is sent in the background with
 * exponential backoff between attempts; every attempt is logged; a failure is never thrown.
 */
import nodemailer from 'nodemailer';
import type { Logger } from '../logger.js';
import type { EmailConfig } from './config.js';
import { createBackground } from './background.js';
import type { InstanceEvent, Notifier } from './events.js';

/** The parts of a nodemailer transport we use; tests may hand in another. */
export interface MailTransport {
  sendMail(message: { from: string; to: string[]; subject: string; text: string }): Promise<unknown>;
}

const SOCKET_TIMEOUT_MS = 15_000;

export function createSmtpTransport(config: EmailConfig): MailTransport {
  return nodemailer.createTransport({
    host: config.host,
    port: config.port,
    secure: config.secure,
    requireTLS: config.requireTls,
    auth: config.user === undefined ? undefined : { user: config.user, pass: config.password ?? '' },
    // Bounded, so that a server that accepts and then says nothing costs one attempt, not forever.
    connectionTimeout: SOCKET_TIMEOUT_MS,
    greetingTimeout: SOCKET_TIMEOUT_MS,
    socketTimeout: SOCKET_TIMEOUT_MS,
  });
}

const VERBS: Record<InstanceEvent['type'], string> = {
  created: 'created',
  started: 'started',
  stopped: 'stopped',
  terminated: 'terminated',
  expiring: 'about to expire',
};

/** What the scheduler will do at expiry, for the warning. */
function expiryLine(instance: InstanceEvent['instance']): string {
  const action = instance.on_expiry === 'terminate' ? 'terminated' : 'stopped';
  return `It will be ${action} at ${instance.expires_at ?? '-'}. To keep it longer: PATCH /instances/${instance.id} with a later expires_at, or expires_at null.`;
}

export function emailFor(event: InstanceEvent): { subject: string; text: string } {
  const { instance } = event;
  const subject = `[ec2-creator] ${instance.name} (${instance.id}) ${VERBS[event.type]}`;
  const lines: [string, string | number | null][] = [
    ['Instance', instance.id],
    ['Name', instance.name],
    ['State', instance.state],
    ['Type', instance.instance_type],
    ['AMI', instance.ami],
    ['Storage', instance.storage_gb === null ? null : `${instance.storage_gb} GiB`],
    ['Public IP', instance.public_ip],
    ['Private IP', instance.private_ip],
    ['SSH', instance.ssh_string === '' ? null : instance.ssh_string],
    ['Key pair', instance.key_name],
    ['Owner', instance.owner ?? null],
    ['Expires at', instance.expires_at ?? null],
    ['Recorded at', event.at],
    ['Request id', event.requestId ?? null],
  ];
  const text = [
    event.type === 'expiring'
      ? `Instance ${instance.name} (${instance.id}) is ${VERBS[event.type]}. ${expiryLine(instance)}`
      : `Instance ${instance.name} (${instance.id}) was ${VERBS[event.type]}.`,
    '',
    ...lines.map(([label, value]) => `${`${label}:`.padEnd(13)}${value ?? '-'}`),
    '',
    'Sent by ec2-creator.',
  ].join('\n');
  return { subject, text };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export function createEmailNotifier(options: {
  config: EmailConfig;
  logger: Logger;
  transport?: MailTransport;
}): Notifier {
  const { config, logger } = options;
  const transport = options.transport ?? createSmtpTransport(config);

  async function deliver(event: InstanceEvent): Promise<void> {
    const { subject, text } = emailFor(event);
    const meta = { event: event.type, instance_id: event.instance.id, request_id: event.requestId, to: config.to };
    for (let attempt = 1; attempt <= config.attempts; attempt += 1) {
      try {
        await transport.sendMail({ from: config.from, to: config.to, subject, text });
        logger.info('email sent', { ...meta, attempt });
        return;
      } catch (error) {
        const last = attempt === config.attempts;
        const delayMs = config.retryBaseMs * 2 ** (attempt - 1);
        logger.warn(last ? 'email given up' : 'email attempt failed', {
          ...meta,
          attempt,
          attempts: config.attempts,
          error: error instanceof Error ? error.message : String(error),
          ...(last ? {} : { retry_in_ms: delayMs }),
        });
        if (!last) await sleep(delayMs);
      }
    }
  }

  const background = createBackground(logger, 'email notifier failed');
  return {
    notify: (event) => background.run(() => deliver(event)),
    idle: () => background.idle(),
  };
}
