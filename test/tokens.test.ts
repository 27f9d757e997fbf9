// The verified-token cache: a token is accepted from the cache only until its
// own exp, and a token that fails verification is never remembered as valid.
import { SignJWT } from 'jose';
import { expect, it } from 'vitest';
import { createTokenVerifier, InvalidTokenError } from '../src/auth/tokens.ts';
import { TEST_TOKENS } from './helpers/app.ts';

const key = new TextEncoder().encode(TEST_TOKENS.secret);
const sub = '00000000-0000-4000-8000-000000000001';

it('accepts a cached token only until its exp', async () => {
  const verify = createTokenVerifier(TEST_TOKENS);
  // exp is in whole seconds: a second boundary or more away, so the first two checks cannot already be past it
  // (floor(now) + 1 left 0-1000 ms, and under load sign + verify could use them up).
  const exp = Math.ceil(Date.now() / 1000) + 1;
  const token = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setExpirationTime(exp).sign(key);
  expect((await verify(token)).userId).toBe(sub);
  expect((await verify(token)).userId).toBe(sub); // from the cache
  await new Promise((resolve) => setTimeout(resolve, exp * 1000 - Date.now() + 50));
  await expect(verify(token)).rejects.toBeInstanceOf(InvalidTokenError);
});

it('does not remember a forged token, even after the genuine one was cached', async () => {
  const verify = createTokenVerifier(TEST_TOKENS);
  const genuine = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setExpirationTime('1h').sign(key);
  await verify(genuine);
  const forged = `${genuine.slice(0, genuine.lastIndexOf('.'))}.${'A'.repeat(43)}`;
  await expect(verify(forged)).rejects.toBeInstanceOf(InvalidTokenError);
  await expect(verify(forged)).rejects.toBeInstanceOf(InvalidTokenError);
});
