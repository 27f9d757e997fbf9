// GraphiQL, in development, served whole by the service (no CDN): one tab per
// demo principal, titled by its named operation, each carrying its token.
import { createHash } from 'node:crypto';
import { Kind, parse, print, type OperationDefinitionNode } from 'graphql';
import type { GraphiQLOptions } from 'graphql-yoga';

export type GraphiQLTab = {
  /** A line atop the query: who this tab is ("acme as ADMIN (admin@acme.example)"). */
  readonly title: string;
  /** The operation's name, which GraphiQL shows as the tab's title. */
  readonly operationName: string;
  readonly token: string;
  /** One operation; it gets `operationName` and is pretty-printed. */
  readonly query: string;
};

export function graphiqlOptions(tabs: readonly GraphiQLTab[]): GraphiQLOptions {
  const defaultTabs = tabs.map((tab) => ({
    query: `# ${tab.title}\n${print(named(tab.query, tab.operationName))}\n`,
    headers: JSON.stringify({ Authorization: `Bearer ${tab.token}` }, null, 2),
  }));
  return {
    title: 'Tenancy',
    shouldPersistHeaders: true,
    defaultTabs,
    // GraphiQL fills the header editor of the tab it opens on from these, not
    // from that tab (its query does come from the tab): the first tab's headers.
    headers: defaultTabs[0]?.headers,
  };
}

function named(query: string, name: string) {
  const document = parse(query);
  const operations = document.definitions.filter((definition) => definition.kind === Kind.OPERATION_DEFINITION);
  if (operations.length !== 1) throw new Error(`a GraphiQL tab holds one operation (${name} has ${operations.length})`);
  return {
    ...document,
    definitions: document.definitions.map((definition) =>
      definition === operations[0]
        ? ({ ...definition, name: { kind: Kind.NAME, value: name } } satisfies OperationDefinitionNode)
        : definition,
    ),
  };
}

const rendered = new Map<string, Promise<string>>();

/**
 * The page, with GraphiQL's code, styles and editor workers inline
 * (@graphql-yoga/render-graphiql, ~9 MB): rendered once per set of options,
 * and loaded only when GraphiQL is first asked for.
 */
export function renderGraphiQL(options: GraphiQLOptions): Promise<string> {
  const key = JSON.stringify(options);
  let page = rendered.get(key);
  if (!page) {
    page = import('@graphql-yoga/render-graphiql').then(({ renderGraphiQL: render }) =>
      render(options).replace('<body id="body" class="no-focus-outline">', (body) => `${body}\n<style>${STILL_TABS}</style>\n<script>${forgetOtherTabs(options)}</script>`),
    );
    rendered.set(key, page);
  }
  return page;
}

/**
 * GraphiQL's tabs (framer-motion reorder items) keep the transform of their
 * first layout animation; pressing a tab drops it, the tab jumps from under
 * the pointer, and the click lands beside it (most clicks on a tab did not
 * switch to it, in Chromium, headless or not). Tabs stay where CSS puts them.
 */
const STILL_TABS = '.graphiql-tab { transform: none !important; }';

/**
 * GraphiQL keeps its tabs (and their tokens) in localStorage and then ignores
 * `defaultTabs`: after the demo changed (a new data folder, other users) the
 * stored tabs would carry tokens that no longer work. The page forgets them
 * when the principals behind the tabs are not the ones it stored them for.
 */
function forgetOtherTabs(options: GraphiQLOptions): string {
  const principals = (options.defaultTabs ?? []).map((tab) => [tab.query, claims(tab.headers)]);
  const fingerprint = createHash('sha256').update(JSON.stringify(principals)).digest('hex');
  return `try {
  if (localStorage.getItem('tenancy:graphiql-tabs') !== ${JSON.stringify(fingerprint)}) {
    for (const key of ['tabState', 'query', 'variables', 'headers']) localStorage.removeItem('graphiql:' + key);
    localStorage.setItem('tenancy:graphiql-tabs', ${JSON.stringify(fingerprint)});
  }
} catch {}`;
}

/** Whom a tab's token names (user and tenant), not the token itself: it is signed anew at every start. */
function claims(headers: string | null | undefined): unknown {
  const payload = /Bearer [\w-]+\.([\w-]+)\.[\w-]+/.exec(headers ?? '')?.[1];
  if (!payload) return null;
  const { sub, tid } = JSON.parse(Buffer.from(payload, 'base64url').toString()) as { sub?: unknown; tid?: unknown };
  return [sub, tid];
}
