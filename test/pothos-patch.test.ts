// patches/@pothos+core+4.15.1.patch: createContextCache keeps a context's
// entries on the context itself (an array, indexed by cache, on the object
// initContextCache() makes, which every request context carries) instead of a
// WeakMap keyed by it. Measured on Node 24: an entry set in a WeakMap whose
// table is old, with a young key and a young value, is kept by the scavenges
// and promoted, so each request's context, and all its scope-auth cache,
// plugin request data and dataloaders reach (the transaction, rows, the
// answer), went to the old generation for a full GC to free (~7 KB a Q2
// request, read through the inspector).
import { execFileSync } from 'node:child_process';
import { contextCacheSymbol, createContextCache } from '@pothos/core';
import { expect, it } from 'vitest';
import { requestContext } from '../src/graphql/context.ts';
import type { TenantTransaction } from '../src/db/tenant-transaction.ts';

it('a context cache entry lives on the request context: one per context and cache, deleted with delete()', () => {
  let made = 0;
  const cache = createContextCache(() => ({ made: ++made }));
  const other = createContextCache(() => 'other');
  const first = requestContext('request 1', {} as TenantTransaction);
  const second = requestContext('request 2', {} as TenantTransaction);
  expect(cache(first)).toBe(cache(first));
  expect(cache(second)).not.toBe(cache(first));
  expect(made).toBe(2);
  expect(other(first)).toBe('other');
  const { entries } = first[contextCacheSymbol] as { entries: unknown[] };
  expect(entries.filter((entry) => entry !== undefined)).toEqual([{ made: 1 }, 'other']); // the two caches' entries, on the context's own object
  cache.delete(first);
  expect(entries.filter((entry) => entry !== undefined)).toEqual(['other']);
  expect(cache(first)).toEqual({ made: 3 });
  // An entry that is undefined is an entry: made once.
  let undefinedMade = 0;
  const empty = createContextCache(() => void undefinedMade++);
  expect([empty(second), empty(second)]).toEqual([undefined, undefined]);
  expect(undefinedMade).toBe(1);
  // A context without the holder still works (Pothos's WeakMap), as before the patch.
  const plain = {};
  expect(cache(plain)).toBe(cache(plain));
});

it('its esm/ and lib/ copies loaded side by side (an import and a require) give each cache its own entry on a shared holder', () => {
  // contextCacheSymbol is Symbol.for, so both copies read the same holder; each copy counting its caches from 0 gave the
  // first cache of lib/ the entry of the first cache of esm/. A process of its own: both copies fresh.
  const script = `
    import { createRequire } from 'node:module';
    import { createContextCache, contextCacheSymbol } from '@pothos/core';
    const required = createRequire(import.meta.url)('@pothos/core');
    if (required.createContextCache === createContextCache) throw new Error('one copy loaded, not two');
    const imported = createContextCache(() => 'imported');
    const fromRequire = required.createContextCache(() => 'required');
    const context = { [contextCacheSymbol]: {} };
    process.stdout.write(JSON.stringify([imported(context), fromRequire(context), fromRequire(context), imported(context)]));`;
  const entries = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', cwd: import.meta.dirname })) as unknown;
  expect(entries).toEqual(['imported', 'required', 'required', 'imported']);
});

/** Marking only when asked (gc()), and an old space that needs no collection to grow by what the loop promotes. */
const NO_MAJOR_GC = ['--no-incremental-marking', '--no-concurrent-marking', '--initial-old-space-size=512'];

it('entries of finished contexts die in the scavenges, not promoted', () => {
  // 20,000 request-like contexts, each with an entry reaching 64 objects, the cache's table made old first; then two
  // minor GCs: what old space grew by is what the scavenges promoted. Unpatched: ~55 MB (the holder a WeakMap key); patched: ~0.1.
  // No major GC may run meanwhile, or it frees what was promoted and the growth reads small whether patched or not: without
  // these flags incremental marking, started by old space's growth in the loop, was finished by the minor gc() calls as a
  // full GC in one run in 25 to 6 in 15 unpatched (0.8-1.7 MB grown: the test passed without the patch).
  const script = `
    import { createContextCache, contextCacheSymbol } from '@pothos/core';
    import v8 from 'node:v8';
    const old = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'old_space').space_used_size;
    const cache = createContextCache((ctx) => ({ ctx, rows: Array.from({ length: 64 }, (_, i) => ({ i })) }));
    const kept = [];
    for (let i = 0; i < 100; i++) { const ctx = { [contextCacheSymbol]: {} }; cache(ctx); kept.push(ctx); }
    gc(); gc();
    const before = old();
    for (let r = 0; r < 20000; r++) {
      const ctx = { id: r, [contextCacheSymbol]: {} };
      cache(ctx);
      await null;
    }
    gc({ type: 'minor' }); gc({ type: 'minor' });
    process.stdout.write(String(old() - before));`;
  const promoted = Number(execFileSync(process.execPath, ['--expose-gc', ...NO_MAJOR_GC, '--input-type=module', '-e', script], { encoding: 'utf8', cwd: import.meta.dirname }));
  expect(promoted).toBeLessThan(2_000_000);
});
