/**
 * Start-up: turns the validated AuthConfig into what createApp needs, generating the operator token file
 * when no tokens are configured (secure by default). Logs where tokens come from — names, roles and file
 * paths, never a token value.
 */
import type { Logger } from '../logger.js';
import type { AuthConfig } from './config.js';
import { ensureGeneratedToken, type ApiToken } from './tokens.js';

/** What createApp needs to know about authentication: explicit, so nothing is open by accident. */
export type AuthSetup = { mode: 'disabled' } | { mode: 'tokens'; tokens: readonly ApiToken[] };

export function resolveAuth(auth: AuthConfig, logger: Logger): AuthSetup & { file?: string } {
  switch (auth.mode) {
    case 'disabled':
      logger.warn('authentication is DISABLED (AUTH_DISABLED=true): every caller may do everything; loopback only');
      return { mode: 'disabled' };
    case 'tokens': {
      if (auth.warning) logger.warn('API token file is more readable than it needs to be', { file: auth.file, warning: auth.warning });
      logger.info('API tokens loaded', {
        source: auth.source,
        ...(auth.file ? { file: auth.file } : {}),
        tokens: auth.tokens.map((t) => `${t.name}:${t.role}`),
      });
      return { mode: 'tokens', tokens: auth.tokens, ...(auth.file ? { file: auth.file } : {}) };
    }
    case 'generate': {
      const { tokens, created, warning } = ensureGeneratedToken(auth.file);
      if (warning) logger.warn('API token file is more readable than it needs to be', { file: auth.file, warning });
      logger.log(created ? 'warn' : 'info', created ? 'generated an operator API token' : 'using the generated operator API token', {
        file: auth.file,
        tokens: tokens.map((t) => `${t.name}:${t.role}`),
        hint: 'send the token after the second colon in that file as Authorization: Bearer <token>; set API_TOKENS or API_TOKENS_FILE to choose your own',
      });
      return { mode: 'tokens', tokens, file: auth.file };
    }
  }
}
