// JWKS mode: tokens from an identity provider, verified against its key set
// (fetched by jose, keys chosen by kid), with issuer and audience enforced.
import { createServer, type Server } from 'node:http';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTokenVerifier, InvalidTokenError, type TokenVerifier } from '../src/auth/tokens.ts';

const USER = '7d0c4d5e-0000-4000-8000-000000000001';
const TENANT = '7d0c4d5e-0000-4000-8000-0000000000aa';
let server: Server;
let verify: TokenVerifier;
let keys: { kid: string; privateKey: CryptoKey; alg: string }[];

beforeAll(async () => {
  const ec = await generateKeyPair('ES256');
  const rsa = await generateKeyPair('RS256');
  keys = [
    { kid: 'ec-1', privateKey: ec.privateKey, alg: 'ES256' },
    { kid: 'rsa-1', privateKey: rsa.privateKey, alg: 'RS256' },
  ];
  const jwks: { keys: JWK[] } = {
    keys: [
      { ...(await exportJWK(ec.publicKey)), kid: 'ec-1', alg: 'ES256', use: 'sig' },
      { ...(await exportJWK(rsa.publicKey)), kid: 'rsa-1', alg: 'RS256', use: 'sig' },
    ],
  };
  server = createServer((_req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(jwks));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as { port: number };
  verify = createTokenVerifier({
    secret: undefined,
    jwksUrl: `http://127.0.0.1:${address.port}/.well-known/jwks.json`,
    issuer: 'https://idp.test/',
    audience: 'tenancy',
  });
});

afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

function sign(kid: string, alg: string, privateKey: CryptoKey | Uint8Array, overrides: { iss?: string; aud?: string } = {}) {
  return new SignJWT({ tid: TENANT })
    .setProtectedHeader({ alg, kid })
    .setSubject(USER)
    .setIssuer(overrides.iss ?? 'https://idp.test/')
    .setAudience(overrides.aud ?? 'tenancy')
    .setExpirationTime('5m')
    .sign(privateKey);
}

it('accepts ES256 and RS256 tokens, picking the key by kid', async () => {
  for (const key of keys) {
    await expect(verify(await sign(key.kid, key.alg, key.privateKey))).resolves.toMatchObject({ userId: USER, tenantId: TENANT });
  }
});

it('refuses a kid the key set does not have, and a key under the wrong kid', async () => {
  await expect(verify(await sign('unknown', 'ES256', keys[0]!.privateKey))).rejects.toThrow(InvalidTokenError);
  await expect(verify(await sign('rsa-1', 'ES256', keys[0]!.privateKey))).rejects.toThrow(InvalidTokenError);
});

it('refuses HS256 in JWKS mode (no algorithm confusion)', async () => {
  await expect(verify(await sign('ec-1', 'HS256', new TextEncoder().encode('x'.repeat(32))))).rejects.toThrow(InvalidTokenError);
});

it('enforces issuer and audience', async () => {
  await expect(verify(await sign('ec-1', 'ES256', keys[0]!.privateKey, { iss: 'https://evil.test/' }))).rejects.toThrow(InvalidTokenError);
  await expect(verify(await sign('ec-1', 'ES256', keys[0]!.privateKey, { aud: 'someone-else' }))).rejects.toThrow(InvalidTokenError);
});
