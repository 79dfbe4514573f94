/**
 * Webhooks on lifecycle events: each event is POSTed to every WEBHOOK_URLS entry in the background, signed,
 * retried with exponential backoff on network errors, timeouts, 429 and 5xx (another 4xx is final), every
 * attempt logged. A delivery keeps its id across retries, so a receiver can drop a duplicate.
 *
 * Signature (like GitHub's X-Hub-Signature-256, plus a timestamp against replays):
 *   X-Ec2-Creator-Timestamp: <unix seconds>
 *   X-Ec2-Creator-Signature-256: sha256=<hex of HMAC-SHA256(WEBHOOK_SECRET, "<timestamp>.<raw body>")>
 */
import { createHmac, randomUUID } from 'node:crypto';
import type { Logger } from '../logger.js';
import type { WebhookConfig } from './config.js';
import { createBackground } from './background.js';
import type { InstanceEvent, Notifier } from './events.js';

export const SIGNATURE_HEADER = 'X-Ec2-Creator-Signature-256';
export const TIMESTAMP_HEADER = 'X-Ec2-Creator-Timestamp';

export function signatureOf(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/** What a receiver gets: the event as JSON, or one line for a Slack channel. */
export function webhookBody(event: InstanceEvent, format: WebhookConfig['format']): string {
  const { instance } = event;
  if (format === 'slack') {
    const where = instance.public_ip ? `, public IP ${instance.public_ip}` : '';
    return JSON.stringify({
      text: `ec2-creator: ${instance.name} (${instance.id}, ${instance.instance_type}) ${event.type}${where}; now ${instance.state}`,
    });
  }
  return JSON.stringify({ type: `instance.${event.type}`, at: event.at, request_id: event.requestId ?? null, instance });
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Where a delivery went, for the log: a Slack-style URL carries its secret in the path, so only the origin. */
const shown = (url: URL): string => url.origin;

export function createWebhookNotifier(options: { config: WebhookConfig; logger: Logger }): Notifier {
  const { config, logger } = options;

  async function deliver(event: InstanceEvent, url: URL, body: string): Promise<void> {
    const delivery = randomUUID();
    const meta = { event: `instance.${event.type}`, instance_id: event.instance.id, request_id: event.requestId, target: shown(url), delivery };
    for (let attempt = 1; attempt <= config.attempts; attempt += 1) {
      const timestamp = String(Math.floor(Date.now() / 1000));
      const headers: Record<string, string> = {
        'content-type': 'application/json',
        'user-agent': 'ec2-creator-webhook',
        'x-ec2-creator-event': `instance.${event.type}`,
        'x-ec2-creator-delivery': delivery,
        [TIMESTAMP_HEADER.toLowerCase()]: timestamp,
      };
      if (config.secret !== undefined) headers[SIGNATURE_HEADER.toLowerCase()] = signatureOf(config.secret, timestamp, body);
      let failure: string;
      let final = false;
      try {
        const response = await fetch(url, { method: 'POST', headers, body, redirect: 'manual', signal: AbortSignal.timeout(config.timeoutMs) });
        await response.body?.cancel().catch(() => undefined);
        if (response.status >= 200 && response.status < 300) {
          logger.info('webhook delivered', { ...meta, attempt, status: response.status });
          return;
        }
        failure = `answered ${response.status}`;
        final = response.status < 500 && response.status !== 429;
      } catch (error) {
        failure = error instanceof Error ? (error.name === 'TimeoutError' ? `no answer within ${config.timeoutMs} ms` : error.message) : String(error);
      }
      const last = final || attempt === config.attempts;
      const delayMs = config.retryBaseMs * 2 ** (attempt - 1);
      logger.warn(last ? 'webhook given up' : 'webhook attempt failed', {
        ...meta, attempt, attempts: config.attempts, error: failure, ...(last ? {} : { retry_in_ms: delayMs }),
      });
      if (last) return;
      await sleep(delayMs);
    }
  }

  const background = createBackground(logger, 'webhook notifier failed');
  return {
    notify(event) {
      const body = webhookBody(event, config.format);
      for (const url of config.urls) background.run(() => deliver(event, url, body));
    },
    idle: () => background.idle(),
  };
}
