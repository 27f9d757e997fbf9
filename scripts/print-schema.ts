// Writes schema.graphql from the code (npm run schema); a test fails when it is stale.
import { writeFileSync } from 'node:fs';
import { printSortedSchema } from '../src/graphql/schema.ts';

writeFileSync(new URL('../schema.graphql', import.meta.url), printSortedSchema());
