// Runs the red team's open holes (test/attacks/*.attack.ts), kept out of `npm test` because they fail until fixed:
// npx vitest run -c test/attacks/vitest.config.ts
import { defineConfig } from 'vitest/config';
import base from '../../vitest.config.ts';

export default defineConfig({ ...base, test: { ...base.test, include: ['test/attacks/*.attack.ts'] } });
