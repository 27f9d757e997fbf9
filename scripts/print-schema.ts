// Writes schema.graphql and docs/permissions.md from the code (npm run schema);
// a test fails when either is stale.
import { mkdirSync, writeFileSync } from 'node:fs';
import { permissionsDoc, printSortedSchema, schema } from '../src/graphql/schema.ts';

writeFileSync(new URL('../schema.graphql', import.meta.url), printSortedSchema());
mkdirSync(new URL('../docs', import.meta.url), { recursive: true });
writeFileSync(new URL('../docs/permissions.md', import.meta.url), permissionsDoc(schema));
