// What the README and docker-compose.yml say about configuration is what
// src/config.ts reads: every variable the service reads is in the README's
// configuration table and every row of the table is read; the compose file
// sets only variables the service reads, passes through the ones a production
// deployment must be able to set, and ships no secret of its own.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';

const ROOT = path.resolve(import.meta.dirname, '..');
const read = (file: string) => readFile(path.join(ROOT, file), 'utf8');

/** The variables src/config.ts reads (each through one of its readers: `text(env, 'NAME')`, `integer(env, 'NAME', …)`, …). */
async function configVariables(): Promise<string[]> {
  const source = await read('src/config.ts');
  return [...new Set([...source.matchAll(/\(env, '([A-Z][A-Z0-9_]*)'/g)].map((match) => match[1]!))].sort();
}

/** The variables named in the first column of the README's configuration table. */
async function readmeVariables(): Promise<string[]> {
  const readme = await read('README.md');
  const section = /\n## Configuration\n([\s\S]*?)\n## /.exec(readme)?.[1] ?? '';
  const rows = section.split('\n').filter((line) => line.startsWith('| `'));
  return [...new Set(rows.flatMap((row) => [...row.split('|')[1]!.matchAll(/`([A-Z][A-Z0-9_]*)`/g)].map((match) => match[1]!)))].sort();
}

type Service = { environment?: Record<string, string>; healthcheck?: unknown; restart?: string; profiles?: string[] };
let services: Record<string, Service>;
let config: string[];

beforeAll(async () => {
  services = (parse(await read('docker-compose.yml')) as { services: Record<string, Service> }).services;
  config = await configVariables();
});

describe('the README configuration table', () => {
  it('lists every variable src/config.ts reads, and only those', async () => {
    expect(config.length).toBeGreaterThan(40);
    expect(config).toContain('AUDIT_SIGNING_KEY');
    expect(await readmeVariables()).toEqual(config);
  });
});

describe('docker-compose.yml', () => {
  it('sets only variables the service reads (a misspelt one would be ignored)', () => {
    const set = Object.keys(services.tenancy!.environment ?? {});
    expect(set.length).toBeGreaterThan(5);
    expect(set.filter((name) => !config.includes(name))).toEqual([]);
  });

  it('passes through what production must set: the JWT secret, the audit signing key, the direct listening URL behind PgBouncer', () => {
    const environment = services.tenancy!.environment!;
    for (const name of ['NODE_ENV', 'JWT_SECRET', 'AUDIT_SIGNING_KEY', 'DATABASE_APP_URL', 'DATABASE_LISTEN_URL', 'DB_PREPARE']) {
      expect(environment[name], name).toMatch(new RegExp(`^\\$\\{${name}:-`));
    }
  });

  it('ships no secret: a secret is empty unless set (generated in development, required or unsigned in production)', () => {
    const secrets = Object.entries(services).flatMap(([service, { environment }]) =>
      Object.entries(environment ?? {})
        .filter(([name]) => /SECRET|SIGNING_KEY|APP_PASSWORD/.test(name))
        .map(([name, value]) => ({ service, name, value })),
    );
    expect(secrets.map(({ name }) => name).sort()).toEqual(['AUDIT_SIGNING_KEY', 'JWT_SECRET', 'TENANCY_APP_PASSWORD']);
    for (const { service, name, value } of secrets) expect(value, `${service}.${name}`).toBe(`\${${name}:-}`);
  });

  it('the service has a healthcheck on /ready and a restart policy; PgBouncer is a profile of its own', () => {
    expect(JSON.stringify(services.tenancy!.healthcheck)).toContain('/ready');
    expect(services.tenancy!.restart).toBe('unless-stopped');
    expect(services.pgbouncer!.profiles).toEqual(['pgbouncer']);
    expect(services.pgbouncer!.environment!.POOL_MODE).toBe('transaction');
  });
});
