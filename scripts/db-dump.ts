// Writes migrations/schema.sql (npm run db:dump): the committed migrations
// applied to a fresh database on a throwaway embedded PostgreSQL, then the
// schema read back (scripts/schema-dump.ts). Independent of any data folder
// or DATABASE_URL, so every engineer writes the same file.
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import { openEmbeddedPostgres } from '../src/db/embedded.ts';
import { APP_ROLE, ensureAppRole, runMigrations } from '../src/db/setup.ts';
import { freePort } from '../test/helpers/local.ts';
import { dumpSchema, SCHEMA_DUMP_FILE } from './schema-dump.ts';

const dataDir = await mkdtemp(path.join(tmpdir(), 'tenancy-dump-'));
await chmod(dataDir, 0o755); // the server runs as `postgres` when we are root
const server = await openEmbeddedPostgres({ dataDir, port: await freePort() });
try {
  const appUrl = await ensureAppRole(server.ownerUrl, dataDir, APP_ROLE);
  await runMigrations(server.ownerUrl, appUrl, () => {});
  const sql = postgres(server.ownerUrl, { max: 1, onnotice: () => {} });
  try {
    const owner = decodeURIComponent(new URL(server.ownerUrl).username);
    await writeFile(SCHEMA_DUMP_FILE, await dumpSchema(sql, { owner, app: decodeURIComponent(new URL(appUrl).username) }));
  } finally {
    await sql.end();
  }
  console.log(`wrote ${path.relative(process.cwd(), SCHEMA_DUMP_FILE)}`);
} finally {
  await server.stop();
  await rm(dataDir, { recursive: true, force: true });
}
