// What is committed matches the code: schema.graphql, and no migration work
// left in migrations/current.sql.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { permissionsDoc, printSortedSchema, schema } from '../src/graphql/schema.ts';

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

it('docs/permissions.md is current (run `npm run schema` and commit it)', () => {
  expect(readFileSync(path.join(ROOT, 'docs/permissions.md'), 'utf8')).toBe(permissionsDoc(schema));
});

it('declares the scopes of every root field (no field is open by omission)', () => {
  for (const type of [schema.getQueryType()!, schema.getMutationType()!]) {
    for (const field of Object.values(type.getFields())) {
      if (field.name === 'node') continue; // resolves through the types' own loaders, tenant-filtered by RLS
      const scopes = (field.extensions as { pothosOptions?: { authScopes?: unknown } }).pothosOptions?.authScopes;
      expect(scopes, `${type.name}.${field.name}`).toBeTypeOf('object');
    }
  }
});
