// One-time secrets: API keys and invitation tokens. Only their SHA-256 is
// stored; they carry 256 random bits, so a fast hash is enough (nothing to
// brute-force), and lookup by hash is an index probe.
import { createHash, randomBytes } from 'node:crypto';

const API_KEY = /^tnk_([A-Za-z0-9_-]{8})_([A-Za-z0-9_-]{43})$/;
const INVITATION = /^tni_[A-Za-z0-9_-]{43}$/;

export type NewApiKey = { readonly secret: string; readonly prefix: string; readonly hash: Buffer };

export function newApiKey(): NewApiKey {
  const prefix = `tnk_${randomBytes(6).toString('base64url')}`;
  const secret = `${prefix}_${randomBytes(32).toString('base64url')}`;
  return { secret, prefix, hash: sha256(secret) };
}

/** The hash to look a presented key up by; undefined when it cannot be a key. */
export function apiKeyHash(presented: string): Buffer | undefined {
  return API_KEY.test(presented) ? sha256(presented) : undefined;
}

export function newInvitationToken(): { readonly token: string; readonly hash: Buffer } {
  const token = `tni_${randomBytes(32).toString('base64url')}`;
  return { token, hash: sha256(token) };
}

export function invitationTokenHash(presented: string): Buffer | undefined {
  return INVITATION.test(presented) ? sha256(presented) : undefined;
}

function sha256(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}
