// The benchmark's peer: PostGraphile 5 with the Amber preset, on the same
// database as the request role (RLS does the isolation, as in the service),
// the JWT verified with jose on every request, and the same transaction-local
// settings the limit servers set (app.tenant_id, app.user_id, app.role) passed
// as pgSettings. Plain JavaScript: its dependencies live in this folder only
// (`npm run bench:peers` installs them), never in the service's tree.
import { createServer } from 'node:http';
import { jwtVerify } from 'jose';
import pg from 'pg';
import { postgraphile } from 'postgraphile';
import { makePgService } from 'postgraphile/adaptors/pg';
import { grafserv } from 'postgraphile/grafserv/node';
import { PostGraphileAmberPreset } from 'postgraphile/presets/amber';

const secret = new TextEncoder().encode(process.env.JWT_SECRET);
const pool = new pg.Pool({ connectionString: process.env.DATABASE_APP_URL, max: Number(process.env.DB_POOL_MAX ?? 10) });

/** @type {GraphileConfig.Preset} */
const preset = {
  extends: [PostGraphileAmberPreset],
  pgServices: [makePgService({ pool, schemas: ['app'] })],
  grafserv: { graphiql: false, watch: false },
  grafast: {
    explain: false,
    async context(requestContext) {
      const header = requestContext.node?.req.headers.authorization ?? '';
      const token = /^Bearer (.+)$/.exec(header)?.[1] ?? '';
      const { payload } = await jwtVerify(token, secret, { algorithms: ['HS256'], requiredClaims: ['exp', 'sub'] });
      return { pgSettings: { 'app.tenant_id': String(payload.tid), 'app.user_id': String(payload.sub), 'app.role': String(payload.role) } };
    },
  },
};

const pgl = postgraphile(preset);
const serv = pgl.createServ(grafserv);
const server = createServer();
server.keepAliveTimeout = 5_000;
serv.addTo(server).then(
  () => server.listen(Number(process.env.PORT), '127.0.0.1', () => process.stdout.write('ready\n')),
  (error) => {
    process.stderr.write(`${error?.stack ?? error}\n`);
    process.exit(1);
  },
);
process.on('SIGTERM', () => server.close(() => void pgl.release().then(() => pool.end()).then(() => process.exit(0))));
