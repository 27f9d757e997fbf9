// Where the JWT settings come from: the environment, or in development a
// secret generated once and kept in the data folder.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../config.ts';
import { readOrCreateSecret } from '../db/embedded.ts';
import type { TokenSettings } from './tokens.ts';

export async function tokenSettings(config: Config): Promise<TokenSettings> {
  const secret =
    config.jwtSecret ??
    (config.jwksUrl || config.production ? undefined : await developmentSecret(config.dataDir));
  return { secret, jwksUrl: config.jwksUrl, issuer: config.jwtIssuer, audience: config.jwtAudience };
}

async function developmentSecret(dataDir: string): Promise<string> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  return readOrCreateSecret(path.join(dataDir, 'dev-jwt-secret'));
}
