/**
 * The token check. Constant-time for tokens of any length: the presented token is hashed (SHA-256) and
 * the digest compared with crypto.timingSafeEqual against EVERY configured digest, without stopping at the
 * first match, so neither the length of the presented token nor which entry matched shows in the timing.
 */
import { timingSafeEqual } from 'node:crypto';
import { digestOf, type ApiToken, type Principal } from './tokens.js';

export type TokenVerifier = (presented: string) => Principal | undefined;

export function createTokenVerifier(
  tokens: readonly ApiToken[],
  /** The comparison (tests count its calls); crypto.timingSafeEqual in the service. */
  compare: (a: Buffer, b: Buffer) => boolean = timingSafeEqual,
): TokenVerifier {
  const entries = tokens.map((t) => ({ principal: { name: t.name, role: t.role }, digest: t.digest }));
  return (presented) => {
    const digest = digestOf(presented);
    let match: Principal | undefined;
    for (const entry of entries) {
      // Both sides are 32-byte digests, so timingSafeEqual never throws; no early exit on a match.
      const equal = compare(digest, entry.digest);
      if (equal && match === undefined) match = entry.principal;
    }
    return match;
  };
}
