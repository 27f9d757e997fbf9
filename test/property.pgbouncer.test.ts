// test/property.test.ts again, with every request-role pool through PgBouncer in
// transaction mode (prepare: false, as DB_PREPARE=false): test/helpers/pgbouncer.ts.
import { routeAppPoolsThroughPgBouncer } from './helpers/pgbouncer.ts';

routeAppPoolsThroughPgBouncer({ poolSize: 2 });
await import('./property.test.ts');
