// Development wrapper around the graphile-migrate CLI: points it at the
// embedded server of TENANCY_DATA_DIR (or DATABASE_URL) with a shadow database.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { loadConfig } from '../src/config.ts';
import { connectDatabase } from '../src/db/setup.ts';

const config = loadConfig();
const db = await connectDatabase(config, () => {});
const owner = new URL(db.ownerUrl);
const shadow = new URL(owner);
shadow.pathname = `${owner.pathname}_shadow`;
const root = new URL(owner);
root.pathname = '/postgres';

const require = createRequire(import.meta.url);
const cli = require.resolve('graphile-migrate/dist/cli.js');
const result = spawnSync(process.execPath, [cli, ...process.argv.slice(2)], {
  stdio: 'inherit',
  env: {
    ...process.env,
    DATABASE_URL: db.ownerUrl,
    SHADOW_DATABASE_URL: process.env.SHADOW_DATABASE_URL ?? shadow.toString(),
    ROOT_DATABASE_URL: process.env.ROOT_DATABASE_URL ?? root.toString(),
    DATABASE_APP: decodeURIComponent(new URL(db.appUrl).username),
  },
});
await db.embedded?.stop();
process.exit(result.status ?? 1);
