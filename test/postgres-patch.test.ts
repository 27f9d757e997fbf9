// patches/postgres+3.4.9.patch, the driver's Query (a Promise) and Result (an
// Array): their Symbol.species is a data property set after the class, not a
// `static get [Symbol.species]()` in it. With the accessor, V8 (Node 24)
// aborted every Maglev compile of both constructors ("Bailed out due to
// dependency change") and tried again, 50-100 times a second under load: they
// were never optimized, and the retries took worker-thread CPU (a bare
// BEGIN/query/COMMIT loop ran 32-44% more transactions with the fix). What
// callers see must not change: promises and arrays derived from them are
// plain ones.
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { expect, it } from 'vitest';

const driver = (file: string) => fileURLToPath(import.meta.resolve('postgres')).replace(/index\.js$/, file);

it('derived promises and arrays are plain ones, the species a data property', async () => {
  const { Query } = (await import(driver('query.js'))) as { Query: PromiseConstructor };
  const { default: Result } = (await import(driver('result.js'))) as { default: ArrayConstructor };
  for (const [type, base] of [[Query, Promise], [Result, Array]] as const) {
    expect(Object.getOwnPropertyDescriptor(type, Symbol.species)).toEqual({ value: base, writable: false, enumerable: false, configurable: true });
  }
  const query = new (Query as unknown as new (...args: unknown[]) => Promise<unknown>)([''], [], () => {}, undefined);
  const derived = query.then(() => 1);
  expect(derived.constructor).toBe(Promise);
  expect(derived).not.toBeInstanceOf(Query);
  const rows = new Result();
  rows.push(1, 2);
  const mapped = rows.map((x: number) => x * 2);
  expect(mapped.constructor).toBe(Array);
  expect(mapped).toEqual([2, 4]);
});

it('V8 optimizes both constructors instead of aborting their compiles over and over', () => {
  // Constructed in a loop long enough to tier up, with V8's optimization trace on; the same Node as the service.
  const script = `
    const { Query } = await import(${JSON.stringify(driver('query.js'))});
    const { default: Result } = await import(${JSON.stringify(driver('result.js'))});
    let keep = [];
    const end = Date.now() + 1500;
    while (Date.now() < end) {
      for (let i = 0; i < 1000; i++) keep.push(new Query([''], [i], () => {}, undefined), new Result());
      if (keep.length > 50000) keep = [];
      await null;
    }`;
  const trace = execFileSync(process.execPath, ['--trace-opt', '--input-type=module', '-e', script], { encoding: 'utf8', maxBuffer: 64 << 20 });
  for (const name of ['Query', 'Result']) {
    const lines = trace.split('\n').filter((line) => line.includes(`<JSFunction ${name} `));
    expect(lines.filter((line) => line.includes('aborted')), name).toEqual([]);
    expect(lines.some((line) => /completed (compiling|optimizing)/.test(line)), name).toBe(true);
  }
});

it('the installed driver carries every hunk the startup check looks for, and a driver without one is refused', async () => {
  const { DRIVER_PATCH_MARKERS } = await import('../src/db/pool.ts');
  for (const [file, markers] of Object.entries(DRIVER_PATCH_MARKERS)) {
    const text = readFileSync(driver(file), 'utf8');
    for (const marker of markers) expect(text, `${file}: ${marker}`).toContain(marker);
  }
  // The check itself, in a process whose driver lacks the newest hunk (a copy of the driver with that comment removed).
  const copy = mkdtempSync(path.join(tmpdir(), 'unpatched-driver-'));
  try {
    cpSync(path.dirname(path.dirname(driver('index.js'))), path.join(copy, 'node_modules/postgres'), { recursive: true });
    const connection = path.join(copy, 'node_modules/postgres/src/connection.js');
    writeFileSync(connection, readFileSync(connection, 'utf8').replace('must not meet the next socket', 'was here'));
    const pool = pathToFileURL(path.resolve(import.meta.dirname, '../src/db/pool.ts')).href;
    const script = `
      import { register } from 'node:module';
      register('data:text/javascript,' + encodeURIComponent(\`
        export async function resolve(specifier, context, next) {
          return specifier === 'postgres' ? next(${JSON.stringify(pathToFileURL(path.join(copy, 'node_modules/postgres/src/index.js')).href)}, context) : next(specifier, context);
        }\`));
      const { createPool } = await import(${JSON.stringify(pool)});
      try { createPool('postgres://nobody@127.0.0.1:1/none', { max: 1 }); process.stdout.write('accepted'); } catch (error) { process.stdout.write(String(error.message)); }`;
    const said = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(said).toContain('postgres.js is not patched');
  } finally {
    rmSync(copy, { recursive: true, force: true });
  }
});
