import type { Logger } from '../logger.js';
import type { EmailConfig, WebhookConfig } from './config.js';
import { createEmailNotifier } from './email.js';
import { silentNotifier, type Notifier } from './events.js';
import { createWebhookNotifier } from './webhooks.js';

export { loadEmailConfig, loadWebhookConfig, type EmailConfig, type WebhookConfig } from './config.js';
export { silentNotifier, type InstanceEvent, type Notifier } from './events.js';

/** Email and webhooks, each when configured: every event goes to all of them, none waits for another. */
export function createNotifier(email: EmailConfig | null, logger: Logger, webhooks: WebhookConfig | null = null): Notifier {
  const notifiers: Notifier[] = [];
  if (email !== null) {
    logger.info('email notifications on', { smtp_host: email.host, smtp_port: email.port, to: email.to });
    notifiers.push(createEmailNotifier({ config: email, logger }));
  }
  if (webhooks !== null) {
    logger.info('webhook notifications on', { targets: webhooks.urls.map((url) => url.origin), format: webhooks.format, signed: webhooks.secret !== undefined });
    notifiers.push(createWebhookNotifier({ config: webhooks, logger }));
  }
  if (notifiers.length === 0) return silentNotifier;
  if (notifiers.length === 1) return notifiers[0] as Notifier;
  return {
    notify(event) {
      for (const notifier of notifiers) notifier.notify(event);
    },
    async idle() {
      await Promise.all(notifiers.map((notifier) => notifier.idle()));
    },
  };
}
