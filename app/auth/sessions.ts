/**
 * Dashboard sessions: an API token exchanged once for a random session id that a browser keeps in an
 * HttpOnly cookie, so the token itself never sits in page storage. The store keeps only a digest of the id
 * (shared by replicas); a session lasts SESSION_TTL_HOURS and ends early when signed out or when its token
 * is no longer configured (a token removed from API_TOKENS signs its sessions out at the next request).
 */
import { createHash, randomBytes } from 'node:crypto';
import type { SessionsStore } from '../store/ports.js';
import type { ApiToken, Principal } from './tokens.js';
import { createTokenVerifier } from './verify.js';

export interface Sessions {
  /** A new session for the token, or undefined when the token is not valid. */
  open(token: string): Promise<{ id: string; principal: Principal; expiresAt: string } | undefined>;
  /** Who the session is, while it is valid. */
  resolve(id: string): Promise<(Principal & { expiresAt: string }) | undefined>;
  close(id: string): Promise<void>;
}

/** What a session id looks like in a cookie: 43 base64url characters (32 random bytes). */
export const SESSION_ID_PATTERN = /^[A-Za-z0-9_-]{43}$/;

const digestOf = (id: string): string => createHash('sha256').update(id).digest('hex');

export function createSessions(options: { store: SessionsStore; tokens: readonly ApiToken[]; ttlMs: number; now?: () => number }): Sessions {
  const verify = createTokenVerifier(options.tokens);
  const now = options.now ?? Date.now;
  const configured = (principal: Principal): boolean =>
    options.tokens.some((token) => token.name === principal.name && token.role === principal.role);
  return {
    async open(token) {
      const principal = verify(token);
      if (!principal) return undefined;
      const id = randomBytes(32).toString('base64url');
      const createdAt = new Date(now()).toISOString();
      const expiresAt = new Date(now() + options.ttlMs).toISOString();
      await options.store.create({ id_digest: digestOf(id), name: principal.name, role: principal.role, created_at: createdAt, expires_at: expiresAt });
      void options.store.purgeExpired(createdAt).catch(() => undefined);
      return { id, principal, expiresAt };
    },
    async resolve(id) {
      if (!SESSION_ID_PATTERN.test(id)) return undefined;
      const row = await options.store.find(digestOf(id), new Date(now()).toISOString());
      if (!row) return undefined;
      const principal = { name: row.name, role: row.role } as Principal;
      return configured(principal) ? { ...principal, expiresAt: row.expires_at } : undefined;
    },
    async close(id) {
      if (SESSION_ID_PATTERN.test(id)) await options.store.remove(digestOf(id));
    },
  };
}
