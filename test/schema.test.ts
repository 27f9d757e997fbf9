// What is committed matches the code: schema.graphql, and no migration work
// left in migrations/current.sql.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { printSortedSchema } from '../src/graphql/schema.ts';

const ROOT = path.resolve(import.meta.dirname, '..');

it('schema.graphql is current (run `npm run schema` and commit it)', () => {
  expect(readFileSync(path.join(ROOT, 'schema.graphql'), 'utf8')).toBe(printSortedSchema());
});

it('migrations/current.sql holds no uncommitted migration (run `npm run db -- commit`)', () => {
  const statements = readFileSync(path.join(ROOT, 'migrations/current.sql'), 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '' && !line.trim().startsWith('--'));
  expect(statements).toEqual([]);
});
