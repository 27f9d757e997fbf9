// The HTTP surface: JSON POSTs take the fast path (node:http -> compiled
// operation), everything else Yoga's; both answer with the same contract.
import { beforeAll, expect, it } from 'vitest';
import { createTestApp, createTestTenant, type TestApp, type TestTenant } from './helpers/app.ts';
import { useTestDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let api: TestApp;
let tenant: TestTenant;

beforeAll(async () => {
  db = await useTestDatabase();
  api = createTestApp(db.appPool(2));
  tenant = await createTestTenant(db.owner, 'http-co');
});

async function post(body: string, headers: Record<string, string> = {}) {
  const response = await fetch(`${await api.origin()}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${tenant.members.VIEWER.token}`, ...headers },
    body,
  });
  return { status: response.status, headers: response.headers, body: (await response.json()) as { data?: unknown; errors?: { message: string; extensions?: Record<string, unknown>; locations?: unknown }[] } };
}

it('answers the same data on both paths', async () => {
  const query = '{ tenant { slug } viewer { role } }';
  const fast = await api.request(query, { token: tenant.members.VIEWER.token });
  const yoga = await api.request(query, { token: tenant.members.VIEWER.token, viaYoga: true });
  expect(fast).toEqual({ status: 200, body: { data: { tenant: { slug: 'http-co' }, viewer: { role: 'VIEWER' } } } });
  expect(yoga).toEqual(fast);
});

it('refuses malformed requests with BAD_USER_INPUT and status 400, never a stack trace', async () => {
  for (const body of ['{not json', '{"variables":{}}', '{"query":"{ tenant { slug } }","variables":[1]}', '{"query":"{ tenant { slug }"}', '{"query":"{ nope }"}']) {
    const response = await post(body);
    expect(response.status, body).toBe(400);
    expect(response.body.errors?.[0]?.extensions?.code, body).toBe('BAD_USER_INPUT');
    expect(JSON.stringify(response.body), body).not.toMatch(/at \w+ \(|\.ts:\d+/);
  }
  const syntax = await post('{"query":"{ tenant { slug }"}');
  expect(syntax.body.errors?.[0]?.locations).toEqual([{ line: 1, column: 18 }]);
});

it('a variable of the wrong type is BAD_USER_INPUT, not INTERNAL', async () => {
  const response = await post(JSON.stringify({ query: 'query($n: Int) { agents(first: $n) { edges { node { id } } } }', variables: { n: 'many' } }));
  expect(response.body.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
});

it('refuses a body over 5 MiB with 413 and closes the connection', async () => {
  const response = await post(JSON.stringify({ query: '{ tenant { slug } }', padding: 'x'.repeat(6 << 20) }));
  expect(response.status).toBe(413);
  expect(response.headers.get('connection')).toBe('close');
});

it('leaves GET and browser (CORS) requests to Yoga, with the same answers', async () => {
  const base = await api.origin();
  const get = await fetch(`${base}/graphql?query=${encodeURIComponent('{ tenant { slug } }')}`, {
    headers: { authorization: `Bearer ${tenant.members.VIEWER.token}`, accept: 'application/json' },
  });
  expect(await get.json()).toEqual({ data: { tenant: { slug: 'http-co' } } });
  const browser = await post('{"query":"{ tenant { slug } }"}', { origin: 'https://app.example' });
  expect(browser.body).toEqual({ data: { tenant: { slug: 'http-co' } } });
  expect(browser.headers.get('access-control-allow-origin')).toBeTruthy();
});
