// Where the JWT settings come from: the environment, or in development a
// secret generated once and kept in the data folder.
import path from 'node:path';
import type { Config } from '../config.ts';
import { readOrCreateSecret } from '../secret-file.ts';
import type { TokenSettings } from './tokens.ts';

export async function tokenSettings(config: Config): Promise<TokenSettings> {
  const secret =
    config.jwtSecret ??
    (config.jwksUrl || config.production ? undefined : await readOrCreateSecret(path.join(config.dataDir, 'dev-jwt-secret')));
  return { secret, jwksUrl: config.jwksUrl, issuer: config.jwtIssuer, audience: config.jwtAudience, maxTtlSeconds: config.jwtMaxTtlSeconds };
}
