// The true limit: the service's work with nothing in between. node:http, a
// bounded cache of verified tokens (as the service keeps), and the whole
// transaction in ONE write on a reserved connection: BEGIN, the settings, the
// case's statements and COMMIT are queued in the same tick (postgres.js sends
// what is queued before its next setImmediate as one socket write), so a
// request costs one round trip. JSON out, the same answers as the service.
// LIMIT_CHECK=1 replaces the plain set_config with the product's request
// check (app_private.begin_request: membership, role and tenant status read on
// every request), so the price of instant revocation is its own line.
import { jwtVerify } from 'jose';
import { LRUCache } from 'lru-cache';
import postgres from 'postgres';
import { answer, bearer, kindOf, readBody, requestCheck, serve, settings, statements, type Body, type Claims, type Kind } from './reference.ts';

const secret = new TextEncoder().encode(process.env.JWT_SECRET);
const sql = postgres(process.env.DATABASE_APP_URL!, { max: Number(process.env.DB_POOL_MAX ?? 10), prepare: true, onnotice: () => {} });
const begin = process.env.LIMIT_CHECK === '1' ? requestCheck : settings;

// Keyed by the token, bounded, never past `exp` (the service: src/auth/tokens.ts).
const verified = new LRUCache<string, Claims & { exp: number }>({ max: 10_000 });

async function claimsOf(token: string): Promise<Claims> {
  const hit = verified.get(token);
  if (hit && hit.exp * 1000 > Date.now()) return hit;
  const { payload } = await jwtVerify(token, secret, { algorithms: ['HS256'], requiredClaims: ['exp', 'sub'] });
  const claims = payload as unknown as Claims & { exp: number };
  verified.set(token, claims, { ttl: Math.min(claims.exp * 1000 - Date.now(), 5 * 60_000) });
  return claims;
}

/** BEGIN, the settings, the statements and COMMIT in one write; the statements' rows once all have answered. */
async function transaction(kind: Kind, claims: Claims, body: Body): Promise<postgres.Row[][]> {
  const tx = await sql.reserve();
  try {
    const queued = [tx`begin`, begin(tx, claims), ...statements(kind, tx, body), tx`commit`];
    const results = await Promise.allSettled(queued);
    const failed = results.find((result) => result.status === 'rejected');
    if (failed) throw failed.reason;
    return results.slice(2, -1).map((result) => (result as PromiseFulfilledResult<postgres.Row[]>).value);
  } finally {
    tx.release();
  }
}

serve(sql, async (req) => {
  const claims = await claimsOf(bearer(req));
  const body = JSON.parse(await readBody(req)) as Body;
  const kind = kindOf(req.url);
  return answer(kind, await transaction(kind, claims, body));
});
