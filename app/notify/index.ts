import type { Logger } from '../logger.js';
import type { EmailConfig } from './config.js';
import { createEmailNotifier } from './email.js';
import { silentNotifier, type Notifier } from './events.js';

export { loadEmailConfig, type EmailConfig } from './config.js';
export { silentNotifier, type InstanceEvent, type Notifier } from './events.js';

/** Email when it is configured, otherwise a notifier that does nothing. */
export function createNotifier(email: EmailConfig | null, logger: Logger): Notifier {
  if (email === null) return silentNotifier;
  logger.info('email notifications on', { smtp_host: email.host, smtp_port: email.port, to: email.to });
  return createEmailNotifier({ config: email, logger });
}
