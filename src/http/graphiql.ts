// GraphiQL, in development: one tab per demo principal, each carrying its token.
export type GraphiQLTab = { readonly title: string; readonly token: string; readonly query: string };

export function graphiqlOptions(tabs: readonly GraphiQLTab[]) {
  return {
    title: 'Tenancy',
    shouldPersistHeaders: true,
    defaultTabs: tabs.map((tab) => ({
      query: `# ${tab.title}\n${tab.query}`,
      headers: JSON.stringify({ Authorization: `Bearer ${tab.token}` }, null, 2),
    })),
  };
}
