// GraphiQL as a person meets it: `npm start`'s entry point serves the page,
// headless Chromium (Debian's, driven by playwright-core) loads it with every
// other host unreachable, and each demo principal's tab carries its title and
// token; running two tenants' tabs shows each only its own tenant's data; a
// subscription runs over SSE with the tab's headers and shows events as they come.
// A screenshot is kept in test/artifacts/ (not committed).
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import postgres from 'postgres';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { appRoleName } from '../src/db/setup.ts';
import { withDatabase } from './helpers/local.ts';
import { ROOT, startServer, type ServerProcess } from './helpers/process.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
// No network beyond the service: Chromium's own background traffic off (see also the route below).
const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const ARTIFACTS = path.join(ROOT, 'test/artifacts');

const { templateUrl } = inject('postgres');
const admin = postgres(withDatabase(templateUrl, 'postgres'), { max: 1, onnotice: () => {} });
const database = `graphiql_${randomBytes(4).toString('hex')}`;
const ownerUrl = withDatabase(templateUrl, database);
let dataDir: string;
let server: ServerProcess;
let browser: Browser;
let page: Page;
const foreignRequests: string[] = [];

type Principal = { slug: string; tenantId: string; role: string; email: string; userId: string };
let principals: Principal[];
let operatorId: string;
let agentsOf: Record<string, string[]>;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: apt-get install chromium (.ci/run does), or set CHROMIUM_PATH`);
  }
  await admin`create database ${admin(database)}`;
  dataDir = await mkdtemp(path.join(tmpdir(), 'tenancy-graphiql-'));
  await chmod(dataDir, 0o755);
  server = await startServer({ DATABASE_URL: ownerUrl, TENANCY_DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1' });

  const owner = postgres(ownerUrl, { max: 1, onnotice: () => {} });
  principals = await owner<Principal[]>`
    select t.slug, t.id as "tenantId", m.role, u.email, u.id as "userId"
    from app.memberships m join app.users u on u.id = m.user_id join app.tenants t on t.id = m.tenant_id
    order by t.slug, app.role_rank(m.role) desc`;
  const [operator] = await owner<{ id: string }[]>`select user_id as id from app_private.operators`;
  operatorId = operator!.id;
  const agents = await owner<{ slug: string; name: string }[]>`
    select t.slug, a.name from app.agents a join app.tenants t on t.id = a.tenant_id order by a.name`;
  agentsOf = {};
  for (const agent of agents) (agentsOf[agent.slug] ??= []).push(agent.name);
  await owner.end();

  const { origin } = new URL(server.url);
  // launch() gives Chromium a fresh, empty profile of its own.
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS });
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  await context.route('**/*', (route) => {
    if (new URL(route.request().url()).origin === origin) return route.continue();
    foreignRequests.push(route.request().url());
    return route.abort();
  });
  page = await context.newPage();
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await server?.stop();
  await admin`drop database if exists ${admin(database)} with (force)`;
  await admin`drop role if exists ${admin(appRoleName(ownerUrl))}`;
  await admin.end();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

/** The editor shown in a section (Headers holds the variables editor too, hidden); Monaco shows spaces as no-break spaces. */
const editorText = (section: string) =>
  page.locator(`section[aria-label="${section}"] .view-lines:visible`).innerText().then((text) => text.replaceAll('\u00a0', ' '));

/** The active tab as GraphiQL keeps it (what it runs on execute): its tab state, stored once the editors' edits are taken in. */
type TabState = { title: string; query: string | null; headers: string | null; operationName: string | null };
const activeTab = () =>
  page.evaluate(() => {
    const state = JSON.parse(localStorage.getItem('graphiql:tabState') ?? '{}') as { tabs?: TabState[]; activeTabIndex?: number };
    return state.tabs?.[state.activeTabIndex ?? 0] ?? null;
  });

/**
 * A real click on a tab (src/http/graphiql.ts keeps tabs still so that it lands), then it is the active one, and
 * GraphiQL has taken it in: its editors show the tab's query and headers (swapped in some 100-200 ms after the click:
 * an execute right after it ran the previous tab's headers, or nothing, 'Cannot infer operation').
 */
async function openTab(title: string) {
  await page.getByTitle(title, { exact: true }).click();
  expect(await page.locator('.graphiql-tab-active .graphiql-tab-button').innerText()).toBe(title);
  await expect.poll(async () => {
    const tab = await activeTab();
    const shown = async (section: string) => (await editorText(section)).replace(/\s+/g, ''); // the editor wraps long lines
    const query = (tab?.query ?? '').replace(/\s+/g, '').slice(0, 80);
    return tab?.title === title && (await shown('Operation Editor')).includes(query) && (await shown('Headers')) === (tab.headers ?? '').replace(/\s+/g, '');
  }, { timeout: 10_000 }).toBe(true);
}

function claims(token: string): { sub?: string; tid?: string } {
  return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { sub?: string; tid?: string };
}

it('loads from the service alone, with one tab per demo principal, titled and carrying its token, and the schema in Docs', async () => {
  const introspection = page.waitForRequest((request) => request.method() === 'POST' && (request.postData() ?? '').includes('__schema'));
  await page.goto(`${server.url}/graphql`);
  const expected = [...principals.map((principal) => `${principal.slug}_${principal.role}`), 'platform_operator'];
  await expect.poll(() => page.locator('.graphiql-tab-button').count(), { timeout: 30_000 }).toBe(expected.length);
  expect(await page.locator('.graphiql-tab-button').allInnerTexts()).toEqual(expected);

  // The schema was fetched with the first tab's token, and Docs shows it at once.
  const schemaToken = /^Bearer (\S+)$/.exec((await introspection).headers().authorization ?? '')?.[1];
  expect(claims(schemaToken ?? 'none.e30.none')).toMatchObject({ sub: principals[0]!.userId });
  await page.getByLabel('Show Documentation Explorer').click();
  await expect.poll(() => page.locator('.graphiql-doc-explorer').innerText(), { timeout: 10_000 }).toContain('Root Types');
  expect(await page.locator('.graphiql-doc-explorer').innerText()).not.toContain('Error fetching schema');

  for (const [index, title] of expected.entries()) {
    await openTab(title);
    await expect.poll(() => editorText('Operation Editor'), { timeout: 10_000 }).toContain(`query ${title} {`);
    await expect.poll(() => editorText('Headers'), { timeout: 10_000 }).toContain('Authorization');
    const headers = JSON.parse(await editorText('Headers')) as { Authorization?: string };
    const token = /^Bearer (\S+)$/.exec(headers.Authorization ?? '')?.[1];
    expect(token, `${title}'s headers`).toBeDefined();
    const principal = principals[index];
    expect(claims(token!), title).toEqual(
      principal ? expect.objectContaining({ sub: principal.userId, tid: principal.tenantId }) : expect.objectContaining({ sub: operatorId }),
    );
  }
  expect(foreignRequests).toEqual([]);
});

it('forgets the tabs GraphiQL stored for another demo (their tokens would not work), and keeps those stored for this one', async () => {
  const fingerprint = await page.evaluate(() => localStorage.getItem('tenancy:graphiql-tabs'));
  expect(fingerprint).toMatch(/^[0-9a-f]{64}$/);
  const stored = JSON.stringify({
    activeTabIndex: 0,
    tabs: [{ id: 'kept', hash: null, title: 'mine', query: 'query mine { __typename }', variables: null, headers: '{}', operationName: 'mine', response: null }],
  });
  const titlesAfterLoad = async (storedFor: string) => {
    const context = await browser.newContext();
    await context.addInitScript(
      ([state, owner]) => {
        if (sessionStorage.getItem('seeded')) return;
        sessionStorage.setItem('seeded', '1');
        localStorage.setItem('graphiql:tabState', state!);
        localStorage.setItem('tenancy:graphiql-tabs', owner!);
      },
      [stored, storedFor],
    );
    const other = await context.newPage();
    await other.goto(`${server.url}/graphql`);
    await other.waitForSelector('.graphiql-tab-button');
    const titles = await other.locator('.graphiql-tab-button').allInnerTexts();
    await context.close();
    return titles;
  };
  expect(await titlesAfterLoad('another demo')).toEqual(await page.locator('.graphiql-tab-button').allInnerTexts());
  expect(await titlesAfterLoad(fingerprint!)).toContain('mine');
});

async function runTab(title: string) {
  await openTab(title);
  const response = page.waitForResponse((answer) => answer.request().method() === 'POST' && (answer.request().postData() ?? '').includes(`"operationName":"${title}"`));
  await page.locator('.graphiql-execute-button').click();
  const body = (await (await response).json()) as {
    data?: { viewer: { role: string; tenant: { slug: string } }; agents: { edges: { node: { name: string } }[] } };
    errors?: unknown;
  };
  await expect.poll(() => editorText('Result Window'), { timeout: 10_000 }).toContain('"slug"');
  return body;
}

it('runs the first tab and another tenant\'s tab, each seeing only its own tenant', async () => {
  const first = await runTab('acme_ADMIN');
  expect(first.errors).toBeUndefined();
  expect(first.data!.viewer).toMatchObject({ role: 'ADMIN', tenant: { slug: 'acme' } });
  expect(first.data!.agents.edges.map((edge) => edge.node.name).sort()).toEqual(agentsOf.acme);
  expect(await editorText('Result Window')).toContain('"acme"');

  const other = await runTab('globex_VIEWER');
  expect(other.errors).toBeUndefined();
  expect(other.data!.viewer).toMatchObject({ role: 'VIEWER', tenant: { slug: 'globex' } });
  expect(other.data!.agents.edges.map((edge) => edge.node.name).sort()).toEqual(agentsOf.globex);
  expect(await editorText('Result Window')).not.toContain('"acme"');

  await mkdir(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, 'graphiql.png') });
  expect(foreignRequests).toEqual([]);
});

it("runs a subscription over SSE with the tab's headers, and shows its events as they come", async () => {
  const principal = principals.find((candidate) => candidate.slug === 'acme' && candidate.role === 'VIEWER')!;
  await openTab('acme_VIEWER');
  await page.locator('section[aria-label="Operation Editor"] .monaco-editor').first().click();
  await page.keyboard.press('Control+A');
  await page.keyboard.insertText('subscription live { members { kind node { role user { email } } } }');
  await expect.poll(async () => (await activeTab())?.operationName, { timeout: 10_000 }).toBe('live'); // the edit taken in
  const opened = page.waitForRequest((request) => request.url().includes('/graphql') && (request.headers().accept ?? '').includes('text/event-stream'));
  await page.locator('.graphiql-execute-button').click();
  const request = await opened;
  const token = /^Bearer (\S+)$/.exec(request.headers().authorization ?? '')?.[1];
  expect(claims(token ?? 'none.e30.none')).toMatchObject({ sub: principal.userId, tid: principal.tenantId });

  // A member joins acme: the tab shows the event.
  const owner = postgres(ownerUrl, { max: 1, onnotice: () => {} });
  try {
    const email = `live-${randomBytes(3).toString('hex')}@acme.example`;
    await expect.poll(async () => {
      const [user] = await owner<{ id: string }[]>`insert into app.users (email, display_name) values (${`${randomBytes(3).toString('hex')}-${email}`}, 'Live') returning id`;
      await owner`insert into app.memberships (tenant_id, user_id, role) values (${principal.tenantId}, ${user!.id}, 'VIEWER')`;
      return editorText('Result Window');
    }, { timeout: 20_000, interval: 500 }).toContain('"CREATED"');
    const shown = (await editorText('Result Window')).replace(/\s+/g, ''); // the editor wraps long lines
    expect(shown, shown).toMatch(/"kind":"CREATED","node":\{"role":"VIEWER","user":\{"email":"[0-9a-f]{6}-live-[0-9a-f]{6}@acme\.example"/);
  } finally {
    await owner.end();
  }
  await page.locator('.graphiql-execute-button').click(); // stops the subscription
  expect(foreignRequests).toEqual([]);
});
